"""Variables whose value is JSON, read as Octostache reads them: ``#{Test.Items[1].Name}``, ``#{Test[Hello]}``,
``#{each x in Test}`` over an array or an object.

Why: Octopus users keep structured values (sizes, endpoints) in one JSON variable and index into it; a defined
variable of the full name still wins. Octostache parses with Json.NET, which also accepts unquoted property
names (``{Name: "x"}``); that is the one leniency followed here.
"""

from __future__ import annotations

import json
import re
from typing import Any


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # not JSON, or no such property / index
_BARE_KEY = re.compile(r'([{,]\s*)([A-Za-z_$][\w$\-]*)(\s*:)')


def parse(text: str) -> Any:
    """The JSON object or array in ``text``, or ``ABSENT`` (plain text, a number, invalid JSON)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return ABSENT
    for candidate in (stripped, _BARE_KEY.sub(r'\1"\2"\3', stripped)):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        return doc if isinstance(doc, dict | list) else ABSENT
    return ABSENT


def split_path(rest: str) -> list[str] | None:
    """``.Items[1].Name`` → ``["Items", "1", "Name"]``; None when ``rest`` is not a path."""
    segments, i = [], 0
    while i < len(rest):
        if rest[i] == ".":
            j = i + 1
            while j < len(rest) and rest[j] not in ".[":
                j += 1
            segments.append(rest[i + 1:j])
            i = j
        elif rest[i] == "[":
            depth, j = 0, i
            while j < len(rest):
                depth += {"[": 1, "]": -1}.get(rest[j], 0)
                if depth == 0:
                    break
                j += 1
            if j == len(rest):
                return None
            segments.append(rest[i + 1:j])
            i = j + 1
        else:
            return None
    return segments if all(segments) else None


def walk(doc: Any, segments: list[str]) -> Any:
    """The node at ``segments`` (property names, case-insensitive if not exact; array indexes), or ``ABSENT``."""
    for seg in segments:
        if isinstance(doc, dict):
            if seg in doc:
                doc = doc[seg]
                continue
            doc = next((v for k, v in doc.items() if k.lower() == seg.lower()), ABSENT)
            if doc is ABSENT:
                return ABSENT
        elif isinstance(doc, list) and re.fullmatch(r"\d+", seg) and int(seg) < len(doc):
            doc = doc[int(seg)]
        else:
            return ABSENT
    return doc


def as_text(node: Any) -> str:
    """How Json.NET prints a node: strings as they are, null as empty, objects and arrays as compact JSON."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, bool):
        return "True" if node else "False"
    if isinstance(node, int | float):
        return repr(node)
    return json.dumps(node, separators=(",", ":"), ensure_ascii=False)


def entries(node: Any) -> list[tuple[str, Any]]:
    """What ``#{each}`` visits: an array's elements (the item is the element) or an object's properties (the item
    is the property name, ``.Value`` its value); null and scalars visit nothing."""
    if isinstance(node, list):
        return [(as_text(v), v) for v in node]
    if isinstance(node, dict):
        return list(node.items())
    return []
