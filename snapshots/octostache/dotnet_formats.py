""".NET ``ToString(format)`` for numbers and dates in the en-US culture, and the parsing ``Format`` does first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from snapshots.octostache.syntax import FilterError

# ------------------------------------------------------------------------------- .NET numbers, en-US culture


def parse_number(text: str, kind: str) -> Decimal | None:
    """``decimal``/``int``/``double.TryParse`` with the en-US culture (thousands separators allowed)."""
    if kind == "int":
        m = re.fullmatch(r"\s*([+-]?\d+)\s*", text)
        return Decimal(m.group(1)) if m and -(2**31) <= int(m.group(1)) < 2**31 else None
    exponent = r"(?:[eE][+-]?\d+)?" if kind == "double" else ""
    m = re.fullmatch(rf"\s*([+-]?)(\d[\d,]*)?(?:\.(\d*))?({exponent})\s*", text)
    if not m or not (m.group(2) or m.group(3)):
        return None
    try:
        return Decimal(f"{m.group(1)}{(m.group(2) or '0').replace(',', '')}.{m.group(3) or '0'}{m.group(4)}")
    except InvalidOperation:
        return None


def _fixed(d: Decimal, places: int) -> str:
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 200, ROUND_HALF_UP
        return format(d.quantize(Decimal(1).scaleb(-places)), "f")


def _grouped(digits: str) -> str:
    whole, _, frac = digits.partition(".")
    return f"{int(whole):,}" + ("." + frac if frac else "")


def _signed(negative: bool, text: str) -> str:
    return "-" + text if negative and re.search(r"[1-9]", text) else text


def _exponent(mantissa: str, letter: str, exp: int, digits: int) -> str:
    return f"{mantissa}{letter}{'+' if exp >= 0 else '-'}{abs(exp):0{digits}d}"


def format_number(d: Decimal, fmt: str, kind: str, double: float | None) -> str:
    m = re.fullmatch(r"([A-Za-z])(\d{0,9})", fmt)
    if not m:
        return _custom_number(d, fmt)
    letter, prec = m.group(1), int(m.group(2)) if m.group(2) else None
    up, neg = letter.upper(), d < 0
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 200, ROUND_HALF_UP
        if up in "CNFP":
            text = _fixed(abs(d) * (100 if up == "P" else 1), 2 if prec is None else prec)
            text = text if up == "F" else _grouped(text)
            return _signed(neg, {"C": "$" + text, "P": text + " %"}.get(up, text))
        if up in "DX":
            if kind != "int":
                raise FilterError(f"format '{fmt}' needs a whole number (Format Int32 {fmt})")
            n = int(d)
            if up == "D":
                return _signed(neg, str(abs(n)).zfill(prec or 0))
            return format(n & 0xFFFFFFFF, letter).zfill(prec or 0)
        if up == "E":
            places = 6 if prec is None else prec
            if d == 0:
                return _exponent(f"0.{'0' * places}".rstrip("."), letter, 0, 3)
            mantissa, _, exp = format(abs(d), f".{places}E").partition("E")
            return _signed(neg, _exponent(mantissa, letter, int(exp), 3))
        if up == "G" and prec:
            mantissa, _, exp = format(d, f".{prec}G").partition("E")
            return _exponent(mantissa, "E" if letter == "G" else "e", int(exp), 2) if exp else mantissa
        if up in "GR" and double is not None:
            text = repr(double).removesuffix(".0")
            mantissa, _, exp = text.partition("e")
            return _exponent(mantissa, "E", int(exp), 2) if exp else text
        if up == "G":
            return format(d, "f")  # a decimal keeps its scale: "4.30" stays "4.30"
    raise FilterError(f"'{fmt}' is not a supported number format")


def _custom_number(d: Decimal, fmt: str) -> str:
    """.NET custom numeric formats: ``0 # . ,`` (grouping and scaling), ``%``, ``‰``, quotes, ``\\`` and
    ``;`` sections.  Exponent notation (``0.0E+0``) is not supported."""
    sections: list[list[tuple[str, str]]] = [[]]
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt):
            sections[-1].append(("lit", fmt[i + 1]))
            i += 1
        elif c in "'\"":
            j = fmt.find(c, i + 1)
            j = len(fmt) if j == -1 else j
            sections[-1].append(("lit", fmt[i + 1:j]))
            i = j
        elif c == ";":
            sections.append([])
        else:
            sections[-1].append((c if c in "0#.,%‰" else "lit", c))
        i += 1
    tokens, minus = sections[0], True
    if d < 0 and len(sections) > 1 and sections[1]:
        tokens, minus = sections[1], False
    text, zero = _number_section(tokens, abs(d))
    if zero and len(sections) > 2 and sections[2]:
        return _number_section(sections[2], Decimal(0))[0]
    return "-" + text if d < 0 and minus and not zero else text


def _number_section(tokens: list[tuple[str, str]], value: Decimal) -> tuple[str, bool]:
    """Format a non-negative value with one section; also say whether it rounded to zero."""
    point = next((k for k, t in enumerate(tokens) if t[0] == "."), len(tokens))
    int_part, frac_part = tokens[:point], tokens[point + 1:]
    ph = [k for k, t in enumerate(int_part) if t[0] in "0#"]
    scale = 0
    while ph and ph[-1] + 1 + scale < len(int_part) and int_part[ph[-1] + 1 + scale][0] == ",":
        scale += 1  # commas right after the last digit placeholder divide by 1000 each
    grouping = bool(ph) and any(t[0] == "," for t in int_part[ph[0]:ph[-1]])
    percent = sum(t[0] == "%" for t in tokens)
    permille = sum(t[0] == "‰" for t in tokens)
    value = value * Decimal(100) ** percent * Decimal(1000) ** permille / Decimal(1000) ** scale
    frac_ph = [t[0] for t in frac_part if t[0] in "0#"]
    fixed = _fixed(value, len(frac_ph))
    whole, _, frac = fixed.partition(".")
    first_zero = next((k for k in ph if int_part[k][0] == "0"), None)
    whole = whole.lstrip("0").zfill(sum(1 for k in ph if first_zero is not None and k >= first_zero))
    frac = frac.rstrip("0").ljust(max((k + 1 for k, p in enumerate(frac_ph) if p == "0"), default=0), "0")
    assigned: dict[int, str] = {}
    if grouping:
        assigned[ph[0]] = f"{int(whole):,}" if whole else ""
    elif ph:
        rest = whole
        for k in reversed(ph[1:]):  # digits fill placeholders from the right, the leftmost takes the rest
            assigned[k], rest = rest[-1:], rest[:-1]
        assigned[ph[0]] = rest
    out = [assigned.get(k, "") if t[0] in "0#" else t[1] for k, t in enumerate(int_part) if t[0] != ","]
    if point < len(tokens):
        out.append(("" if ph else whole) + ("." if frac else ""))
    digits = iter(frac)
    out.extend(next(digits, "") if t[0] in "0#" else t[1] for t in frac_part if t[0] not in ".,")
    return "".join(out), not re.search(r"[1-9]", fixed)


# --------------------------------------------------------------------------------- .NET dates, en-US culture

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TIME = (r"(?:(?:T|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d+))?)?(?:\s*(?P<ampm>[AaPp][Mm]))?)?"
         r"\s*(?P<tz>Z|GMT|UTC|[+-]\d{1,2}(?::?\d{2})?)?")
_DATES = [re.compile(r"\s*" + d + _TIME + r"\s*") for d in (
    r"(?P<y>\d{4})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})",
    r"(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})",
    r"(?:[A-Za-z]+,?\s+)?(?P<d>\d{1,2})\s+(?P<mon>[A-Za-z]{3,})\.?,?\s+(?P<y>\d{4})",
    r"(?:[A-Za-z]+,?\s+)?(?P<mon>[A-Za-z]{3,})\.?\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{4})",
)]
_STANDARD_DATES = {
    "d": "M/d/yyyy", "D": "dddd, MMMM d, yyyy", "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt", "g": "M/d/yyyy h:mm tt", "G": "M/d/yyyy h:mm:ss tt",
    "M": "MMMM d", "m": "MMMM d", "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK", "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss", "t": "h:mm tt",
    "T": "h:mm:ss tt", "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'", "U": "dddd, MMMM d, yyyy h:mm:ss tt",
    "Y": "MMMM yyyy", "y": "MMMM yyyy",
}


@dataclass(frozen=True)
class When:
    """A .NET DateTime (kind "unspecified", "local", "utc") or DateTimeOffset (kind "offset")."""

    wall: datetime  # naive wall-clock time, whole seconds
    ticks: int  # fraction of the second in 100 ns units, .NET's precision
    kind: str
    offset: timedelta | None = None  # parsed offset; for kind "offset" the instance's own

    def utcoffset(self) -> timedelta:
        if self.kind == "utc":
            return timedelta(0)
        if self.kind == "offset" and self.offset is not None:
            return self.offset
        return self.wall.astimezone().utcoffset() or timedelta(0)  # naive = the server's local time

    def as_offset(self) -> When:
        """DateTimeOffset.Parse: an explicit offset is kept, none means the server's local offset."""
        return When(self.wall, self.ticks, "offset", self.offset if self.offset is not None else self.utcoffset())

    def as_datetime(self) -> When:
        """DateTime.Parse: a value with an offset is converted to the server's local time."""
        if self.offset is None:
            return self
        local = self.wall.replace(tzinfo=timezone(self.offset)).astimezone()
        return When(local.replace(tzinfo=None), self.ticks, "local")

    def to_utc(self) -> When:
        return When(self.wall - self.utcoffset(), self.ticks, "utc")


def parse_date(text: str) -> When | None:
    for pattern in _DATES:
        m = pattern.fullmatch(text)
        if not m:
            continue
        g = m.groupdict()
        try:
            month = int(g["mo"]) if g.get("mo") else next(
                k + 1 for k, name in enumerate(_MONTHS) if name.lower().startswith(g["mon"].lower()))
            hour = int(g["H"] or 0)
            if g["ampm"]:
                if not 1 <= hour <= 12:
                    return None
                hour = hour % 12 + (12 if g["ampm"].lower() == "pm" else 0)
            wall = datetime(int(g["y"]), month, int(g["d"]), hour, int(g["M"] or 0), int(g["S"] or 0))
        except (StopIteration, ValueError):
            return None
        ticks = int(((g["F"] or "") + "0000000")[:7])
        tz, offset = g["tz"], None
        if tz and tz.upper() in ("Z", "GMT", "UTC"):
            offset = timedelta(0)
        elif tz:
            tz_match = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", tz)
            assert tz_match is not None, tz  # the date pattern only lets such offsets through
            sign, hours, minutes = tz_match.groups()
            offset = (-1 if sign == "-" else 1) * timedelta(hours=int(hours), minutes=int(minutes or 0))
        return When(wall, ticks, "unspecified", offset)
    return None


def format_date(when: When, fmt: str) -> str:
    if len(fmt) == 1:
        if fmt not in _STANDARD_DATES:
            raise FilterError(f"'{fmt}' is not a standard date format")
        if (fmt in "RruU" and when.kind == "offset") or fmt == "U":
            when = when.to_utc()
        fmt = _STANDARD_DATES[fmt]
    elif len(fmt) == 2 and fmt[0] == "%":
        fmt = fmt[1]
    out, i = [], 0
    while i < len(fmt):
        c = fmt[i]
        if c in "'\"":
            j = fmt.find(c, i + 1)
            if j == -1:
                raise FilterError("unterminated quote in the date format")
            out.append(fmt[i + 1:j])
            i = j + 1
            continue
        if c == "\\":
            out.append(fmt[i + 1:i + 2])
            i += 2
            continue
        n = 1
        while i + n < len(fmt) and fmt[i + n] == c:
            n += 1
        out.append(_date_part(when, c, n) if c in "dfFghHKmMstyz" else ("" if c == "%" else c * n))
        i += n
    return "".join(out)


def _date_part(w: When, c: str, n: int) -> str:
    t = w.wall
    if c == "d":
        return (str(t.day), f"{t.day:02d}", _DAYS[t.weekday()][:3])[n - 1] if n < 4 else _DAYS[t.weekday()]
    if c == "M":
        return (str(t.month), f"{t.month:02d}", _MONTHS[t.month - 1][:3])[n - 1] if n < 4 else _MONTHS[t.month - 1]
    if c in "fF":
        if n > 7:
            raise FilterError("at most 7 fraction digits")
        digits = f"{w.ticks:07d}"[:n]
        return digits if c == "f" else digits.rstrip("0")
    if c == "y":
        return str(t.year % 100) if n == 1 else f"{t.year % 100:02d}" if n == 2 else f"{t.year:0{n}d}"
    if c == "K":
        return "" if w.kind == "unspecified" else "Z" if w.kind == "utc" else _offset(w.utcoffset(), 3)
    if c == "z":
        return _offset(w.utcoffset(), n)
    if c == "g":
        return "A.D."
    if c == "t":
        return ("AM" if t.hour < 12 else "PM")[:n]
    number = {"h": t.hour % 12 or 12, "H": t.hour, "m": t.minute, "s": t.second}[c]
    return str(number) if n == 1 else f"{number:02d}"


def _offset(offset: timedelta, n: int) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    if n == 1:
        return f"{sign}{minutes // 60}"
    return f"{sign}{minutes // 60:02d}" + (f":{minutes % 60:02d}" if n >= 3 else "")


