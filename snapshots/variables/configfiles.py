"""Variable substitution inside configuration files of an extracted package.

Octopus's "Structured configuration variables" and ".NET XML configuration variables", done as *minimal
text edits*: only the bytes of a replaced value change, so comments, key order, indentation, quoting,
line endings and the XML declaration survive, and a diff of the deployed file shows exactly what ferry
touched. The parsers here (a JSON scanner that also accepts the comments and trailing commas ASP.NET Core
allows, PyYAML's node marks, expat's byte offsets, a ``.properties`` line reader) exist to find *where*
a value is; they never re-serialise a document.

Variable names are colon-separated paths (``Logging:LogLevel:Default``, arrays by index
``Servers:0:Name``), matched case-insensitively; keys missing from a file are never added. Reports name
keys, never values: values may be secrets.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import re
import tempfile
import xml.parsers.expat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]  # in CPython's json.decoder; not in typeshed
from pathlib import Path
from typing import Literal, Protocol

import yaml
import yaml.emitter
import yaml.reader
import yaml.resolver

from snapshots.errors import ConfigError

Format = Literal["json", "yaml", "xml", "properties"]

#: File extensions (lower case) and the structured format each one is read as.
FORMAT_BY_SUFFIX: dict[str, Format] = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".xml": "xml",
    ".config": "xml",
    ".properties": "properties",
}

_BOM = "\ufeff"


class Renderer(Protocol):
    """Renders ``#{...}`` templates in one file's text; ``where`` names the file in error messages."""

    def __call__(self, text: str, where: str, /) -> str: ...


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _apply_edits(text: str, edits: list[_Edit]) -> str:
    """Splice non-overlapping edits into ``text`` (applied back to front so offsets stay valid)."""
    out = text
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        out = out[: edit.start] + edit.text + out[edit.end:]
    return out


def _newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


class _Lookup:
    """Case-insensitive view of the variables; remembers which names were used, in file order."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._by_lower = {name.lower(): (name, value) for name, value in variables.items()}
        self.used: list[str] = []

    def get(self, key: str) -> tuple[str, str] | None:
        return self._by_lower.get(key.lower())

    def names(self) -> Iterator[tuple[str, str]]:
        return iter(self._by_lower.values())

    def mark(self, name: str) -> None:
        if name not in self.used:
            self.used.append(name)


# --------------------------------------------------------------------------------------------- JSON


@dataclass
class _JNode:
    kind: Literal["object", "array", "string", "number", "true", "false", "null"]
    start: int
    end: int
    members: list[tuple[str, _JNode]] = field(default_factory=list)  # object members / array items


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_JSON_WS = re.compile(r"[ \t\r\n]*")


class _JsonScanner:
    """Recursive-descent JSON reader that records each value's span.

    Accepts ``//`` and ``/* */`` comments and trailing commas, as ASP.NET Core's configuration reader
    (and Newtonsoft, which Octopus uses) do, so real ``appsettings.json`` files work.
    """

    def __init__(self, text: str, file: str) -> None:
        self.text, self.file, self.pos = text, file, 0

    def fail(self, message: str, index: int | None = None) -> ConfigError:
        line, col = _line_col(self.text, self.pos if index is None else index)
        return ConfigError(f"malformed JSON: {message} (line {line}, column {col})",
                           file=self.file, line=line)

    def skip(self) -> None:
        text = self.text
        while True:
            self.pos = _JSON_WS.match(text, self.pos).end()  # type: ignore[union-attr]  # * matches always
            if text.startswith("//", self.pos):
                nl = text.find("\n", self.pos)
                self.pos = len(text) if nl < 0 else nl + 1
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = close + 2
            else:
                return

    def document(self) -> _JNode:
        try:
            self.skip()
            node = self.value()
            self.skip()
        except RecursionError:
            raise self.fail("nested too deeply") from None
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the end of the document")
        return node

    def string(self) -> str:
        try:
            value, self.pos = scanstring(self.text, self.pos + 1, True)
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg.lower(), exc.pos) from None
        return value

    def value(self) -> _JNode:
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.fail("unexpected end of file, expected a value")
        ch = text[start]
        if ch == "{":
            return self.container("object", "}")
        if ch == "[":
            return self.container("array", "]")
        if ch == '"':
            self.string()
            return _JNode("string", start, self.pos)
        for literal in ("true", "false", "null"):
            if text.startswith(literal, start):
                self.pos = start + len(literal)
                return _JNode(literal, start, self.pos)
        number = _JSON_NUMBER.match(text, start)
        if number:
            self.pos = number.end()
            return _JNode("number", start, self.pos)
        raise self.fail(f"expected a value, found {ch!r}")

    def container(self, kind: Literal["object", "array"], close: str) -> _JNode:
        node = _JNode(kind, self.pos, -1)
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith(close, self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            if kind == "object":
                if not self.text.startswith('"', self.pos):
                    raise self.fail("expected a property name in double quotes or '}'")
                key = self.string()
                self.skip()
                if not self.text.startswith(":", self.pos):
                    raise self.fail("expected ':' after a property name")
                self.pos += 1
                self.skip()
            else:
                key = str(len(node.members))
            node.members.append((key, self.value()))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith(close, self.pos):
                raise self.fail(f"expected ',' or {close!r}")


def _json_indent_unit(text: str) -> str | None:
    """The file's indentation step (first indented line's leading whitespace), or None if one line."""
    match = re.search(r"\n([ \t]+)\S", text)
    if match:
        return match.group(1)
    return None if "\n" not in text.strip() else ""


def _json_replacement(node: _JNode, value: str, text: str) -> str | None:
    """New JSON text for ``node``, keeping its type when the value allows it; None = leave it alone."""
    if node.kind in ("object", "array"):
        # Only JSON of the same shape replaces a subtree: a stray scalar must not wipe out a section.
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        if not isinstance(parsed, dict if node.kind == "object" else list):
            return None
        unit = _json_indent_unit(text)
        dumped = json.dumps(parsed, ensure_ascii=False, indent=unit)
        line_start = text.rfind("\n", 0, node.start) + 1
        before = text[line_start:node.start]
        base = before[:len(before) - len(before.lstrip(" \t"))]
        return dumped.replace("\n", _newline_of(text) + base)
    if node.kind == "number" and _JSON_NUMBER.fullmatch(value):
        return value
    if node.kind in ("true", "false") and value.lower() in ("true", "false"):
        return value.lower()
    if node.kind == "null" and value == "null":
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _replace_json(text: str, lookup: _Lookup, file: str) -> str:
    root = _JsonScanner(text, file).document()
    edits: list[_Edit] = []

    def walk(node: _JNode, path: list[str]) -> None:
        for key, child in node.members:
            child_path = [*path, key]
            hit = lookup.get(":".join(child_path))
            if hit is not None:
                new = _json_replacement(child, hit[1], text)
                if new is not None:
                    if new != text[child.start:child.end]:
                        edits.append(_Edit(child.start, child.end, new))
                    lookup.mark(hit[0])
                    continue  # the outermost match wins; nothing inside a replaced subtree
            walk(child, child_path)

    walk(root, [])
    return _apply_edits(text, edits)


# --------------------------------------------------------------------------------------------- YAML

_RESOLVER = yaml.resolver.Resolver()
_ANALYZER = yaml.emitter.Emitter(io.StringIO(), allow_unicode=True)
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _yaml_double_quoted(value: str) -> str:
    out = []
    for ch in value:
        if ch in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[ch])
        elif _NON_PRINTABLE.match(ch) or ch in "\x85\u2028\u2029\ufeff":
            code = ord(ch)
            out.append(f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}" if code <= 0xFFFF
                       else f"\\U{code:08X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _yaml_resolves_to(value: str) -> str:
    return _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))


def _yaml_flow_scalar(value: str, tag: str, style: str | None, in_flow: bool) -> str:
    """Scalar text for a value in a flow/plain position, keeping the original type and quoting."""
    analysis = _ANALYZER.analyze_scalar(value)
    plain_ok = bool(value) and not analysis.multiline and (
        analysis.allow_flow_plain if in_flow else analysis.allow_block_plain)
    if style is None and plain_ok:
        resolved = _yaml_resolves_to(value)
        if resolved == _BOOL_TAG and value.lower() not in ("true", "false"):
            resolved = ""  # yes/no/on/off are booleans only in YAML 1.1: quote them for 1.2 readers
        if resolved == tag or (resolved == _STR_TAG and tag != _STR_TAG and tag.startswith("tag:yaml.org")):
            # Same type as before (a number stays a number); or the old value was typed and the new one
            # is plain text: it becomes a string, as Octopus does.
            return value
    if style != '"' and not analysis.multiline and analysis.allow_single_quoted and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    return _yaml_double_quoted(value)


def _owned_breaks(original: str, nl: str) -> str:
    """The line break(s) (and blank lines) at the end of a block node's span, which its replacement
    must keep so the next key stays on its own line."""
    tail = original[len(original.rstrip()):]
    first = min((i for i in (tail.find("\r"), tail.find("\n")) if i >= 0), default=-1)
    return tail[first:] if first >= 0 else ""


def _yaml_block_scalar(value: str, original: str, style: str, nl: str) -> str | None:
    """Re-emit a ``|``/``>`` block scalar with the original's indentation; None if it can't be."""
    tail = _owned_breaks(original, nl)
    body_lines = original.split("\n")[1:]
    indent = next((ln[:len(ln) - len(ln.lstrip(" "))] for ln in body_lines if ln.strip()), "")
    lines = value.split("\n")
    if not indent or value.endswith("\n\n") or not value or lines[0].startswith(" "):
        return None
    if any(_NON_PRINTABLE.search(ln) for ln in lines) or "\r" in value:
        return None
    chomp = "" if value.endswith("\n") else "-"
    if chomp == "":
        lines = lines[:-1]
    header = (">" if style == ">" and len(lines) == 1 else "|") + chomp
    body = nl.join(indent + ln if ln else "" for ln in lines)
    return header + nl + body + tail


def _replace_yaml(text: str, lookup: _Lookup, file: str) -> str:
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        where = f" (line {line}, column {col})" if mark else ""
        raise ConfigError(f"malformed YAML: {exc.problem or exc.context}{where}",
                          file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", file=file) from None

    nl = _newline_of(text)
    edits: list[_Edit] = []
    seen: set[int] = set()

    def replace(node: yaml.Node, value: str, in_flow: bool) -> bool:
        original = text[node.start_mark.index:node.end_mark.index]
        if isinstance(node, yaml.ScalarNode):
            new: str | None = None
            if node.style in ("|", ">"):
                new = _yaml_block_scalar(value, original, node.style, nl)
                if new is None:  # fall back to a quoted scalar followed by the line break(s) it owned
                    new = _yaml_flow_scalar(value, node.tag, '"', True) + _owned_breaks(original, nl)
            elif not node.tag.startswith("tag:yaml.org,2002:"):
                return False  # an application tag (!Ref, !Sub, ...): not ours to rewrite
            else:
                new = _yaml_flow_scalar(value, node.tag, node.style, in_flow)
                if not original and not text[node.start_mark.index - 1:node.start_mark.index].isspace():
                    new = " " + new  # an empty null right after "key:" needs a separating space
        else:
            try:
                parsed = json.loads(value)
            except ValueError:
                return False
            if not isinstance(parsed, dict if isinstance(node, yaml.MappingNode) else list):
                return False
            new = json.dumps(parsed, ensure_ascii=False) + _owned_breaks(original, nl)
        if new != original:
            edits.append(_Edit(node.start_mark.index, node.end_mark.index, new))
        return True

    def walk(node: yaml.Node, path: list[str], in_flow: bool) -> None:
        if id(node) in seen:  # an alias: edit the anchored original only, once
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [(str(k.value), v) for k, v in node.value
                        if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge"]
        elif isinstance(node, yaml.SequenceNode):
            children = [(str(i), v) for i, v in enumerate(node.value)]
        else:
            return
        flow = in_flow or bool(node.flow_style)
        for key, child in children:
            child_path = [*path, key]
            hit = lookup.get(":".join(child_path))
            if hit is not None and id(child) not in seen and replace(child, hit[1], flow):
                seen.add(id(child))
                lookup.mark(hit[0])
                continue
            walk(child, child_path, flow)

    for document in documents:
        if document is not None:
            walk(document, [], False)
    return _apply_edits(text, edits)


# ---------------------------------------------------------------------------------------------- XML


@dataclass
class _XAttr:
    value: str
    start: int  # byte span of the value between the quotes
    end: int
    quote: bytes


@dataclass(eq=False)
class _XElem:
    name: str
    attrs: dict[str, _XAttr]
    start: int  # byte offset of '<'
    tag_end: int  # byte offset just after the start tag's '>'
    self_closing: bool
    parent: _XElem | None
    children: list[_XElem] = field(default_factory=list)
    end_tag_start: int = -1  # byte offset of '</' (or tag_end when self-closing)

    @property
    def local(self) -> str:
        return self.name.rpartition(":")[2]


_XML_ATTR = re.compile(rb"""([^\s=/<>"']+)\s*=\s*("[^"]*"|'[^']*')""")


def _tag_end(data: bytes, start: int) -> int:
    """Offset just after the '>' closing the start tag at ``start`` (quotes may contain '>')."""
    quote = None
    i = start + 1
    while i < len(data):
        c = data[i:i + 1]
        if quote:
            if c == quote:
                quote = None
        elif c in (b'"', b"'"):
            quote = c
        elif c == b">":
            return i + 1
        i += 1
    return len(data)


def _parse_xml(data: bytes, file: str) -> _XElem:
    """Parse with expat (which validates) and record byte spans of tags, attribute values and content."""
    parser = xml.parsers.expat.ParserCreate("UTF-8")
    stack: list[_XElem] = []
    roots: list[_XElem] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        begin = parser.CurrentByteIndex
        end = _tag_end(data, begin)
        spans: dict[str, _XAttr] = {}
        for match in _XML_ATTR.finditer(data, begin, end):
            attr_name = match.group(1).decode("utf-8")
            if attr_name in attrs:
                spans[attr_name] = _XAttr(attrs[attr_name], match.start(2) + 1, match.end(2) - 1,
                                          match.group(2)[:1])
        parent = stack[-1] if stack else None
        elem = _XElem(name, spans, begin, end, data[end - 2:end] == b"/>", parent)
        (parent.children if parent else roots).append(elem)
        stack.append(elem)

    def finish(name: str) -> None:
        elem = stack.pop()
        elem.end_tag_start = elem.tag_end if elem.self_closing else parser.CurrentByteIndex

    parser.StartElementHandler = start
    parser.EndElementHandler = finish
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        reason = xml.parsers.expat.ErrorString(exc.code)
        raise ConfigError(f"malformed XML: {reason} (line {exc.lineno}, column {exc.offset + 1})",
                          file=file, line=exc.lineno) from None
    return roots[0]


def _iter_elems(elem: _XElem) -> Iterator[_XElem]:
    yield elem
    for child in elem.children:
        yield from _iter_elems(child)


def _xml_attr_text(value: str, quote: bytes) -> bytes:
    out = (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
           .replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#9;"))
    out = out.replace('"', "&quot;") if quote == b'"' else out.replace("'", "&apos;")
    return out.encode("utf-8")


def _xml_text(value: str) -> bytes:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        "\r", "&#13;").encode("utf-8")


def _is_xml_fragment(value: str) -> bool:
    try:
        xml.parsers.expat.ParserCreate("UTF-8").Parse(b"<x>" + value.encode("utf-8") + b"</x>", True)
    except xml.parsers.expat.ExpatError:
        return False
    return True


_CDATA = re.compile(rb"^(\s*<!\[CDATA\[)(.*?)(\]\]>\s*)$", re.S)


def _xml_content_edit(data: bytes, elem: _XElem, value: str) -> _Edit | None:
    """Replace an element's content: text (keeping a lone CDATA section) or, if it has child elements,
    an XML fragment (Octopus's rule); None when the value doesn't fit."""
    if elem.self_closing:
        name = elem.name.encode("utf-8")
        tag = data[elem.start:elem.tag_end - 2].rstrip()
        new = tag + b">" + _xml_text(value) + b"</" + name + b">"
        return _Edit(elem.start, elem.tag_end, new.decode("utf-8"))
    inner = data[elem.tag_end:elem.end_tag_start]
    if elem.children:
        if not _is_xml_fragment(value):
            return None
        return _Edit(elem.tag_end, elem.end_tag_start, value)
    cdata = _CDATA.match(inner)
    if cdata and b"<![CDATA[" not in cdata.group(2):
        body = value.replace("]]>", "]]]]><![CDATA[>").encode("utf-8")
        new = cdata.group(1) + body + cdata.group(3)
    else:
        new = _xml_text(value)
    return _Edit(elem.tag_end, elem.end_tag_start, new.decode("utf-8"))


_XPATH_STEP = re.compile(
    r"""(?P<axis>//|/)(?:
          @(?P<attr>[\w.:-]+)
        | (?P<text>text\(\))
        | (?P<name>\*|[\w.:-]+)(?P<preds>(?:\[[^\]]*\])*)
    )""", re.X)
_XPATH_PRED = re.compile(r"""\[\s*(?:@(?P<attr>[\w.:-]+)\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')
                             |(?P<index>\d+))\s*\]""", re.X)


@dataclass
class _XStep:
    descendant: bool
    name: str
    preds: list[tuple[str, str] | int]


def _parse_xpath(key: str) -> tuple[list[_XStep], str | None, bool] | None:
    """Parse the supported XPath subset: absolute steps with ``[@a='v']``/``[n]`` predicates, ending
    optionally in ``/@attr`` or ``/text()``. Returns (steps, attribute, text) or None if unsupported."""
    steps: list[_XStep] = []
    attr: str | None = None
    want_text = False
    pos = 0
    while pos < len(key):
        match = _XPATH_STEP.match(key, pos)
        if not match or attr or want_text:
            return None
        pos = match.end()
        if match.group("attr"):
            if match.group("axis") != "/":
                return None
            attr = match.group("attr")
        elif match.group("text"):
            want_text = True
        else:
            preds: list[tuple[str, str] | int] = []
            rest = match.group("preds")
            ppos = 0
            while ppos < len(rest):
                pm = _XPATH_PRED.match(rest, ppos)
                if not pm:
                    return None
                ppos = pm.end()
                if pm.group("index"):
                    preds.append(int(pm.group("index")))
                else:
                    value = pm.group("dq") if pm.group("dq") is not None else pm.group("sq")
                    preds.append((pm.group("attr"), value))
            steps.append(_XStep(match.group("axis") == "//", match.group("name"), preds))
    return (steps, attr, want_text) if steps else None


def _name_matches(elem: _XElem, name: str) -> bool:
    return name == "*" or elem.name == name or elem.local == name.rpartition(":")[2]


def _select(root: _XElem, steps: list[_XStep]) -> list[_XElem]:
    document = _XElem("", {}, 0, 0, False, None, [root])
    current = [document]
    for step in steps:
        found: list[_XElem] = []
        for ctx in current:
            pool = [e for c in ctx.children for e in _iter_elems(c)] if step.descendant else ctx.children
            matches = [e for e in pool if _name_matches(e, step.name)]
            for pred in step.preds:
                if isinstance(pred, int):
                    matches = matches[pred - 1:pred] if pred >= 1 else []
                else:
                    matches = [e for e in matches if pred[0] in e.attrs and e.attrs[pred[0]].value == pred[1]]
            found.extend(e for e in matches if e not in found)
        current = found
    return current


def _replace_xml(text: str, lookup: _Lookup, file: str, dotnet: bool) -> str:
    data = text.encode("utf-8")
    root = _parse_xml(data, file)
    edits: list[_Edit] = []
    claimed: list[tuple[int, int]] = []

    def add(edit: _Edit | None, name: str) -> None:
        if edit is None or any(edit.start < end and start < edit.end for start, end in claimed):
            return  # first variable to reach a span wins; overlapping edits would corrupt the file
        claimed.append((edit.start, edit.end))
        lookup.mark(name)
        if edit.text.encode("utf-8") != data[edit.start:edit.end]:
            edits.append(edit)

    def set_attr(elem: _XElem, attr: str, name: str, value: str) -> None:
        a = elem.attrs.get(attr)
        if a is not None:
            add(_Edit(a.start, a.end, _xml_attr_text(value, a.quote).decode("utf-8")), name)

    if dotnet:
        # The .NET conventions Octopus applies to every *.config file, wherever the sections are nested.
        for elem in _iter_elems(root):
            parent = elem.parent.local if elem.parent else ""
            if elem.local == "add" and parent in ("appSettings", "connectionStrings"):
                key_attr, value_attr = (("key", "value") if parent == "appSettings"
                                        else ("name", "connectionString"))
                key = elem.attrs.get(key_attr)
                hit = lookup.get(key.value) if key else None
                if hit:
                    set_attr(elem, value_attr, hit[0], hit[1])
            elif (elem.local == "setting" and elem.parent and elem.parent.parent
                  and elem.parent.parent.local == "applicationSettings"):
                key = elem.attrs.get("name")
                hit = lookup.get(key.value) if key else None
                if hit:
                    for child in elem.children:
                        if child.local == "value":
                            add(_xml_content_edit(data, child, hit[1]), hit[0])

    for name, value in lookup.names():
        if not name.startswith("/"):
            continue
        parsed = _parse_xpath(name)
        if parsed is None:
            continue
        steps, attr, _ = parsed
        for elem in _select(root, steps):
            if attr is not None:
                set_attr(elem, attr, name, value)
            else:
                add(_xml_content_edit(data, elem, value), name)

    # Edits are byte offsets: splice in bytes, then decode once.
    out = data
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        out = out[: edit.start] + edit.text.encode("utf-8") + out[edit.end:]
    return out.decode("utf-8")


# ------------------------------------------------------------------------------------------ .properties

_PROP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")


def _props_unescape(raw: str) -> str:
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2:i + 6]):
                out.append(chr(int(raw[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _props_escape_value(value: str) -> str:
    """Escape per java.util.Properties: backslashes, control characters, a leading space, and
    non-ASCII as \\uXXXX so the file reads the same under ISO-8859-1 (Java's default) and UTF-8."""
    out = []
    for i, ch in enumerate(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch == " " and i == 0:
            out.append("\\ ")
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(ch))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    raw = ch.encode("utf-16-be")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def _props_entries(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield (key, value_start, value_end) for each logical line, with offsets into ``text``."""
    pos = 0
    while pos < len(text):
        # Gather one logical line: physical lines joined while they end in an odd number of backslashes.
        start = pos
        end = pos
        while True:
            match = _PROP_LINE.match(text, pos)
            assert match is not None
            body = match.group(0).rstrip("\r\n")
            end = pos + len(body)
            pos = match.end()
            backslashes = len(body) - len(body.rstrip("\\"))
            if backslashes % 2 == 0 or pos >= len(text):
                break
        if pos == start:  # empty match at the very end
            break
        i = start
        while i < end and text[i] in " \t\f":
            i += 1
        if i >= end or text[i] in "#!":
            continue
        key_start = i
        while i < end and text[i] not in "=: \t\f":
            i += 2 if text[i] == "\\" else 1
        key_raw = text[key_start:min(i, end)]
        while i < end and text[i] in " \t\f":
            i += 1
        if i < end and text[i] in "=:":
            i += 1
            while i < end and text[i] in " \t\f":
                i += 1
        key = _props_unescape(re.sub(r"\\(?:\r\n|\r|\n)[ \t\f]*", "", key_raw))
        yield key, min(i, end), end


def _replace_properties(text: str, lookup: _Lookup) -> str:
    edits: list[_Edit] = []
    for key, start, end in _props_entries(text):
        hit = lookup.get(key) or lookup.get(key.replace(".", ":"))
        if hit is None:
            continue
        lookup.mark(hit[0])
        new = _props_escape_value(hit[1])
        if new != text[start:end]:
            edits.append(_Edit(start, end, new))
    return _apply_edits(text, edits)


# ----------------------------------------------------------------------------------------- public API


def replace_structured(text: str, fmt: Format, variables: Mapping[str, str], *, file: str,
                       dotnet_conventions: bool | None = None) -> tuple[str, list[str]]:
    """Set the values of keys that ``variables`` name by colon path; return (new text, names used).

    Only keys present in the file are touched (never added). ``dotnet_conventions`` turns on the
    ``appSettings``/``connectionStrings``/``applicationSettings`` rules for XML; by default they apply to
    files named ``*.config``. Malformed input raises ConfigError naming ``file`` and the position.
    """
    bom = text.startswith(_BOM)
    body = text[1:] if bom else text
    lookup = _Lookup(variables)
    if fmt == "json":
        new = _replace_json(body, lookup, file)
    elif fmt == "yaml":
        new = _replace_yaml(body, lookup, file)
    elif fmt == "xml":
        dotnet = file.lower().endswith(".config") if dotnet_conventions is None else dotnet_conventions
        new = _replace_xml(body, lookup, file, dotnet)
    elif fmt == "properties":
        new = _replace_properties(body, lookup)
    else:
        raise ValueError(f"unknown structured format {fmt!r}")
    return (_BOM + new if bom else new), lookup.used


def substitute_text(text: str, render: Callable[[str], str]) -> str:
    """Apply the ``#{...}`` renderer to a file's text (kept separate so this module needs no templating)."""
    return render(text)


def format_for(path: str | Path) -> Format | None:
    """The structured format a file name implies, or None."""
    return FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())


# ------------------------------------------------------------------------------------- directory helper

_BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]


@dataclass
class _Loaded:
    path: Path
    rel: str
    raw: bytes
    bom: bytes
    encoding: str
    text: str


MAX_CONFIG_BYTES = 64 << 20
"""Largest file ferry substitutes variables in (it is edited in memory, several copies at once): a glob that
catches a 1.5 GB data file is refused with its name, not allowed to take gigabytes of memory."""

SNIFF_BYTES = 8192


def _is_binary(path: Path) -> bool:
    """A NUL byte in the first 8 KiB, and no UTF-16/32 byte order mark to explain it: what git calls binary."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    return b"\0" in head and not any(head.startswith(bom) for bom, _ in _BOMS)


def _load(path: Path, rel: str, allow_latin1: bool) -> _Loaded:
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{_size(size)} is over the {_size(MAX_CONFIG_BYTES)} limit for variable substitution "
                          "(narrow the file pattern)", file=rel)
    raw = path.read_bytes()
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return _Loaded(path, rel, raw, bom, encoding, raw[len(bom):].decode(encoding))
            except UnicodeDecodeError as exc:
                raise ConfigError(f"not valid {encoding} text at byte {exc.start}", file=rel) from None
    try:
        return _Loaded(path, rel, raw, b"", "utf-8", raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if allow_latin1:  # java.util.Properties' own encoding
            return _Loaded(path, rel, raw, b"", "latin-1", raw.decode("latin-1"))
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", file=rel) from None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GiB"


def _expand(root: Path, pattern: str) -> list[Path]:
    if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise ConfigError(f"file pattern {pattern!r} must be relative to the package and stay inside it")
    real_root = root.resolve()
    found = []
    for path in sorted(root.glob(pattern)):
        if not path.is_file():
            continue
        target = path.resolve()
        if target != real_root and real_root not in target.parents:
            continue  # a symlink leading out of the package: never write there
        found.append(target)
    return found


def _write_atomically(changes: list[tuple[_Loaded, bytes]]) -> None:
    """Write every temp file first, then rename them all, so a failure leaves no file half-written."""
    staged: list[tuple[str, Path]] = []
    try:
        for loaded, data in changes:
            fd, tmp = tempfile.mkstemp(dir=loaded.path.parent, prefix=f".{loaded.path.name}.", suffix=".tmp")
            staged.append((tmp, loaded.path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, loaded.path.stat().st_mode & 0o7777)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


def apply_to_directory(root: Path, *, substitute_globs: list[str], structured_globs: list[str],
                       variables: Mapping[str, str], render: Renderer) -> list[str]:
    """Substitute ``#{...}`` in files matching ``substitute_globs``, then set structured variables in
    files matching ``structured_globs`` (Octopus's order), all in memory; write only if every file
    succeeded, each atomically, keeping encoding, BOM and line endings. Returns report lines that name
    files and keys, never values.
    """
    root = Path(root)
    report: list[str] = []
    loaded: dict[Path, _Loaded] = {}
    texts: dict[Path, str] = {}
    notes: dict[Path, list[str]] = {}

    def get(path: Path) -> _Loaded:
        if path not in loaded:
            rel = path.relative_to(root.resolve()).as_posix()
            loaded[path] = _load(path, rel, allow_latin1=format_for(path) == "properties")
            texts[path] = loaded[path].text
            notes[path] = []
        return loaded[path]

    for pattern in substitute_globs:
        paths = _expand(root, pattern)
        if not paths:
            report.append(f"no file matches {pattern!r} (substitute variables)")
        for path in paths:
            if path not in loaded and _is_binary(path):
                report.append(f"{path.relative_to(root.resolve()).as_posix()}: skipped: binary file "
                              f"(matched {pattern!r}; variables are substituted in text files only)")
                continue
            item = get(path)

            def render_here(text: str, rel: str = item.rel) -> str:
                return render(text, rel)

            new = substitute_text(texts[path], render_here)
            if new != texts[path]:
                texts[path] = new
                if "substituted #{...} variables" not in notes[path]:
                    notes[path].append("substituted #{...} variables")

    for pattern in structured_globs:
        paths = _expand(root, pattern)
        if not paths:
            report.append(f"no file matches {pattern!r} (structured variables)")
        for path in paths:
            fmt = format_for(path)
            rel = path.relative_to(root.resolve()).as_posix()
            if fmt is None:
                raise ConfigError(f"cannot tell the structured format from the extension; expected one of "
                                  f"{', '.join(sorted(FORMAT_BY_SUFFIX))}", file=rel)
            item = get(path)
            new, keys = replace_structured(texts[path], fmt, variables, file=item.rel)
            texts[path] = new
            if keys:
                notes[path].append("set " + ", ".join(keys))

    changes: list[tuple[_Loaded, bytes]] = []
    for path, item in loaded.items():
        try:
            data = item.bom + texts[path].encode(item.encoding)
        except UnicodeEncodeError as exc:
            raise ConfigError(f"a substituted value cannot be written in the file's {item.encoding} "
                              f"encoding (character {exc.start})", file=item.rel) from None
        if data != item.raw:
            changes.append((item, data))
        if notes[path]:
            report.append(f"{item.rel}: {'; '.join(notes[path])}")
    _write_atomically(changes)
    return report
