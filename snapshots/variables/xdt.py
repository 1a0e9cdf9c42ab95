""".NET configuration transforms (XDT, ``Web.Release.config`` onto ``Web.config``), as Microsoft.Web.XmlTransform.

Octopus applies them worker-side before a package travels on; so does ferry. The transform document is walked
as Microsoft's engine walks it: every element stands for an XPath (its parent's path plus its own name, narrowed
by ``xdt:Locator``), and an element with ``xdt:Transform`` applies its verb to the source nodes that path selects;
the walk always continues into children.

Verbs: Replace, Insert, InsertBefore(xpath), InsertAfter(xpath), Remove, RemoveAll, RemoveAttributes(a,…),
SetAttributes(a,…). Locators: Match(a,…), Condition(predicate), XPath(absolute path).

Formatting: lxml finds nodes (full XPath 1.0); the output is written by this module, which copies the source's
own bytes for every start tag, end tag, text run and subtree the transform left alone (expat's byte offsets
say where they are), so comments, whitespace, quoting and attribute order survive and a diff shows only what
the transform did. New nodes are indented like their siblings; the xdt namespace never reaches the output.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from snapshots.errors import ConfigError

XDT_NS = "http://schemas.microsoft.com/XML-Document-Transform"
XDT_NAMESPACES = (XDT_NS, "https://schemas.microsoft.com/XML-Document-Transform")
"""The https form is what Microsoft's own syntax page prints (a typo there); accepted so a copied sample works."""
_T = f"{{{XDT_NS}}}Transform"
_L = f"{{{XDT_NS}}}Locator"
VERBS = ("Replace", "Insert", "InsertBefore", "InsertAfter", "Remove", "RemoveAll", "RemoveAttributes",
         "SetAttributes")
LOCATORS = ("Match", "Condition", "XPath")
_CALL = re.compile(r"^\s*([A-Za-z]+)\s*(?:\((.*)\))?\s*$", re.S)

Node = Any
"""An lxml node (element, comment or processing instruction); lxml's proxies are typed loosely."""


@dataclass
class Result:
    """The transformed bytes and what happened, in lines that name elements (never values)."""

    data: bytes
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- parsing


@dataclass
class _Span:
    start: int  # first byte of the node
    head_end: int  # byte after the start tag (== end for a self-closing element, a comment, a PI)
    end: int = -1  # byte after the node (its end tag)
    tail_end: int = -1  # byte where the next token starts (end of the text after the node)
    text_end: int = -1  # elements: byte where the first token inside starts
    self_closing: bool = False


def _token_end(data: bytes, start: int, kind: str) -> int:
    if kind == "comment":
        return data.index(b"-->", start) + 3
    if kind == "pi":
        return data.index(b"?>", start) + 2
    quote = 0
    i = start + 1
    while i < len(data):  # a start tag: '>' outside quoted attribute values
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
        i += 1
    raise ValueError("unterminated tag")


def _spans(data: bytes) -> tuple[list[_Span], int, int]:
    """Byte spans of every element, comment and PI inside the root, in document order; and the root's extent."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=None)
    parser.buffer_text = False
    spans: list[_Span] = []
    stack: list[_Span] = []
    last: list[_Span] = []  # the node whose tail runs until the next token
    depth = [0]

    def token_at(index: int) -> None:
        if last:
            last[0].tail_end = index
        if stack and stack[-1].text_end < 0:
            stack[-1].text_end = index

    def start(_name: str, _attrs: Any) -> None:
        at = parser.CurrentByteIndex
        token_at(at)
        end = _token_end(data, at, "tag")
        span = _Span(at, end, self_closing=data[end - 2:end] == b"/>")
        spans.append(span)
        stack.append(span)
        last.clear()
        depth[0] += 1

    def finish(_name: str) -> None:
        span = stack.pop()
        at = parser.CurrentByteIndex
        if span.self_closing:
            span.end, span.text_end = span.head_end, span.head_end
        else:
            if span.text_end < 0:
                span.text_end = at
            if last:
                last[0].tail_end = at
            span.end = data.index(b">", at) + 1
        last[:] = [span]
        depth[0] -= 1

    def other(kind: str) -> None:
        if not stack:
            return  # prolog / epilog: copied verbatim
        at = parser.CurrentByteIndex
        token_at(at)
        end = _token_end(data, at, kind)
        span = _Span(at, end, end, text_end=end)
        spans.append(span)
        last[:] = [span]

    parser.StartElementHandler = start
    parser.EndElementHandler = finish
    parser.CommentHandler = lambda _text: other("comment")
    parser.ProcessingInstructionHandler = lambda _t, _d: other("pi")
    parser.Parse(data, True)
    root = spans[0]
    return spans, root.start, root.end


def _parse(data: bytes, file: str) -> Any:
    parser = etree.XMLParser(remove_blank_text=False, remove_comments=False, remove_pis=False,
                             strip_cdata=False, resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return etree.fromstring(data, parser).getroottree()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        detail = re.sub(r", line \d+, column \d+$", "", (exc.msg or str(exc)).splitlines()[0])
        raise ConfigError(f"not well-formed XML: {detail}", file=file, line=line) from None


def _nodes(root: Node) -> Iterator[Node]:
    for node in root.iter():
        if isinstance(node.tag, str) or node.tag in (etree.Comment, etree.PI):
            yield node


@dataclass
class _Orig:
    span: _Span
    attrs: list[tuple[str, str]]
    text: str | None
    tail: str | None
    children: list[Node]


class _Source:
    """The source document: lxml's tree for finding nodes, plus the original bytes of every node."""

    def __init__(self, data: bytes, file: str) -> None:
        self.data, self.file = data, file
        self.tree = _parse(data, file)
        self.root = self.tree.getroot()
        spans, self.root_start, self.root_end = _spans(data)
        nodes = list(_nodes(self.root))
        if len(nodes) != len(spans):  # an entity expanding to markup, say: keep it whole, never guess
            raise ConfigError("cannot map the document's nodes to its bytes (entity references with markup?)",
                              file=file)
        self.orig: dict[Node, _Orig] = {}
        for node, span in zip(nodes, spans, strict=True):
            self.orig[node] = _Orig(span, list(node.attrib.items()) if isinstance(node.tag, str) else [],
                                    node.text, node.tail, list(node))
        self.encoding = (self.tree.docinfo.encoding or "utf-8").lower()

    # ---------------------------------------------------------------------------------------- writing

    def render(self) -> bytes:
        clean: dict[Node, bool] = {}
        out = [self.data[:self.root_start], self._node(self.root, None, clean), self.data[self.root_end:]]
        return b"".join(out)

    def _enc(self, text: str) -> bytes:
        return text.encode(self.encoding if self.encoding not in ("utf-16", "utf-32") else "utf-8")

    def _is_clean(self, node: Node, clean: dict[Node, bool]) -> bool:
        if node in clean:
            return clean[node]
        orig = self.orig.get(node)
        ok = orig is not None
        if ok and orig is not None and isinstance(node.tag, str):
            ok = (list(node.attrib.items()) == orig.attrs and node.text == orig.text and list(node) == orig.children
                  and all(self._is_clean(c, clean) and c.tail == self.orig[c].tail for c in node))
        elif ok and orig is not None:
            ok = node.text == orig.text
        clean[node] = ok
        return ok

    def _text(self, value: str | None, orig_value: str | None, start: int, end: int, same: bool) -> bytes:
        if not value:
            return b""
        if same and value == orig_value and 0 <= start <= end:
            return self.data[start:end]
        return self._enc(_escape_text(value))

    def _node(self, node: Node, parent_nsmap: dict[str | None, str] | None, clean: dict[Node, bool]) -> bytes:
        orig = self.orig.get(node)
        if orig is not None and self._is_clean(node, clean):
            return self.data[orig.span.start:orig.span.end]
        if node.tag is etree.Comment:
            return self._enc(f"<!--{node.text or ''}-->")
        if node.tag is etree.PI:
            return self._enc(f"<?{node.target}{' ' + node.text if node.text else ''}?>")
        name = _qname(node)
        same_attrs = orig is not None and list(node.attrib.items()) == orig.attrs
        children = list(node)
        empty = not children and not node.text
        parts: list[bytes] = []
        if orig is not None and same_attrs:
            head = self.data[orig.span.start:orig.span.head_end]
            if orig.span.self_closing and not empty:
                head = re.sub(rb"\s*/>$", b">", head)
            parts.append(head)
        else:
            parts.append(self._enc(self._start_tag(node, name, orig, parent_nsmap, empty)))
        if orig is not None and orig.span.self_closing and empty and same_attrs:
            return b"".join(parts)
        if empty and (orig is None or orig.span.self_closing):
            return b"".join(parts)  # the start tag was written self-closing
        if orig is not None:
            parts.append(self._text(node.text, orig.text, orig.span.head_end, orig.span.text_end, True))
        else:
            parts.append(self._enc(_escape_text(node.text or "")))
        nsmap = dict(node.nsmap)
        for child in children:
            parts.append(self._node(child, nsmap, clean))
            corig = self.orig.get(child)
            if corig is not None:
                parts.append(self._text(child.tail, corig.tail, corig.span.end, corig.span.tail_end, True))
            else:
                parts.append(self._enc(_escape_text(child.tail or "")))
        if orig is not None and not orig.span.self_closing:
            end_at = self.data.rindex(b"</", orig.span.start, orig.span.end)
            parts.append(self.data[end_at:orig.span.end])
        else:
            parts.append(self._enc(f"</{name}>"))
        return b"".join(parts)

    def _start_tag(self, node: Node, name: str, orig: _Orig | None, parent_nsmap: dict[str | None, str] | None,
                   empty: bool) -> str:
        """A start tag whose attributes changed: untouched attributes keep their own text and spacing, a changed
        one keeps its quote, a new one is appended with double quotes."""
        text = "<" + name
        raw: dict[str, tuple[str, str, str, str]] = {}  # name -> (space before, "=" with spaces, quote, raw text)
        close = " />" if empty else ">"
        if orig is None:  # a new node: declare what its new parent does not
            for prefix, uri in node.nsmap.items():
                if uri in XDT_NAMESPACES or (parent_nsmap is not None and parent_nsmap.get(prefix) == uri):
                    continue
                text += f' xmlns{":" + prefix if prefix else ""}="{_escape_attr(uri, chr(34))}"'
        else:
            head = self.data[orig.span.start:orig.span.head_end].decode(self.encoding, "replace")
            for m in _ATTR.finditer(head):
                if m.group(2).startswith("xmlns"):
                    text += m.group(0)
                else:
                    raw[m.group(2)] = (m.group(1), m.group(3), m.group(4)[0], m.group(0))
            tail = re.search(r"(\s*)/?>$", head)
            gap = tail.group(1) if tail else ""
            close = gap + ("/>" if empty else ">") if (orig.span.self_closing or not empty) else " />"
        before = dict(orig.attrs) if orig is not None else {}
        spaces: dict[str, str] = {}  # a removed attribute's leading space goes to the next kept one
        pending: str | None = None
        for shown, (space, _eq, _quote, _whole) in raw.items():
            kept = any(_attr_name(node, key) == shown for key in node.attrib)
            if not kept:
                pending = space if pending is None else pending
            elif pending is not None:
                spaces[shown], pending = pending, None
        for key, value in node.attrib.items():
            shown = _attr_name(node, key)
            if shown in raw:
                space, eq, quote, whole = raw[shown]
                if shown in spaces:
                    whole, space = spaces[shown] + whole[len(space):], spaces[shown]
                changed = f"{space}{shown}{eq}{quote}{_escape_attr(value, quote)}{quote}"
                text += whole if before.get(key) == value else changed
            else:
                text += f' {shown}="{_escape_attr(value, chr(34))}"'
        return text + close


_ATTR = re.compile(r"(\s+)([\w:.-]+)(\s*=\s*)(\"[^\"]*\"|'[^']*')")


def _qname(node: Node) -> str:
    local = etree.QName(node).localname
    return f"{node.prefix}:{local}" if node.prefix else local


def _attr_name(node: Node, key: str) -> str:
    if not key.startswith("{"):
        return key
    q = etree.QName(key)
    if q.namespace == "http://www.w3.org/XML/1998/namespace":
        return f"xml:{q.localname}"
    prefix = next((p for p, u in node.nsmap.items() if u == q.namespace and p), None)
    return f"{prefix}:{q.localname}" if prefix else q.localname


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(value: str, quote: str) -> str:
    out = _escape_text(value).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return out.replace('"', "&quot;") if quote == '"' else out.replace("'", "&apos;")


# ---------------------------------------------------------------------------------------- transforming


def _split_args(text: str) -> list[str]:
    """Arguments of ``Verb(a, b)``: commas outside quotes, brackets and parentheses separate them."""
    args: list[str] = []
    depth, quote, current = 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


class _Transformer:
    def __init__(self, source: _Source, transform_file: str) -> None:
        self.source, self.file = source, transform_file
        self.notes: list[str] = []

    def fail(self, element: Node, message: str) -> ConfigError:
        return ConfigError(f"{_describe(element)}: {message}", file=self.file, line=element.sourceline)

    def call(self, element: Node, attr: str, allowed: tuple[str, ...]) -> tuple[str, list[str]] | None:
        raw = element.get(attr)
        if raw is None:
            return None
        m = _CALL.match(raw)
        what = "xdt:Transform" if attr == _T else "xdt:Locator"
        if not m or m.group(1) not in allowed:
            name = m.group(1) if m else raw
            raise self.fail(element, f"unknown {what} {name!r} (expected one of {', '.join(allowed)})")
        return m.group(1), _split_args(m.group(2)) if m.group(2) is not None else []

    def namespaces(self, element: Node) -> dict[str, str]:
        return {p: u for p, u in element.nsmap.items() if p and u != XDT_NS}

    def step(self, element: Node) -> str:
        q = etree.QName(element)
        if q.namespace:
            return f"*[local-name()='{q.localname}' and namespace-uri()='{q.namespace}']"
        return q.localname

    def xpath_of(self, element: Node, parent_path: str) -> str:
        path = f"{parent_path}/{self.step(element)}"
        locator = self.call(element, _L, LOCATORS)
        if locator is None:
            return path
        kind, args = locator
        if kind == "Match":
            if not args:
                raise self.fail(element, "Match needs attribute names, e.g. Match(name)")
            tests = []
            for name in args:
                value = element.get(name)
                if value is None:
                    raise self.fail(element, f"Match({name}): the element has no attribute {name!r} to match on")
                tests.append(f"@{name}={_xpath_literal(value)}")
            return f"{path}[{' and '.join(tests)}]"
        if len(args) != 1:
            raise self.fail(element, f"{kind} takes one argument")
        if kind == "Condition":
            return f"{path}[{args[0]}]"
        expr = args[0]  # XPath: absolute, replaces the implicit path; .NET evaluates a relative one from the document
        return expr if expr.startswith(("/", "(")) else "/" + expr

    def select(self, element: Node, xpath: str, context: Node | None = None) -> list[Node]:
        try:
            found = (context if context is not None else self.source.tree).xpath(
                xpath, namespaces=self.namespaces(element))
        except etree.XPathError as exc:
            raise self.fail(element, f"invalid XPath {xpath!r}: {exc}") from None
        if not isinstance(found, list):
            raise self.fail(element, f"XPath {xpath!r} does not select elements")
        return [n for n in found if isinstance(n, etree._Element) and isinstance(n.tag, str)]

    def run(self, transform_root: Node) -> None:
        root = self.source.root
        if etree.QName(transform_root).localname != etree.QName(root).localname:
            raise self.fail(transform_root, f"the transform's root element does not match the source's "
                                            f"<{etree.QName(root).localname}>")
        path = "/" + self.step(transform_root)
        self.apply(transform_root, path, "")
        self.walk(transform_root, path)

    def walk(self, element: Node, path: str) -> None:
        for child in element:
            if not isinstance(child.tag, str):
                continue
            child_path = self.xpath_of(child, path)
            self.apply(child, child_path, path)
            self.walk(child, child_path)

    def apply(self, element: Node, path: str, parent_path: str) -> None:
        verb = self.call(element, _T, VERBS)
        if verb is None:
            return
        kind, args = verb
        where = _describe(element)
        if kind in ("Insert", "InsertBefore", "InsertAfter"):
            parents = self.select(element, parent_path) if parent_path else []
            if not parents:
                self.notes.append(f"{where}: no parent element to insert into; nothing done")
                return
            if kind == "Insert":
                for parent in parents:
                    _append(parent, _copy(element))
                return
            if len(args) != 1:
                raise self.fail(element, f"{kind} takes one XPath argument")
            siblings = self.select(element, args[0], parents[0])
            if not siblings:
                raise self.fail(element, f"{kind}({args[0]}) selects no element in the source")
            _insert_beside(siblings[0], _copy(element), after=kind == "InsertAfter")
            return
        targets = self.select(element, path)
        if not targets:
            self.notes.append(f"{where}: no element matches {path}; nothing done")
            return
        if kind == "Replace":
            if targets[0] is self.source.root:
                raise self.fail(element, "cannot replace the document's root element")
            _replace(targets[0], _copy(element))
        elif kind in ("Remove", "RemoveAll"):
            for target in targets[:1] if kind == "Remove" else targets:
                if target is self.source.root:
                    raise self.fail(element, "cannot remove the document's root element")
                _remove(target)
        elif kind == "RemoveAttributes":
            if not args:
                raise self.fail(element, "RemoveAttributes needs attribute names, e.g. RemoveAttributes(debug)")
            for target in targets:
                for name in args:
                    target.attrib.pop(name, None)
        else:  # SetAttributes
            names = args or [k for k in element.attrib if not k.startswith(f"{{{XDT_NS}}}")]
            for name in names:
                if name not in element.attrib:
                    raise self.fail(element, f"SetAttributes({name}): the element has no attribute {name!r}")
            for target in targets:
                for name in names:
                    target.set(name, element.get(name))


def _describe(element: Node) -> str:
    shown = [f'{k}="{v}"' for k, v in element.attrib.items()
             if k in ("name", "key", "path", "verb", "users") or k.startswith(f"{{{XDT_NS}}}")]
    shown = [s.replace(f"{{{XDT_NS}}}", "xdt:") for s in shown]
    return f"<{etree.QName(element).localname}{' ' if shown else ''}{' '.join(shown)}>"


def _xpath_literal(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in value.split("'")) + ")"


def _copy(element: Node) -> Node:
    """A transform element as it goes into the source: no xdt attributes (anywhere in it), no xdt namespace."""
    copy = etree.fromstring(etree.tostring(element, with_tail=False))
    for node in copy.iter():
        if isinstance(node.tag, str):
            for key in [k for k in node.attrib if k.startswith(f"{{{XDT_NS}}}")]:
                del node.attrib[key]
    etree.cleanup_namespaces(copy)
    copy.tail = None
    return copy


def _is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _indent_of(node: Node) -> str | None:
    """The whitespace before ``node`` when it starts a line (its previous sibling's tail or its parent's text)."""
    prev = node.getprevious()
    before = prev.tail if prev is not None else (node.getparent().text if node.getparent() is not None else None)
    if before is not None and _is_blank(before) and "\n" in before:
        return before
    return None


def _append(parent: Node, new: Node) -> None:
    """Append as the last child, on its own line, indented like the siblings (Microsoft's XmlFormatter)."""
    children = list(parent)
    if children:
        last = children[-1]
        sibling_indent = _indent_of(last)
        closing = last.tail
        parent.append(new)
        if sibling_indent is not None and _is_blank(closing):
            last.tail = sibling_indent
            new.tail = closing
        return
    own = _indent_of(parent)
    parent.append(new)
    if own is not None and _is_blank(parent.text):
        unit = _indent_unit(parent) or "  "
        parent.text = own + unit
        new.tail = own


def _indent_unit(node: Node) -> str | None:
    """The document's indentation step: the difference between an element's indent and its first child's."""
    for element in node.getroottree().iter():
        if not isinstance(element.tag, str) or len(element) == 0:
            continue
        outer, inner = _indent_of(element), _indent_of(element[0])
        if outer is not None and inner is not None and inner.startswith(outer) and len(inner) > len(outer):
            return inner[len(outer):]
        if outer is None and inner is not None and element.getparent() is None:
            return inner.rsplit("\n", 1)[-1] or None
    return None


def _insert_beside(sibling: Node, new: Node, *, after: bool) -> None:
    indent = _indent_of(sibling)
    if after:
        sibling.addnext(new)
        new.tail = sibling.tail
        if indent is not None:
            sibling.tail = indent
    else:
        sibling.addprevious(new)
        new.tail = indent if indent is not None else None


def _replace(old: Node, new: Node) -> None:
    new.tail = old.tail
    old.getparent().replace(old, new)


def _remove(node: Node) -> None:
    """Remove ``node`` and the line it stood on: the whitespace before it is replaced by the one after it."""
    parent = node.getparent()
    prev = node.getprevious()
    tail = node.tail
    if prev is not None:
        if _is_blank(prev.tail) and _is_blank(tail):
            prev.tail = tail
        else:
            prev.tail = (prev.tail or "") + (tail or "")
    elif _is_blank(parent.text) and _is_blank(tail):
        parent.text = tail
    else:
        parent.text = (parent.text or "") + (tail or "")
    parent.remove(node)


# ---------------------------------------------------------------------------------------------- entry


def transform(source: bytes, transform_xml: bytes, *, source_file: str, transform_file: str) -> Result:
    """Apply one XDT document to one configuration file's bytes."""
    src = _Source(source, source_file)
    tree = _parse(transform_xml.replace(XDT_NAMESPACES[1].encode(), XDT_NS.encode()), transform_file)
    worker = _Transformer(src, transform_file)
    worker.run(tree.getroot())
    return Result(src.render(), worker.notes)
