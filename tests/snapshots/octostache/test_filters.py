"""Filters: lenient echoing of a filter that cannot apply, unknown filters, arguments, NowDate."""

from __future__ import annotations

from datetime import datetime

import pytest

from snapshots.errors import TemplateError
from snapshots.octostache import render

P = pytest.param


# Octostache echoes a filter that cannot apply and a token that does not parse; ferry does that with
# strict=False and warns (source: Octostache FiltersFixture.cs and UsageFixture.cs).
ECHOED = [
    P("#{foo | Replace}", {"foo": "abc"}, id="replace-no-args"),
    P("#{foo | Substring}", {"foo": "ababa"}, id="substring-no-args"),
    P("#{foo | Substring 1 2 3}", {"foo": "ababa"}, id="substring-too-many"),
    P("#{foo | Substring a}", {"foo": "Octopus Deploy"}, id="substring-non-numeric"),
    P("#{foo | Substring 0 a}", {"foo": "Octopus Deploy"}, id="substring-non-numeric-length"),
    P("#{foo | Substring 20}", {"foo": "Octopus Deploy"}, id="substring-out-of-range"),
    P("#{foo | Substring 8 7}", {"foo": "Octopus Deploy"}, id="substring-start-out-of-range"),
    P("#{foo | Substring -1}", {"foo": "Octopus Deploy"}, id="substring-negative"),
    P("#{foo | Substring 0 -1}", {"foo": "Octopus Deploy"}, id="substring-negative-length"),
    P("#{foo | Truncate}", {"foo": "Octopus Deploy"}, id="truncate-no-args"),
    P("#{foo | Truncate a}", {"foo": "Octopus Deploy"}, id="truncate-non-numeric"),
    P("#{foo | Truncate -1}", {"foo": "Octopus Deploy"}, id="truncate-negative"),
    P("#{foo | Trim Both}", {"foo": "Octopus Deploy"}, id="trim-bad-option"),
    P("#{foo | Match}", {"foo": "abc def"}, id="match-no-args"),
    P("#{foo | Match a b}", {"foo": "abc def"}, id="match-too-many"),
    P("#{foo | StartsWith}", {"foo": "abc def"}, id="startswith-no-args"),
    P("#{foo | EndsWith a b}", {"foo": "abc def"}, id="endswith-too-many"),
    P("#{foo | Contains}", {"foo": "abc def"}, id="contains-no-args"),
    P("#{foo | Append}", {"foo": "bar"}, id="append-no-args"),
    P("#{ | Prepend}", {"foo": "bar"}, id="prepend-no-args"),
    P("#{Invalid | Format yyyy}", {"Invalid": "hello World"}, id="format-no-type"),
    P("#{Foo", {"Foo": "Bar"}, id="unclosed"),
    P("#{Fo[o}", {"Foo": "Bar", "Fo[o]": "Bar"}, id="unclosed-index"),
]


@pytest.mark.parametrize(("template", "variables"), ECHOED)
def test_lenient_mode_echoes_what_cannot_apply(template: str, variables: dict[str, str]) -> None:
    warnings: list[str] = []
    # Echoed as Octostache re-spells a filter token: arguments quoted (its fixtures compare without the quotes).
    echoed = render(template, variables, strict=False, warnings=warnings, where="app.config")
    assert echoed.replace('"', "") == template.replace('"', "")
    assert len(warnings) == 1 and warnings[0].startswith("app.config: line 1, column 1: ")
    with pytest.raises(TemplateError, match=r"^app\.config: line 1, column 1: "):
        render(template, variables, where="app.config")


@pytest.mark.parametrize("strict", [True, False])
def test_unknown_filter_always_raises(strict: bool) -> None:
    with pytest.raises(TemplateError, match=r"^deploy\.sh: line 1, column 5: filter 'ToBazooka' is unknown"):
        render("x = #{Foo | ToBazooka}", {"Foo": "Abc"}, where="deploy.sh", strict=strict)
    with pytest.raises(TemplateError, match="filter 'Markdown' is not supported by ferry"):
        render("#{Foo | Markdown}", {"Foo": "_x_"}, strict=strict)


def test_filter_failure_strict_names_filter() -> None:
    with pytest.raises(TemplateError, match=r"line 1, column 1: Substring: the range ends at 20.* in #\{foo"):
        render("#{foo | Substring 20}", {"foo": "Octopus Deploy"})


def test_quoted_arguments_may_hold_braces_and_pipes() -> None:
    assert render('#{X | Replace "[0-9]{3}" "|"}', {"X": "a123b"}) == "a|b"
    assert render("#{X | Replace \"(?<d>[0-9])\" \"<${d}>\"}", {"X": "a1"}) == "a<1>"


def test_now_date_filters() -> None:
    # Octostache FiltersFixture.NowDateReturnsNow / NowDateCanBeFormatted / NowDateCanBeChained.
    before = datetime.now()
    now = render("#{ | NowDate}", {})
    assert abs((datetime.fromisoformat(now[:26]) - before).total_seconds()) < 60
    assert len(now) == 27 and now[19] == "."  # .NET round-trip: seven fraction digits, no offset
    assert render("#{ | NowDate yyyy}", {}) == str(datetime.now().year)
    assert render("#{ | NowDate | Format Date MMM}", {}) == datetime.now().strftime("%b")
    assert render("#{ | NowDateUtc}", {}).endswith("Z")
    assert render("#{ | NowDate #{MyFormat}}", {"MyFormat": "dd-MM-yyyy"}) == datetime.now().strftime("%d-%m-%Y")


def test_a_failed_filter_is_echoed_with_its_arguments_quoted() -> None:
    # Octostache FiltersFixture.Match "Too many arguments provided".
    assert render("#{foo | Match a b}", {"foo": "abc def"}, strict=False) == '#{foo | Match "a" "b"}'
    assert render("#{foo|ToUpper}", {}, strict=False) == "#{foo | ToUpper}"


def test_filters_apply_on_either_side_of_a_condition() -> None:
    variables = {"Hello": "HELLO", "Greeting": " Hello "}
    assert render('#{if "hello" == Hello | ToLower}yes#{else}no#{/if}', variables) == "yes"
    assert render("#{if Greeting | Trim | ToUpper == Hello}yes#{/if}", variables) == "yes"
    assert render('#{if Hello | Contains "O"}yes#{/if}', variables) == "yes"
    # A filter that cannot apply leaves nothing to compare: an error in both modes, not a guess.
    for strict in (True, False):
        with pytest.raises(TemplateError, match="Substring"):
            render('#{if Hello | Substring 99 == "x"}yes#{/if}', variables, strict=strict)


@pytest.mark.parametrize("template", ['#{A | Replace "(a|aa)+$" b}', '#{A | Match "(a|aa)+$"}'])
def test_a_catastrophic_regex_is_bounded_and_names_the_filter(template: str) -> None:
    """Issue 13: such a pattern on a short value spun 40 s of CPU, unbounded by the step's timeout; now it stops
    after 1 CPU-second with one line naming the filter and the pattern."""
    import time

    started = time.process_time()
    with pytest.raises(TemplateError, match=r"(Replace|Match): the regular expression '\(a\|aa\)\+\$' took more "
                                            r"than 1 s of CPU"):
        render(template, {"A": "a" * 40 + "!"}, where="step 'S' url")
    assert time.process_time() - started < 3


def test_replace_still_reads_dotnet_named_groups() -> None:
    assert render('#{A | Replace "(?<word>o+)" "[${word}]"}', {"A": "foo boo"}) == "f[oo] b[oo]"
