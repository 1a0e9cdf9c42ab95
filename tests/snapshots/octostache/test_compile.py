"""The Jinja translation: user text is data, never Jinja or Python (the sandbox), and text passes through."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapshots.errors import TemplateError
from snapshots.octostache import escape, render

# Characters that mean something to Octostache, Jinja or a parser, mixed with any UTF-8 encodable text.
_TRICKY = st.text(alphabet=st.sampled_from(list("#{}%|\"'\\\n\r\t []().:ab ")) | st.characters(codec="utf-8"),
                  max_size=60)


@given(_TRICKY.filter(lambda t: "#{" not in t))
def test_text_without_tokens_passes_through(text: str) -> None:
    assert render(text, {}) == text


@given(_TRICKY)
def test_substitution_output_is_never_rescanned(text: str) -> None:
    # The decoded value holds #{, {{, {% ... as plain output of a substitution: it must come out as is.
    encoded = base64.b64encode(text.encode()).decode()
    assert render("<#{X | FromBase64}>", {"X": encoded, "Y": "no"}) == f"<{text}>"


@given(_TRICKY)
def test_escaped_values_come_out_byte_for_byte(text: str) -> None:
    assert render("[#{X}]", {"X": escape(text), "a": "no"}) == f"[{text}]"
    assert render(escape(text), {}) == text


@given(_TRICKY.filter(lambda t: "#{" not in t))
def test_plain_values_are_substituted_verbatim(text: str) -> None:
    assert render("a#{X}b", {"X": text}) == f"a{text}b"


def test_python_objects_are_unreachable() -> None:
    for template in ("#{__class__}", "#{x.__class__.__mro__}", "#{_rt}", "#{_t}", "#{loop}", "#{self}"):
        with pytest.raises(TemplateError, match="unknown variable"):
            render(template, {"x": "1"})
        assert render(template, {"x": "1"}, strict=False) == template  # echoed, as Octostache does
    assert render("#{__class__}", {"__class__": "just a name"}) == "just a name"


def test_jinja_syntax_is_text() -> None:
    template = "{{ 7*7 }} {% for x in y %}{# c #}{%raw%} #{A} {{A}} {%endraw%}"
    assert render(template, {"A": "a"}) == "{{ 7*7 }} {% for x in y %}{# c #}{%raw%} a {{A}} {%endraw%}"
    assert render('#{X | Replace "a" "{{ 7*7 }}"}', {"X": "abc"}) == "{{ 7*7 }}bc"
    assert render("#{X}", {"X": "{% if true %}{{ ''.__class__ }}{% endif %}"}) == (
        "{% if true %}{{ ''.__class__ }}{% endif %}")


def test_text_is_kept_byte_for_byte() -> None:
    text = "line1\r\nline2\rline3\n\n  \t#{A}\r\n"
    assert render(text, {"A": "x\r\ny"}) == "line1\r\nline2\rline3\n\n  \tx\r\ny\r\n"
