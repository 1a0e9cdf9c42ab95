"""The public functions: render, conditions, referenced names, escaping."""

from __future__ import annotations

import re
from collections.abc import Mapping

from snapshots.octostache.compile import collect_names, compile_template
from snapshots.octostache.runtime import Runtime, is_truthy
from snapshots.octostache.syntax import CompileError, find_close, find_comparison


def render(template: str, variables: Mapping[str, str], *, where: str = "", strict: bool = True,
           warnings: list[str] | None = None) -> str:
    """Substitute ``#{...}`` in ``template``.

    ``where`` names the template's origin (``"step 'Smoke test' field url"``, ``"web.config"``) and starts every
    error and warning.  ``strict=True`` raises ``TemplateError`` for an unknown variable, for a filter that cannot
    apply (``Substring 99`` on a short value) and for a ``#{`` that is not a valid token.  ``strict=False`` follows
    Octopus: an unknown variable renders as an empty string, the other two are echoed as written, and each case
    appends a message to ``warnings``.  Malformed blocks, unknown filter names and cycles always raise.
    """
    return Runtime(variables, strict=strict, warnings=warnings, where=where).run(template)


def referenced_names(template: str, *, include_optional: bool = False) -> set[str]:
    """Names a strict ``render`` needs defined, as written, so a release can be validated before it deploys.

    Left out: names relative to an ``#{each}`` item, the ``Octopus.Template.Each.*`` specials inside a loop and
    names only known at render time (``Server[#{Region}]`` contributes ``Region``).  Names that are merely tested
    by ``#{if}``/``#{unless}`` or iterated by ``#{each}`` may legitimately be undefined; they are included only
    with ``include_optional=True``.
    """
    try:
        nodes = compile_template(template).nodes
    except CompileError as exc:
        raise Runtime({}, strict=True, warnings=None, where="").error(exc.tok, exc.message) from None
    required: set[str] = set()
    optional: set[str] = set()
    collect_names(nodes, (), required, optional)
    return required | optional if include_optional else required



def evaluate_condition(expression: str, variables: Mapping[str, str], *, where: str = "",
                       warnings: list[str] | None = None) -> bool:
    """Evaluate a run condition such as ``#{if Octopus.Deployment.Error}true#{/if}``, ``#{Foo}`` or
    ``#{Foo == "bar"}``; the result is ``is_truthy`` of the rendered text.

    As in Octopus, an unknown variable counts as empty (a condition is how one tests for it), noted in
    ``warnings``; syntax errors and unknown filters still raise ``TemplateError``.
    """
    text = expression.strip()
    if text.startswith("#{") and find_close(text, 0, len(text)) == len(text) - 1:
        inner = text[2:-1]
        if (not re.match(r"\s*(?:if|unless|each|calc)\s", inner, re.IGNORECASE)
                and find_comparison(inner, 0, len(inner)) is not None):
            text = f"#{{if {inner}}}True#{{/if}}"
    runtime = Runtime(variables, strict=True, warnings=warnings, where=where, unknown_is_empty=True)
    return is_truthy(runtime.run(text))


def escape(text: str) -> str:
    """Return a template that renders to exactly ``text``: each run of ``#`` before ``{`` is doubled.

    For data that must not be evaluated (a value is otherwise a template itself).
    """
    return re.sub(r"#+(?=\{)", lambda m: m.group(0) * 2, text)


