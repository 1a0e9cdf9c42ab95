"""Octopus variable filters (``#{X | ToUpper}``), registered as Jinja filters that check input and arguments."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import regex
from jinja2 import pass_context
from jinja2.runtime import Context

from snapshots.octostache.dotnet_formats import When, format_date, format_number, parse_date, parse_number
from snapshots.octostache.syntax import FAILED, MISSING, FilterError, Tok

if TYPE_CHECKING:
    from snapshots.octostache.runtime import Runtime

# Octopus filters ferry knows of but does not implement: named so the error says "not supported", not "unknown".
UNSUPPORTED = {"markdown", "markdowntohtml"}


FILTERS: dict[str, Callable[..., Any]] = {}


def _filter(name: str, args: tuple[int, int] = (0, 0), needs: str = "value"
            ) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register an Octopus filter.  The wrapper checks the input (``needs``: "value", "none" for NowDate, "any")
    and the number of arguments, so that the body only computes."""
    low, high = args

    def register(fn: Callable[..., str]) -> Callable[..., str]:
        @pass_context
        def jinja_filter(ctx: Context, value: Any, tok: Tok, *argv: str) -> Any:
            rt: Runtime = ctx["_rt"]
            if value is MISSING or value is FAILED:
                return value
            if needs == "value" and value is None:
                return rt.fail(tok, f"{name} needs an input value")
            if needs == "none" and value is not None:
                return rt.fail(tok, f"{name} takes no input value (write #{{ | {name}}})")
            if not low <= len(argv) <= high:
                expected = f"{low}" if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
                return rt.fail(tok, f"{name} takes {expected} argument(s), got {len(argv)}")
            try:
                return fn(value, *argv)
            except FilterError as exc:
                failed = rt.fail(tok, f"{name}: {exc}")
                return failed if exc.shown is None else exc.shown

        FILTERS[name.lower()] = jinja_filter
        return fn

    return register


def _chars(mapping: dict[str, str]) -> Callable[[str], str]:
    return lambda text: "".join(mapping.get(c, c) for c in text)


_html = _chars({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "/": "&#x2F;"})
_xml = _chars({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})
_json = _chars({'"': '\\"', "\r": "\\r", "\t": "\\t", "\n": "\\n", "\\": "\\\\"})
_CONTROL = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _u_escape(c: str) -> str:
    """``\\uXXXX`` per UTF-16 code unit, as .NET strings hold them."""
    units = c.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))


def _properties(text: str, key: bool) -> str:
    out = []
    for i, c in enumerate(text):
        if (c == " " and (key or i == 0)) or (key and c in ":="):
            out.append("\\" + c)
        else:
            out.append(_CONTROL.get(c) or (c if ord(c) < 0xFF else _u_escape(c)))
    return "".join(out)


_filter("ToLower")(str.lower)
_filter("ToUpper")(str.upper)
_filter("HtmlEscape")(_html)
_filter("XmlEscape")(_xml)
_filter("JsonEscape")(_json)
_filter("PropertiesKeyEscape")(lambda v: _properties(v, key=True))
_filter("PropertiesValueEscape")(lambda v: _properties(v, key=False))
_filter("UriEscape")(lambda v: quote(v, safe="!#$&'()*+,/:;=?@[]~"))
_filter("UriDataEscape")(lambda v: quote(v, safe="~"))


@_filter("YamlSingleQuoteEscape")
def _yaml_single(value: str) -> str:
    # YAML folds one line break into a space, so every run of breaks gets one more.
    value = re.sub(r"(?:\r?\n)+", lambda m: ("\r\n" if m.group().startswith("\r") else "\n") + m.group(), value)
    return value.replace("'", "''")


@_filter("YamlDoubleQuoteEscape")
def _yaml_double(value: str) -> str:
    return "".join(_CONTROL.get(c) or ('\\"' if c == '"' else c if " " <= c <= "~" else _u_escape(c))
                   for c in value)


def _encoding(args: tuple[str, ...]) -> str:
    name = args[0].lower() if args else "utf8"
    if name in ("utf8", "utf-8"):
        return "utf-8"
    if name == "unicode":
        return "utf-16-le"
    raise FilterError(f"unknown encoding '{args[0]}' (utf8 or unicode)")


@_filter("ToBase64", (0, 1))
def _to_base64(value: str, *args: str) -> str:
    return base64.b64encode(value.encode(_encoding(args))).decode("ascii")


@_filter("FromBase64", (0, 1))
def _from_base64(value: str, *args: str) -> str:
    try:
        data = base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError):
        raise FilterError("the value is not valid base64") from None
    return data.decode(_encoding(args), errors="replace")


REGEX_CPU_SECONDS = 1.0
"""CPU time one ``Replace`` may spend matching: a catastrophic pattern (``(a|aa)+$``) on a short value would
otherwise spin for minutes, unbounded by the step's timeout."""


@_filter("Replace", (1, 2))
def _replace(value: str, pattern: str, replacement: str = "") -> str:
    """A .NET regular expression replace: ``$1``, ``${name}``, ``$&``, ``$$`` in the replacement. Matched by the
    ``regex`` module, whose ``timeout`` bounds the backtracking."""

    def expand(m: regex.Match[str]) -> str:
        def group(ref: re.Match[str]) -> str:
            token, name = ref.group(), ref.group(1) or ref.group(2)
            if name is None:
                return "$" if token == "$$" else str(m.group(0))
            try:
                return m.group(int(name) if name.isdigit() else name) or ""
            except IndexError:
                return token  # .NET leaves a reference to a group that does not exist as text

        return re.sub(r"\$(?:\{(\w+)\}|(\d+)|[$&])", group, replacement)

    try:
        return str(_regex(pattern).sub(expand, value, timeout=REGEX_CPU_SECONDS))
    except TimeoutError:
        raise FilterError(f"the regular expression {pattern!r} took more than {REGEX_CPU_SECONDS:g} s of CPU "
                          "on this value (catastrophic backtracking?); refused") from None


def _regex(pattern: str) -> regex.Pattern[str]:
    """Compile a .NET pattern (named groups translated to Python's spelling, which ``regex`` also reads)."""
    pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)
    pattern = re.sub(r"\\k<(\w+)>", r"(?P=\1)", pattern)
    try:
        return regex.compile(pattern)
    except (regex.error, ValueError) as exc:
        raise FilterError(f"invalid regular expression: {exc}") from None


def _int_arg(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise FilterError(f"'{text}' is not a non-negative whole number")
    return int(text)


@_filter("Substring", (1, 2))
def _substring(value: str, *args: str) -> str:
    start, length = (0, _int_arg(args[0])) if len(args) == 1 else (_int_arg(args[0]), _int_arg(args[1]))
    if start + length > len(value):
        raise FilterError(f"the range ends at {start + length}, beyond the value's {len(value)} characters")
    return value[start:start + length]


@_filter("Truncate", (1, 1))
def _truncate(value: str, length: str) -> str:
    n = _int_arg(length)
    return value if len(value) <= n else value[:n] + "..."


@_filter("Trim", (0, 1))
def _trim(value: str, *args: str) -> str:
    side = args[0].lower() if args else ""
    if side not in ("", "start", "end"):
        raise FilterError(f"'{args[0]}' is not start or end")
    return value.lstrip() if side == "start" else value.rstrip() if side == "end" else value.strip()


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


_filter("StartsWith", (1, 1))(lambda v, arg: _bool(v.startswith(arg)))
_filter("EndsWith", (1, 1))(lambda v, arg: _bool(v.endswith(arg)))
_filter("Contains", (1, 1))(lambda v, arg: _bool(arg in v))


@_filter("Match", (1, 1))
def _match(value: str, pattern: str) -> str:
    try:
        return _bool(_regex(pattern).search(value, timeout=REGEX_CPU_SECONDS) is not None)
    except TimeoutError:
        raise FilterError(f"the regular expression {pattern!r} took more than {REGEX_CPU_SECONDS:g} s of CPU "
                          "on this value (catastrophic backtracking?); refused") from None


_filter("Append", (1, 99), needs="any")(lambda v, *args: (v or "") + "".join(args))
_filter("Prepend", (1, 99), needs="any")(lambda v, *args: "".join(args) + (v or ""))


@_filter("NowDate", (0, 1), needs="none")
def _now_date(_: None, *args: str) -> str:
    now = datetime.now()
    return format_date(When(now.replace(microsecond=0), now.microsecond * 10, "unspecified"),
                        args[0] if args else "O")


@_filter("NowDateUtc", (0, 1), needs="none")
def _now_date_utc(_: None, *args: str) -> str:
    now = datetime.now(UTC).replace(tzinfo=None)
    return format_date(When(now.replace(microsecond=0), now.microsecond * 10, "utc"), args[0] if args else "O")


@_filter("Format", (1, 2))
def _format(value: str, *args: str) -> str:
    """.NET ``ToString(format)`` in en-US: one argument tries decimal then DateTimeOffset; two name the type
    first (Int32/Int, Double, Decimal, Date/DateTime, DateTimeOffset)."""
    fmt = args[-1]
    kind = args[0].lower() if len(args) == 2 else "auto"
    if kind in ("auto", "decimal") and (d := parse_number(value, "decimal")) is not None:
        return format_number(d, fmt, "decimal", None)
    if kind in ("int", "int32") and (d := parse_number(value, "int")) is not None:
        return format_number(d, fmt, "int", None)
    if kind == "double" and (d := parse_number(value, "double")) is not None:
        double = float(d)  # .NET Core 3+ formats the exact binary value: 1.005 rounds to "1.00"
        return format_number(Decimal(double), fmt, "double", double)
    if kind in ("auto", "datetimeoffset", "date", "datetime") and (when := parse_date(value)):
        return format_date(when.as_datetime() if kind in ("date", "datetime") else when.as_offset(), fmt)
    if kind not in ("auto", "decimal", "int", "int32", "double", "date", "datetime", "datetimeoffset"):
        raise FilterError(f"unknown type '{args[0]}'")
    raise FilterError("the value is not a " + ("number or date" if kind == "auto" else args[0]))




@_filter("Indent", (0, 2))
def _indent(value: str, *args: str) -> str:
    """Octostache's Indent: no option is four spaces; ``N``, ``/N`` (later lines only) and ``N/M`` (first line,
    later lines) are sizes up to 255; any other option is the text itself, a second one the text of later lines."""
    if not value:
        return value
    first = later = "    "
    if len(args) == 2:
        first, later = args
    elif args:
        m = re.fullmatch(r"(\d*)(/?)(\d*)", args[0])
        sizes = m and [int(n) for n in (m.group(1), m.group(3)) if n]
        if m and sizes and max(sizes) <= 255 and (m.group(2) == "") == (m.group(3) == ""):
            first = " " * int(m.group(1) or 0)
            later = " " * int(m.group(3) or m.group(1))
        else:
            first = later = args[0]
    return "\n".join((later if i else first) + line for i, line in enumerate(value.split("\n")))


def _hash(algorithm: str) -> Callable[..., str]:
    def digest(value: str, *args: str) -> str:
        """Hex digest of the value's bytes (utf8 by default, unicode, or base64-decoded), optionally only the first
        N bytes; the two options come in either order."""
        encoding, size = None, None
        for arg in args:
            if encoding is None and arg.lower() in ("utf8", "utf-8", "unicode", "base64"):
                encoding = arg.lower()
            elif size is None and re.fullmatch(r"\d+", arg) and int(arg) > 0:
                size = int(arg)
            else:
                raise FilterError(f"'{arg}' is neither an encoding (utf8, unicode, base64) nor a size above 0")
        if encoding == "base64":
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise FilterError("the value is not valid base64") from None
        else:
            data = value.encode("utf-16-le" if encoding == "unicode" else "utf-8")
        return hashlib.new(algorithm, data).digest()[:size].hex()

    return digest


for _name in ("Md5", "Sha1", "Sha256", "Sha384", "Sha512"):
    _filter(_name, (0, 2))(_hash(_name.lower()))

_VERSION = re.compile(r"[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?(?:[.-](.*?))?(?:\+(.*))?")


def _version(value: str) -> tuple[str, str, str, str, str, str]:
    """major, minor, patch, revision, pre-release, metadata of a version as Octopus reads one (``v1.2``,
    ``1.2.3.4-branch.1+meta``, ``19.0.0.Final``; ``latest`` is all zeros with pre-release ``latest``)."""
    m = _VERSION.fullmatch(value.strip())
    if not m:
        text, _, meta = value.strip().partition("+")
        return "0", "0", "0", "0", text, meta
    major, minor, patch, revision, pre, meta = m.groups()
    return major, minor or "0", patch or "0", revision or "0", pre or "", meta or ""


def _pre_parts(value: str) -> tuple[str, str]:
    """``branch.1`` → (``branch``, ``1``): the pre-release split at its first ``.``, ``-`` or ``_``."""
    m = re.match(r"([^.\-_]*)[.\-_]?(.*)", _version(value)[4], re.DOTALL)
    assert m is not None
    return m.group(1), m.group(2)


_filter("VersionMajor")(lambda v: _version(v)[0])
_filter("VersionMinor")(lambda v: _version(v)[1])
_filter("VersionPatch")(lambda v: _version(v)[2])
_filter("VersionRevision")(lambda v: _version(v)[3])
_filter("VersionPreRelease")(lambda v: _version(v)[4])
_filter("VersionMetadata")(lambda v: _version(v)[5])
_filter("VersionPreReleasePrefix")(lambda v: _pre_parts(v)[0])
_filter("VersionPreReleaseCounter")(lambda v: _pre_parts(v)[1])

_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443, "file": -1}


@_filter("UriPart", (0, 1))
def _uri_part(value: str, *args: str) -> str:
    """A part of an absolute URI, named as .NET's ``System.Uri`` names it (Host, Port, PathAndQuery, ...). Its
    errors render as Octostache prints them, ``[UriPart Host error: ...]``, in Octopus mode."""
    if not args:
        raise FilterError("no argument given", shown="[UriPart error: no argument given]")
    part = args[0]
    url = urlsplit(value.strip())

    def fail(reason: str) -> FilterError:
        return FilterError(reason, shown=f"[UriPart {part} error: {reason}]")

    if not url.scheme or not (url.netloc or url.scheme == "file"):
        raise fail("This operation is not supported for a relative URI.")
    host = url.hostname or ""
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme.lower(), -1)
    default = url.port is None or url.port == _DEFAULT_PORTS.get(url.scheme.lower())
    authority = host + ("" if default else f":{port}")
    path = url.path or "/"
    query = f"?{url.query}" if url.query else ""
    kind = "IPv4" if re.fullmatch(r"[\d.]+", host) else "IPv6" if ":" in host else "Dns"
    user = url.netloc.rpartition("@")[0] if "@" in url.netloc else ""
    parts = {
        "absolutepath": path, "absoluteuri": f"{url.scheme}://{authority}{path}{query}"
        + (f"#{url.fragment}" if url.fragment else ""),
        "authority": authority, "dnssafehost": host, "fragment": f"#{url.fragment}" if url.fragment else "",
        "host": host, "hostandport": f"{host}:{port}", "hostnametype": kind, "isabsoluteuri": "true",
        "isdefaultport": _bool(default), "isfile": _bool(url.scheme.lower() == "file"),
        "isloopback": _bool(host.lower() in ("localhost", "::1") or host.startswith("127.")),
        "isunc": _bool(url.scheme.lower() == "file" and bool(host)), "localpath": path, "path": path,
        "pathandquery": path + query, "port": str(port), "query": query, "scheme": url.scheme.lower(),
        "schemeandserver": f"{url.scheme}://{authority}", "userinfo": user,
    }
    if part.lower() not in parts:
        raise fail(f"argument '{part}' not supported")
    return parts[part.lower()]
