"""The variable table: names keyed the way the engine looks them up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from snapshots.octostache.syntax import canon, variable_key


class VariableTable(Mapping[str, str]):
    """Variables keyed the way the engine looks them up (``variable_key``), read by ``render`` without copying.

    Why: turning a plain mapping into that lookup is the part of a render that grows with the number of
    variables (a deployment has thousands and renders many templates per target). Build one table per set of
    values, or subclass it, and every render with it skips the work. A name defined twice keeps its first
    spelling and its last value, as a plain mapping passed to ``render`` does.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, variables: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = ()) -> None:
        self._names: dict[str, str] = {}  # key -> canonical spelling (of the first definition)
        self._values: dict[str, str] = {}
        pairs = variables.items() if isinstance(variables, Mapping) else variables
        for name, raw in pairs:
            spelled = canon(name)
            key = spelled.lower()
            self._names.setdefault(key, spelled)
            self._values[key] = "" if raw is None else str(raw)

    def __getitem__(self, name: str) -> str:
        return self._values[variable_key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and variable_key(name) in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._values)

