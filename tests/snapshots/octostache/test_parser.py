"""Tokenizing and parsing: malformed templates, names, escaping, the names a template references."""

from __future__ import annotations

import pytest

from snapshots.errors import TemplateError
from snapshots.octostache import escape, referenced_names, render


def test_parse_errors_do_not_stop_later_substitutions() -> None:
    # Octostache UsageFixture.AbleToContinueWhenAParsingErrorIsHit(AtEndOfString), shortened.
    template = 'a=function(e){return"#{"===e.substr(0,2)?void 0:e},i="#{Web.Root}";var l="#{Wsf.Host}";x="#{'
    expected = 'a=function(e){return"#{"===e.substr(0,2)?void 0:e},i="Subbed.Web.Root";var l="Subbed.Wsf.Host";x="#{'
    variables = {"Web.Root": "Subbed.Web.Root", "Wsf.Host": "Subbed.Wsf.Host"}
    warnings: list[str] = []
    assert render(template, variables, strict=False, warnings=warnings) == expected
    assert len(warnings) == 2


@pytest.mark.parametrize(("template", "message"), [
    ("a\n#{if X}b", r"^f: line 2, column 1: #\{if X\} is never closed \(missing #\{/if\}\)"),
    ("#{unless X}#{else}", r"^f: line 1, column 1: #\{unless X\} is never closed"),
    ("#{each a in B}x", r"missing #\{/each\}"),
    ("ok #{/if}", r"^f: line 1, column 4: #\{/if\} without an opening #\{if"),
    ("#{/each}", r"#\{/each\} without an opening"),
    ("#{if X}#{each a in B}#{/if}#{/each}", r"line 1, column 22: #\{/if\} closes #\{each a in B\} opened at line 1, "
                                            r"column 8; expected #\{/each\}"),
    ("#{if X}#{/unless}", r"#\{/unless\} closes #\{if X\}"),
    ("#{else}", r"#\{else\} outside #\{if\}"),
    ("#{each a in B}#{else}#{/each}", r"#\{else\} outside #\{if\}"),
    ("#{if X}a#{else}b#{else}c#{/if}", r"a second #\{else\}"),
    ("#{if X | ToBazooka}a#{/if}", r"filter 'ToBazooka' is unknown"),
    ("#{if X}a#{else}b#{elseif X}c#{/if}", r"#\{elseif\} after #\{else\}"),
    ("#{unless X}a#{elseif X}c#{/unless}", r"#\{elseif\} outside #\{if\}"),
    ("#{elseif X}", r"#\{elseif\} outside #\{if\}"),
    ("#{if X == }a#{/if}", r"missing an operand"),
    ("#{each in B}#{/each}", r"expected #\{each <name> in <Variable>\}"),
    ("#{calc 1 +}", r"#\{calc\}: a number or variable expected"),
    ("#{calc (1 + 2}", r"#\{calc\}: '\)' expected"),
])
def test_malformed_blocks_raise_with_position(template: str, message: str) -> None:
    for strict in (True, False):
        with pytest.raises(TemplateError, match=message):
            render(template, {"X": "1", "B": "x"}, where="f", strict=strict)


def test_names_hold_dots_spaces_colons_hyphens_brackets() -> None:
    variables = {"Package[OctoFX.Web].Version": "1.2.3", "ConnectionStrings:Default": "cs",
                 "my-var name": "v", "Server[eu]": "eu.example", "Region": "EU"}
    assert render("#{Package[OctoFX.Web].Version}|#{ConnectionStrings:Default}|#{MY-VAR NAME}", variables) == (
        "1.2.3|cs|v")
    assert render("#{Server[#{Region | ToLower}]}", variables) == "eu.example"
    assert render("#{ Package [ OctoFX.Web ] . Version }", variables) == "1.2.3"


def test_referenced_names() -> None:
    # After Octostache ParserFixture.AListOfVariablesCanBeExtracted.
    template = """
        #{var}
        #{filter | Format #{option}}
        #{nestedParent[#{nestedChild}]}
        #{if ifvar}#{unless ifnested}debug#{/unless}#{/if}
        #{if comparison != "value"}true#{/if}
        #{each item in List}
           #{item.Address} #{Octopus.Template.Each.Index}
        #{/each}
        ##{ignored}
        #{calc Cost * 2}
    """
    assert referenced_names(template) == {"var", "filter", "option", "nestedChild", "Cost"}
    assert referenced_names(template, include_optional=True) == {
        "var", "filter", "option", "nestedChild", "Cost", "ifvar", "ifnested", "comparison", "List"}
    with pytest.raises(TemplateError, match="never closed"):
        referenced_names("#{if x}")


def test_escape() -> None:
    assert escape("#{A} ##{B} x#y {") == "##{A} ####{B} x#y {"
    assert render(escape("#{A} ##{B}"), {"A": "no"}) == "#{A} ##{B}"


def test_elseif_is_a_clause_of_if() -> None:
    template = "#{if A}a#{elseif B}b#{elseif C}c#{else}none#{/if}"
    for values, out in [({"A": "1", "B": "1"}, "a"), ({"A": "0", "B": "1"}, "b"), ({"C": "yes"}, "c"), ({}, "none")]:
        assert render(template, values, strict=False) == out
    assert referenced_names(template, include_optional=True) == {"A", "B", "C"}
