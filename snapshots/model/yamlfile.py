"""Read YAML with line numbers, so every error can point at ``file:line: path``.

PyYAML's node tree keeps each value's position; we construct plain data from the same tree and keep
the tree to translate a pydantic error location into a line. Duplicate keys, which PyYAML silently
overwrites, are refused.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from snapshots.errors import ConfigError


@dataclass
class YamlDocument:
    """Parsed data plus the node tree it came from."""

    file: str
    data: Any
    root: yaml.Node

    def locate(self, loc: Sequence[str | int]) -> tuple[int, str]:
        """Line and readable path (``process[0].steps[1].port``) for a pydantic error location.

        Elements that are not in the YAML are union tags (``step``, a ``kind`` value) and are skipped,
        except a trailing field name, which is a missing field and is kept in the path.
        """
        node, parts = self.root, []
        for index, element in enumerate(loc):
            last = index == len(loc) - 1
            after_index = index > 0 and isinstance(loc[index - 1], int)
            if not last and isinstance(element, str) and _is_tag(node, element, after_index):
                continue
            child = _child(node, element)
            if child is not None:
                node = child
                parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
            elif last and isinstance(element, str) and not _is_tag(node, element, after_index):
                parts.append(f".{element}")
        return node.start_mark.line + 1, "".join(parts).lstrip(".")


    def resolves(self, loc: Sequence[str | int]) -> bool:
        """Does a pydantic error location end at a value written in the file (union tags between skipped)?"""
        node = self.root
        for index, element in enumerate(loc):
            child = _child(node, element)
            if child is not None:
                node = child
            elif isinstance(element, int) or index == len(loc) - 1:
                return False
        return True


def _is_tag(node: yaml.Node, element: str, after_index: bool = True) -> bool:
    """A union tag in a pydantic error location: a process item's ``step``/``parent``/``template`` (right after
    its list index: a step template's own ``step:`` field is not one), or the ``kind`` value of a step."""
    if element in ("step", "parent", "template") and after_index:
        return True
    kind = _child(node, "kind")
    return isinstance(kind, yaml.ScalarNode) and kind.value == element


def _child(node: yaml.Node, element: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(element, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == element:
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(element, int) and 0 <= element < len(node.value):
        return node.value[element]
    return None


MAX_VALUES = 100_000
"""Values (mappings, lists, scalars) a file may hold once its aliases are expanded: far above any real
project, far below what a "billion laughs" alias bomb expands to."""

def _refuse_duplicate_keys(root: yaml.Node, file: str) -> None:
    """Each node is visited once (an alias is the same node again), so aliases cost nothing here."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise ConfigError(f"duplicate key {key.value!r}", file=file, line=key.start_mark.line + 1)
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _refuse_alias_bombs(root: yaml.Node, file: str) -> None:
    """Count the values the tree stands for with its aliases expanded (each node's count computed once, children
    first, without recursion), and refuse more than ``MAX_VALUES``: what is constructed and validated from the
    tree afterwards walks every expanded value."""
    counts: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in counts:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in counts)
            continue
        counts[id(node)] = total = 1 + sum(counts[id(child)] for child in children)
        if total > MAX_VALUES:
            raise ConfigError(f"YAML aliases expand to more than {MAX_VALUES:,} values (an alias bomb?); "
                              "refused", file=file, line=node.start_mark.line + 1)


MAX_BRACKETS = 1_000
"""Open flow brackets (``[``, ``{``) counted naively, quoted text included: PyYAML's scanner slows down
quadratically with flow depth (20,000 levels take seconds) and its composer gives up after a few hundred anyway."""


def _refuse_deep_brackets(text: str, file: str) -> None:
    depth = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth += 1 if match.group() in "[{" else -1 if depth else 0
        if depth > MAX_BRACKETS:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(f"malformed YAML: more than {MAX_BRACKETS} nested [ or {{; refused", file=file,
                              line=line)


def read_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file into data + positions, or raise ConfigError with file and line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", file=file) from exc
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError("malformed YAML: a NUL character (\\0) is not allowed in YAML text", file=file, line=line)
    _refuse_deep_brackets(text, file)
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks every character first
        root = loader.get_single_node()
        if root is None:
            raise ConfigError("the file is empty", file=file)
        _refuse_alias_bombs(root, file)
        _refuse_duplicate_keys(root, file)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(" ".join(p.split()) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"malformed YAML: {what}", file=file, line=mark.line + 1 if mark else None) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or b"\0")
        raise ConfigError(f"malformed YAML: unacceptable character #x{code:04x} ({exc.reason})", file=file,
                          line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {' '.join(str(exc).split())}", file=file) from exc
    except RecursionError:
        # PyYAML composes nested mappings and lists recursively: a few hundred levels exhaust Python's stack
        raise ConfigError("malformed YAML: mappings or lists nested too deeply (a few hundred levels at most)",
                          file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top of the file", file=file, line=1)
    return YamlDocument(file=file, data=data, root=root)


def validation_error(doc: YamlDocument, exc: ValidationError) -> ConfigError:
    """The first pydantic error as one ConfigError line (with a count of the others). An unknown field comes
    first, with the closest known field name suggested; a required field it stands for is not counted again."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    # Only when every problem is an unknown or a missing field: in a union (a value that may be text, from_env or
    # from_file) the other branches' complaints would make a valid key look unknown.
    if any(e["type"] not in ("extra_forbidden", "missing") for e in errors):
        unknown = []
    # Else the first complaint about a value that is in the file (in a union, the branch the value was written
    # for: ``from_env`` with a bad name, not "should be a valid string").
    present = [e for e in errors if e["type"] not in ("extra_forbidden", "missing") and doc.resolves(e["loc"])]
    first = unknown[0] if unknown else present[0] if present else errors[0]
    line, path = doc.locate(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    explained = 0
    if first["type"] == "extra_forbidden":
        message = "unknown field"
        parent, field = tuple(first["loc"][:-1]), str(first["loc"][-1])
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == parent]
        close = difflib.get_close_matches(field, missing, n=1, cutoff=0.6) or \
            difflib.get_close_matches(field, sorted(_known_fields()), n=1, cutoff=0.75)
        if close:
            message += f" (did you mean {close[0]!r}?)"
            explained = int(close[0] in missing)
    more = len(errors) - 1 - explained
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, file=doc.file, line=line, path=path or None)


@functools.cache
def _known_fields() -> set[str]:
    """Every field name (and alias) of every model in ``snapshots.model``: what a misspelt key was meant to be."""
    from snapshots.model import common, infrastructure, project, steps

    names: set[str] = set()
    for module in (common, infrastructure, project, steps):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                for name, info in value.model_fields.items():
                    names.add(info.alias or name)
    return names
