"""Which XDT transforms a package step runs, and running them over an extracted folder (Octopus's rules).

Automatic: for every ``X.config`` in the package, ``X.Release.config`` then ``X.<Environment>.config`` from the
same folder, when present (file names compared case-insensitively, as on Windows). Then each entry of the step's
``transforms:`` in order — ``Transform.config => Target.config`` (paths relative to the package; ``*`` in both
sides pairs files, ``Web.*.config => Web.config``), or a bare ``Web.Custom.config`` meaning ``Web.config``. An
entry whose transform file is missing is an error unless it is marked ``optional``. A pair is applied once even
when listed twice.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from snapshots.errors import ConfigError
from snapshots.variables.xdt import transform


@dataclass(frozen=True)
class Pair:
    transform: str
    target: str


def _norm(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts:
        raise ConfigError(f"transform path {path!r} must be relative to the package and stay inside it")
    return "/".join(parts)


def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("".join("([^/]*)" if c == "*" else re.escape(c) for c in glob) + r"\Z", re.I)


def parse(spec: str) -> tuple[str, str | None]:
    """``"a => b"`` → (a, b); a bare ``"Web.Custom.config"`` → (it, None)."""
    if "=>" in spec:
        left, _, right = spec.partition("=>")
        if not left.strip() or not right.strip():
            raise ConfigError(f"transform {spec!r}: expected 'Transform.config => Target.config'")
        return _norm(left.strip()), _norm(right.strip())
    return _norm(spec.strip()), None


def plan(files: Iterable[str], environment: str, entries: Sequence[tuple[str, bool]], *,
         automatic: bool = True) -> list[Pair]:
    """The (transform, target) pairs to run, in order, from the package's file list (relative '/' paths)."""
    listed = sorted(files)
    by_lower = {f.lower(): f for f in listed}
    pairs: list[Pair] = []

    def add(pair: Pair) -> None:
        if pair not in pairs and pair.transform != pair.target:
            pairs.append(pair)

    if automatic:
        for target in listed:
            if not target.lower().endswith(".config"):
                continue
            stem = target[: -len(".config")]
            for middle in ("Release", environment):
                found = by_lower.get(f"{stem}.{middle}.config".lower())
                if found:
                    add(Pair(found, target))
    for spec, optional in entries:
        source, named = parse(spec)
        if named is None:
            name = PurePosixPath(source)
            parts = name.name.split(".")
            if len(parts) < 3:
                raise ConfigError(f"transform {spec!r}: cannot tell the target file (name it: "
                                  f"'{source} => Web.config')")
            named = str(name.with_name(".".join([parts[0], *parts[2:]])))
        target = named
        matched = 0
        if "*" in source:
            pattern = _pattern(source)
            for candidate in listed:
                m = pattern.match(candidate)
                if not m:
                    continue
                wanted = target
                for group in m.groups():
                    wanted = wanted.replace("*", group, 1)
                real = by_lower.get(wanted.lower())
                if real:
                    matched += 1
                    add(Pair(candidate, real))
        else:
            real_source, real_target = by_lower.get(source.lower()), by_lower.get(target.lower())
            if real_source and real_target:
                matched = 1
                add(Pair(real_source, real_target))
            elif not optional:
                missing = source if not real_source else target
                raise ConfigError(f"transform {spec!r}: the package has no file {missing!r} "
                                  "(mark the entry optional: true if it may be absent)")
        if not matched and not optional:
            raise ConfigError(f"transform {spec!r}: no file in the package matches it "
                              "(mark the entry optional: true if it may be absent)")
    return pairs


def apply(root: Path, pairs: Sequence[Pair]) -> list[str]:
    """Run the pairs over the folder in memory; write the changed targets (atomically) only if all succeeded.
    Returns report lines naming files, never values."""
    contents: dict[str, bytes] = {}
    report: list[str] = []
    for pair in pairs:
        if pair.target not in contents:
            contents[pair.target] = (root / pair.target).read_bytes()
        data = contents.get(pair.transform)
        if data is None:
            data = (root / pair.transform).read_bytes()
        result = transform(contents[pair.target], data, source_file=pair.target, transform_file=pair.transform)
        contents[pair.target] = result.data
        report.append(f"{pair.target}: applied {pair.transform}")
        report.extend(f"{pair.transform}: warning: {note}" for note in result.notes)
    staged: list[tuple[str, Path]] = []
    try:
        for rel, data in contents.items():
            path = root / rel
            if path.read_bytes() == data:
                continue
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, path.stat().st_mode & 0o7777)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    return report


def run(root: Path, environment: str, entries: Sequence[tuple[str, bool]], *, automatic: bool = True) -> list[str]:
    """Plan from what the folder holds, then apply."""
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return apply(root, plan(files, environment, entries, automatic=automatic))
