"""Variables at deploy time: which value a target gets (scoping), system variables, prompted values.

Why this module exists apart from the template engine: *which* value applies is decided here, once per
(step, target), from the release's frozen variable list; ``snapshots.octostache`` then only substitutes.

Scoping rules (Octopus's, docs "Variables" /docs/projects/variables):

* A scope lists names per kind (environment, role, target, step, channel). Names of the same kind OR, kinds
  AND: ``{environment: [Test, Production], role: [web]}`` applies to web targets in Test or in Production.
* Among the candidates of one name that apply, the most specific wins. Specificity is the **rank tuple**
  ``(kinds, step, target, role, environment, channel)`` compared left to right: first *how many* kinds the
  scope names (doubly scoped beats singly scoped, "like CSS"), then which kinds, most specific first
  (step > target > role > environment > channel). Unscoped is ``(0, 0, 0, 0, 0, 0)``, the lowest. How many
  names a kind lists does not matter: ``environment: [Test]`` and ``environment: [Test, Production]`` rank
  the same.
* Two candidates of equal rank that can both apply to one real context are refused when the project is
  applied and when a release is created (``ambiguities``), never settled by a coin toss. Should one still
  reach a deployment (a snapshot older than the infrastructure it now meets), ``VariableIndex.resolve``
  raises rather than pick.
* Names are case-insensitive; a name keeps the spelling of its first definition in the project.
* System variables (``Release.Number``, ``Machine.Name``, …, and their ``Octopus.`` spellings) are set by
  ferry and cannot be overridden by a project variable: a project may not define one (refused at apply, see
  ``system_name_clashes``), so a deployment's facts are always the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

from snapshots.errors import ConfigError, TemplateError
from snapshots.octostache import VariableTable, canonical_name, render, variable_key
from snapshots.variables.masking import Masker

if TYPE_CHECKING:  # annotations only: the functions take stored dicts or these models alike
    from snapshots.model import Infrastructure
    from snapshots.model.project import Variable

KINDS = ("step", "target", "role", "environment", "channel")
"""Scope kinds, most specific first (the order of the rank tuple after the kind count)."""

Rank = tuple[int, int, int, int, int, int]


# ------------------------------------------------------------------------------------------- the variable set


class VariableSet(VariableTable):
    """The values one context gets: a read-only mapping with case-insensitive lookup.

    Iterating yields each name in its canonical spelling; ``vs["site.host"]`` finds ``Site.Host``. It is the
    template engine's own ``VariableTable``, so ``octostache.render(text, vs)`` reads it without rebuilding a
    lookup of thousands of names per render. ``sensitive`` holds the keys (``variable_key``) of names whose
    value came from a sensitive variable, for display.
    """

    __slots__ = ("sensitive",)

    def __init__(self, values: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 sensitive: Iterable[str] = ()) -> None:
        super().__init__(values)
        self.sensitive: frozenset[str] = frozenset(variable_key(n) for n in sensitive)

    @classmethod
    def _build(cls, names: dict[str, str], values: dict[str, str], sensitive: frozenset[str]) -> VariableSet:
        """Adopt ready dicts keyed by ``variable_key`` (no copy): the resolver's fast path."""
        self = cls.__new__(cls)
        self._names, self._values, self.sensitive = names, values, sensitive
        return self

    def items(self) -> Any:  # one pass over both dicts instead of a key computation per name
        names = self._names
        return [(names[key], value) for key, value in self._values.items()]

    def canonical(self, name: str) -> str:
        """The spelling under which ``name`` is defined (KeyError if it is not)."""
        return self._names[variable_key(name)]

    def is_sensitive(self, name: str) -> bool:
        return variable_key(name) in self.sensitive

    def overlay(self, values: Mapping[str, str], *, sensitive: Iterable[str] = ()) -> VariableSet:
        """A new set with ``values`` replacing (or adding) entries; they keep their own spelling."""
        names, merged = dict(self._names), dict(self._values)
        hidden = set(self.sensitive)
        for name, value in values.items():
            key = variable_key(name)
            names[key] = canonical_name(name)
            merged[key] = value
            hidden.discard(key)
        hidden.update(variable_key(n) for n in sensitive)
        return VariableSet._build(names, merged, frozenset(hidden))

    def __repr__(self) -> str:
        return f"VariableSet({len(self)} variables)"


# ------------------------------------------------------------------------------------------------- scoping


@dataclass(frozen=True)
class ScopeContext:
    """Where a value is wanted: one step on one target (``target`` None: a step on the worker)."""

    environment: str | None = None
    target: str | None = None
    roles: tuple[str, ...] = ()
    step: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.roles, tuple):
            object.__setattr__(self, "roles", tuple(self.roles))


def scope_of(variable: Mapping[str, Any] | Variable) -> dict[str, list[str]]:
    """The scope of a stored variable dict or a ``Variable`` model, as ``{kind: [names]}``."""
    if isinstance(variable, Mapping):
        scope = variable.get("scope") or {}
        return {kind: list(scope.get(kind) or []) for kind in KINDS}
    return {kind: list(getattr(variable.scope, kind)) for kind in KINDS}


def _field(variable: Mapping[str, Any] | Variable, name: str) -> Any:
    return variable.get(name) if isinstance(variable, Mapping) else getattr(variable, name)


def rank(scope: Mapping[str, Sequence[str]]) -> Rank:
    """The specificity of a scope: (number of kinds, step, target, role, environment, channel)."""
    flags = [1 if scope.get(kind) else 0 for kind in KINDS]
    return (sum(flags), flags[0], flags[1], flags[2], flags[3], flags[4])


def describe_scope(scope: Mapping[str, Sequence[str]]) -> str:
    parts = [f"{kind}={', '.join(scope[kind])}" for kind in reversed(KINDS) if scope.get(kind)]
    return "; ".join(parts) if parts else "unscoped"


@dataclass(frozen=True)
class _Candidate:
    """One definition of a name, with its scope pre-folded for fast matching (None = not scoped on it)."""

    index: int
    name: str
    value: str
    sensitive: bool
    rank: Rank
    step: frozenset[str] | None
    target: frozenset[str] | None
    role: frozenset[str] | None
    environment: frozenset[str] | None
    channel: frozenset[str] | None
    scope: dict[str, list[str]] = field(compare=False)

    @classmethod
    def of(cls, index: int, variable: Mapping[str, Any] | Variable) -> _Candidate:
        scope = scope_of(variable)
        folded = {kind: frozenset(n.casefold() for n in names) if names else None for kind, names in scope.items()}
        value = _field(variable, "value")
        return cls(index, _field(variable, "name"), "" if value is None else str(value),
                   bool(_field(variable, "sensitive")), rank(scope), folded["step"], folded["target"],
                   folded["role"], folded["environment"], folded["channel"], scope)

    def matches(self, env: str | None, target: str | None, roles: frozenset[str], step: str | None,
                channel: str | None) -> bool:
        """Each scoped kind must contain the context's value (role: share one of the target's roles)."""
        return ((self.step is None or step in self.step)
                and (self.target is None or target in self.target)
                and (self.role is None or not self.role.isdisjoint(roles))
                and (self.environment is None or env in self.environment)
                and (self.channel is None or channel in self.channel))

    def applies_on(self, target: str | None, roles: frozenset[str], step: str | None) -> bool:
        """``matches`` for the kinds that vary within one environment (the resolver's inner loop inlines it)."""
        return ((self.step is None or step in self.step) and (self.target is None or target in self.target)
                and (self.role is None or not self.role.isdisjoint(roles)))


def _fold(value: str | None) -> str | None:
    return value.casefold() if value is not None else None


@dataclass(frozen=True)
class _Layer:
    """What one (environment, channel) gets before targets, roles and steps are considered."""

    names: dict[str, str]
    values: dict[str, str]
    sensitive: frozenset[str]
    dynamic: list[tuple[str, str, tuple[_Candidate, ...]]]
    """Names whose winner depends on the target, its roles or the step: their candidates that can still
    apply in this environment and channel, best first."""


class VariableIndex:
    """A release's variables prepared for resolving many contexts: candidates grouped per name, best first.

    Built once per deployment (not per target). Most names do not depend on the target: per environment
    (and channel) their winners are computed once into a layer that each target copies; only names with
    target-, role- or step-scoped values are matched per context.
    """

    def __init__(self, variables: Sequence[Mapping[str, Any] | Variable]) -> None:
        groups: dict[str, list[_Candidate]] = {}
        spelling: dict[str, str] = {}
        for index, variable in enumerate(variables):
            candidate = _Candidate.of(index, variable)
            key = variable_key(candidate.name)
            spelling.setdefault(key, canonical_name(candidate.name))
            groups.setdefault(key, []).append(candidate)
        # best first; equal ranks keep project order (a tie that matches is an error anyway)
        self._groups = [(key, spelling[key], sorted(candidates, key=lambda c: c.rank, reverse=True))
                        for key, candidates in groups.items()]
        self._layers: dict[tuple[str | None, str | None], _Layer] = {}
        self.count = len(variables)

    def _layer(self, env: str | None, channel: str | None) -> _Layer:
        layer = self._layers.get((env, channel))
        if layer is None:  # computing one twice in two threads is harmless: both give the same layer
            layer = self._layers[(env, channel)] = self._build_layer(env, channel)
        return layer

    def _build_layer(self, env: str | None, channel: str | None) -> _Layer:
        names: dict[str, str] = {}
        values: dict[str, str] = {}
        sensitive: set[str] = set()
        dynamic: list[tuple[str, str, tuple[_Candidate, ...]]] = []
        for key, name, candidates in self._groups:
            live = tuple(c for c in candidates if (c.environment is None or env in c.environment)
                         and (c.channel is None or channel in c.channel))
            if not live:
                continue
            static = all(c.step is None and c.target is None and c.role is None for c in live)
            if static and not (len(live) > 1 and live[1].rank == live[0].rank):
                names[key] = name
                values[key] = live[0].value
                if live[0].sensitive:
                    sensitive.add(key)
            else:  # depends on the target or step (or is a tie, which resolve reports with its context)
                dynamic.append((key, name, live))
        return _Layer(names, values, frozenset(sensitive), dynamic)

    def resolve(self, context: ScopeContext) -> VariableSet:
        """The winning value of every name that applies in ``context``."""
        layer = self._layer(_fold(context.environment), _fold(context.channel))
        target, step = _fold(context.target), _fold(context.step)
        roles = frozenset(r.casefold() for r in context.roles)
        names, values = dict(layer.names), dict(layer.values)
        sensitive = set(layer.sensitive)
        for key, name, live in layer.dynamic:
            for position, c in enumerate(live):
                if ((c.step is None or step in c.step) and (c.target is None or target in c.target)
                        and (c.role is None or not c.role.isdisjoint(roles))):
                    for other in live[position + 1:]:
                        if other.rank != c.rank:
                            break
                        if other.applies_on(target, roles, step):  # environment and channel already match
                            raise ConfigError(_tie_message(c, other, _describe_context(context)))
                    names[key] = name
                    values[key] = c.value
                    if c.sensitive:
                        sensitive.add(key)
                    break
        return VariableSet._build(names, values, frozenset(sensitive))

    def explain(self, context: ScopeContext) -> dict[str, str]:
        """Which definition won for each name in ``context``, described (``environment=Test``), for people."""
        env, target, step, channel = (_fold(context.environment), _fold(context.target), _fold(context.step),
                                      _fold(context.channel))
        roles = frozenset(r.casefold() for r in context.roles)
        shown = {}
        for _key, name, candidates in self._groups:
            winner = next((c for c in candidates if c.matches(env, target, roles, step, channel)), None)
            if winner is not None:
                shown[name] = describe_scope(winner.scope)
        return shown


def resolve(variables: Sequence[Mapping[str, Any] | Variable], context: ScopeContext) -> VariableSet:
    """The value of every variable for ``context`` (for many contexts, build one ``VariableIndex``)."""
    return VariableIndex(variables).resolve(context)


def _describe_context(context: ScopeContext) -> str:
    parts = []
    if context.target:
        parts.append(f"target {context.target}")
    if context.environment:
        parts.append(f"in {context.environment}")
    if context.step:
        parts.append(f"step {context.step!r}")
    if context.channel:
        parts.append(f"channel {context.channel}")
    return " ".join(parts) or "every deployment"


def _tie_message(a: _Candidate, b: _Candidate, where: str) -> str:
    return (f"variable {b.name!r} is ambiguous: variables[{a.index}] ({describe_scope(a.scope)}) and "
            f"variables[{b.index}] ({describe_scope(b.scope)}) are equally specific and both apply to {where}; "
            "narrow one of the scopes or remove one")


# ---------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Place:
    """A real place a value is wanted: a target (with its environment and roles), or a worker step."""

    environment: str | None
    target: str | None
    roles: frozenset[str]
    label: str


def _places(infra: Infrastructure | None) -> list[_Place] | None:
    if infra is None:
        return None
    places = [_Place(None, None, frozenset(), "every deployment")]  # first: what two unscoped values share
    places += [_Place(t.environment.casefold(), t.name.casefold(), frozenset(r.casefold() for r in t.roles),
                      f"target {t.name} in {t.environment}") for t in infra.targets]
    places += [_Place(e.name.casefold(), None, frozenset(), f"a worker step in {e.name}")
               for e in infra.environments]
    return places


def _overlap(a: frozenset[str] | None, b: frozenset[str] | None,
             universe: frozenset[str] | None) -> tuple[bool, str | None]:
    """Can one context value satisfy both constraints of a free kind (step, channel)? And an example value."""
    if a is None and b is None:
        return True, None
    both = a & b if a is not None and b is not None else (a if a is not None else b)
    assert both is not None
    if universe is not None:
        both = both & universe
    return bool(both), (min(both) if both else None)


def _first_shared_place(a: _Candidate, b: _Candidate, places: list[_Place] | None) -> str | None:
    """A place (environment / target / roles) where both apply, described; None if there is none."""
    if places is None:  # no infrastructure known: environments and targets must intersect, roles may co-exist
        for kind in ("environment", "target"):
            sa, sb = getattr(a, kind), getattr(b, kind)
            if sa is not None and sb is not None and sa.isdisjoint(sb):
                return None
        return "one target (no infrastructure to check against)"
    for place in places:
        if _place_matches(a, place) and _place_matches(b, place):
            return place.label
    return None


def _place_matches(c: _Candidate, place: _Place) -> bool:
    return ((c.target is None or place.target in c.target)
            and (c.role is None or not c.role.isdisjoint(place.roles))
            and (c.environment is None or place.environment in c.environment))


def ambiguities(variables: Sequence[Mapping[str, Any] | Variable], infra: Infrastructure | None = None,
                steps: Iterable[str] | None = None) -> list[tuple[int, int, str]]:
    """Pairs of same-name variables of equal rank that can both apply to one real context.

    A real context is a target of ``infra`` (its environment and roles) or a worker step in one of its
    environments, combined with one of the project's ``steps`` and any channel. Without ``infra``,
    environment and target lists must intersect and any two roles may meet on one target. Returns
    ``(index_a, index_b, message)`` with ``index_a < index_b``; the message names both and their scopes.
    """
    groups: dict[tuple[str, Rank], list[_Candidate]] = {}
    for index, variable in enumerate(variables):
        candidate = _Candidate.of(index, variable)
        groups.setdefault((variable_key(candidate.name), candidate.rank), []).append(candidate)
    places = _places(infra)
    step_universe = frozenset(s.casefold() for s in steps) if steps is not None else None
    found: list[tuple[int, int, str]] = []
    for candidates in groups.values():
        for a, b in combinations(candidates, 2):
            step_ok, step_example = _overlap(a.step, b.step, step_universe)
            channel_ok, channel_example = _overlap(a.channel, b.channel, None)
            if not (step_ok and channel_ok):
                continue
            where = _first_shared_place(a, b, places)
            if where is None:
                continue
            if step_example is not None:
                shown = next(s for s in (a.scope["step"] + b.scope["step"]) if s.casefold() == step_example)
                where += f", step {shown!r}"
            if channel_example is not None:
                where += f", channel {channel_example}"
            found.append((a.index, b.index, _tie_message(a, b, where)))
    return sorted(found, key=lambda item: (item[1], item[0]))


def step_names(process: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every step name of a stored process (parents and their children)."""
    names: list[str] = []
    for item in process:
        names.append(item["name"])
        names.extend(child["name"] for child in item.get("steps") or [])
    return names


# -------------------------------------------------------------------------------------------- system values

_SYSTEM_NAMES = ("Project.Name", "Release.Number", "Release.Notes", "Release.Created",
                 "Release.PreviousForEnvironment.Number", "Environment.Name", "Machine.Name", "Machine.Hostname",
                 "Machine.Roles", "Deployment.Id", "Deployment.CreatedBy", "Deployment.Error", "Step.Name")
_SYSTEM_PATTERN = re.compile(
    r"(?:octopus\.)?(?:" + "|".join(re.escape(n.casefold()) for n in _SYSTEM_NAMES)
    + r"|deployment\.createdby\.username|action\.name|package\[[^\]]*\]\.(?:version|sha256)"
    + r"|action\.package\[[^\]]*\]\.packageversion)")


def is_system_name(name: str) -> bool:
    """Whether ferry sets ``name`` itself (so a project may not define it)."""
    return _SYSTEM_PATTERN.fullmatch(variable_key(name)) is not None


def system_name_clashes(variables: Sequence[Mapping[str, Any] | Variable]) -> list[tuple[int, str]]:
    """Project variables named like a system variable: ``(index, message)``; they would never apply."""
    return [(i, f"variable {_field(v, 'name')!r} is a system variable: ferry sets it for every deployment, "
                "so a project value would never apply (choose another name)")
            for i, v in enumerate(variables) if is_system_name(_field(v, "name"))]


def system_variables(*, project: str | None = None, release_number: str | None = None,
                     release_notes: str | None = None, release_created: str | None = None,
                     previous_for_environment: str | None = None, environment: str | None = None,
                     machine_name: str | None = None, machine_hostname: str | None = None,
                     machine_roles: Iterable[str] | None = None, deployment_id: str | int | None = None,
                     deployment_created_by: str | None = None, step_name: str | None = None,
                     packages: Iterable[Mapping[str, Any]] = ()) -> dict[str, str]:
    """The system variables of one context, each also under its ``Octopus.`` spelling.

    Facts not known in the caller's context (no target for a worker step, no deployment yet for
    ``release show``) are passed as None and left out, so a template using them fails loudly instead of
    rendering an empty string. ``packages`` are the release's pins (``{id, version, sha256}``).
    """
    values: dict[str, str | None] = {
        "Project.Name": project,
        "Release.Number": release_number,
        "Release.Notes": release_notes,
        "Release.Created": release_created,
        # an empty string, not an absent name: "no earlier release here" is a fact templates test with #{if}
        "Release.PreviousForEnvironment.Number": (previous_for_environment or "") if release_number else None,
        "Environment.Name": environment,
        "Machine.Name": machine_name,
        "Machine.Hostname": machine_hostname,
        "Machine.Roles": ",".join(machine_roles) if machine_roles is not None else None,
        "Deployment.Id": str(deployment_id) if deployment_id is not None else None,
        "Deployment.CreatedBy": deployment_created_by,
        "Step.Name": step_name,
    }
    for package in packages:
        values[f"Package[{package['id']}].Version"] = package["version"]
        values[f"Package[{package['id']}].Sha256"] = package.get("sha256")
        values[f"Octopus.Action.Package[{package['id']}].PackageVersion"] = package["version"]
    result: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        result[name] = value
        if not name.startswith("Octopus."):
            result[f"Octopus.{name}"] = value
    if deployment_created_by is not None:
        result["Octopus.Deployment.CreatedBy.Username"] = deployment_created_by
    if step_name is not None:
        result["Octopus.Action.Name"] = step_name
    return result


def output_variables(outputs: Iterable[Any], target: str | None) -> tuple[dict[str, str], set[str]]:
    """The output variables earlier steps set (``set_octopusvariable``), as a step on ``target`` reads them.

    ``outputs`` (objects with ``step``, ``target``, ``name``, ``value``, ``sensitive``) come in the order they
    were set. Each value is ``Octopus.Action[<step>].Output[<target>].<name>`` for the target that set it, and
    ``Octopus.Action[<step>].Output.<name>`` is this target's own value when its step set one here, else the one
    set last (Octopus leaves that choice open; ferry makes it the newest). Each also without ``Octopus.``.
    Returns the values and the names of sensitive ones."""
    values: dict[str, str] = {}
    sensitive: set[str] = set()
    own: dict[str, Any] = {}
    for out in outputs:
        base = f"Action[{out.step}].Output"
        names = [f"{base}.{out.name}"] if out.target is None else [f"{base}[{out.target}].{out.name}"]
        if out.target is None or out.target == target or variable_key(f"{base}.{out.name}") not in own:
            names.append(f"{base}.{out.name}")
            if out.target is not None and out.target == target:
                own[variable_key(f"{base}.{out.name}")] = out
        for name in names:
            for spelling in (name, f"Octopus.{name}"):
                values[spelling] = out.value
                if out.sensitive:
                    sensitive.add(spelling)
                else:
                    sensitive.discard(spelling)
    return values, sensitive


# ------------------------------------------------------------------------------------------------ prompted


def apply_prompted(variables: Sequence[Mapping[str, Any]], supplied: Mapping[str, str], *,
                   require: bool = True) -> list[dict[str, Any]]:
    """The variables with prompted values filled in from ``supplied`` (``--variable NAME=VALUE``).

    A supplied value replaces every definition of that prompted name; without one a prompted variable keeps
    its default value. A required one with neither is an error naming it and its label (``require=False``:
    left empty, for previews). A supplied name may also be a prompt's label, as Octopus's CLI allows; one
    that matches no prompted variable is an error, so a typo cannot silently deploy the default.
    """
    prompted: dict[str, str] = {}  # variable_key of a name, or casefolded label -> variable_key of the name
    for var in variables:
        if var.get("prompt"):
            key = variable_key(var["name"])
            prompted[key] = key
            label = (var["prompt"].get("label") or "").casefold()
            if label:
                prompted.setdefault(label, key)
    given: dict[str, str] = {}
    for name, value in supplied.items():
        found = prompted.get(variable_key(name)) or prompted.get(name.strip().casefold())
        if found is None:
            known = sorted({v["name"] for v in variables if v.get("prompt")})
            raise ConfigError(f"--variable {name}: not a prompted variable of this project "
                              f"(prompted: {', '.join(known) or 'none'})")
        given[found] = value
    out: list[dict[str, Any]] = []
    missing: dict[str, str] = {}  # name -> how to show it
    for var in variables:
        prompt = var.get("prompt")
        if not prompt:
            out.append(dict(var))
            continue
        key = variable_key(var["name"])
        if key in given:
            out.append({**var, "value": given[key]})
        elif var.get("value") is not None:
            out.append(dict(var))
        else:
            if prompt.get("required", True) and require:
                label = prompt.get("label") or ""
                missing.setdefault(var["name"], f"{var['name']!r}" + (f" ({label!r})" if label else ""))
            out.append({**var, "value": ""})
    if missing:
        many = len(missing) > 1
        raise ConfigError(f"prompted variable{'s' if many else ''} {', '.join(missing.values())} "
                          f"need{'' if many else 's'} a value: give it with --variable {next(iter(missing))}=VALUE")
    return out


# ------------------------------------------------------------------------------------------- entry points


def variables_for(release_variables: Sequence[Mapping[str, Any]] | VariableIndex, context: ScopeContext,
                  system: Mapping[str, str], prompted: Mapping[str, str] | None = None) -> VariableSet:
    """What one (step, target) gets: prompted values applied, scoping resolved, system variables on top.

    ``release_variables`` are the release's decrypted variables, or a ``VariableIndex`` built from them
    once per deployment (then ``prompted`` must already be applied: pass None). System variables win over
    project variables of the same name (which ``apply`` refuses anyway).
    """
    if isinstance(release_variables, VariableIndex):
        if prompted:
            raise ValueError("apply prompted values before building the VariableIndex")
        index = release_variables
    else:
        index = VariableIndex(apply_prompted(release_variables, prompted or {}))
    return index.resolve(context).overlay(system)


def masker_for(variables: Iterable[Mapping[str, Any]], masker: Masker | None = None) -> Masker:
    """A masker for every sensitive value of decrypted variables (prompted ones once filled in)."""
    masker = masker if masker is not None else Masker()
    for var in variables:
        value = var.get("value")
        if var.get("sensitive") and value:
            masker.add(str(value))
    return masker


def render_all(variables: VariableSet, *, strict: bool = True, warnings: list[str] | None = None) -> VariableSet:
    """Every value with its ``#{...}`` evaluated (what a script or a config file finally sees).

    An error names the variable whose value failed (``where``); ``strict=False`` renders unknown names as
    empty and appends to ``warnings`` instead, as Octopus does.
    """
    rendered = {}
    names = variables._names
    for key, value in variables._values.items():
        if "#{" in value:
            if key in variables.sensitive:
                value = _render_secret(value, variables, names[key], strict, warnings)
            else:
                value = render(value, variables, where=f"variable {names[key]!r}", strict=strict, warnings=warnings)
        rendered[key] = value
    return VariableSet._build(dict(names), rendered, variables.sensitive)


def _render_secret(value: str, variables: VariableSet, name: str, strict: bool, warnings: list[str] | None) -> str:
    """Render a sensitive value; an error or warning names the variable, never a fragment of its text (a secret
    such as ``Pa#{ssWord9Z}qq`` would otherwise show up as "unknown variable 'ssWord9Z'")."""
    from_secret: list[str] = []
    hidden = f"variable {name!r}: its sensitive value does not evaluate as a template (its text is not shown)"
    try:
        value = render(value, variables, where=f"variable {name!r}", strict=strict, warnings=from_secret)
    except TemplateError:
        raise TemplateError(hidden, variable=name) from None
    if from_secret and warnings is not None:
        warnings.append(hidden)
    return value
