"""Read YAML with line numbers, so every error can point at ``file:line: path``.

PyYAML's node tree keeps each value's position; we construct plain data from the same tree and keep
the tree to translate a pydantic error location into a line. Duplicate keys, which PyYAML silently
overwrites, are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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
            if not last and isinstance(element, str) and _is_tag(node, element):
                continue
            child = _child(node, element)
            if child is not None:
                node = child
                parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
            elif last and isinstance(element, str) and not _is_tag(node, element):
                parts.append(f".{element}")
        return node.start_mark.line + 1, "".join(parts).lstrip(".")


def _is_tag(node: yaml.Node, element: str) -> bool:
    if element in ("step", "parent"):
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


def _refuse_duplicate_keys(node: yaml.Node, file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ConfigError(f"duplicate key {key.value!r}", file=file, line=key.start_mark.line + 1)
                seen.add(key.value)
            _refuse_duplicate_keys(value, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, file)


def read_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file into data + positions, or raise ConfigError with file and line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", file=file) from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError("the file is empty", file=file)
        _refuse_duplicate_keys(root, file)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"malformed YAML: {what}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", file=file) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top of the file", file=file, line=1)
    return YamlDocument(file=file, data=data, root=root)


def validation_error(doc: YamlDocument, exc: ValidationError) -> ConfigError:
    """The first pydantic error as one ConfigError line (with a count of the others)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    line, path = doc.locate(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, file=doc.file, line=line, path=path or None)
