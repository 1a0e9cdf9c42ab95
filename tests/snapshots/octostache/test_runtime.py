"""Evaluation: unknown variables and where they were used, cycles, #{each} specials, #{calc}, truthiness and
run conditions."""

from __future__ import annotations

import pytest

from snapshots.errors import TemplateError
from snapshots.octostache import evaluate_condition, is_truthy, referenced_names, render


def test_unknown_variable_names_it_and_where() -> None:
    with pytest.raises(TemplateError) as err:
        render("url: http://\n  #{Web.Host | ToLower}/x", {}, where="step 'Smoke test' field url")
    message = str(err.value)
    assert message.startswith("step 'Smoke test' field url: line 2, column 3: unknown variable 'Web.Host'")
    assert err.value.variable == "Web.Host"


def test_unknown_variable_lenient_echoes_and_warns() -> None:
    # As Octostache (UsageFixture.UnmatchedSubstitutionsAreEchoed): the token stays as written, so the gap shows.
    warnings: list[str] = []
    assert render("a#{Nope}b#{Nope2 | ToUpper}c", {}, strict=False, warnings=warnings, where="web.config") == (
        "a#{Nope}b#{Nope2 | ToUpper}c")
    assert warnings == ["web.config: line 1, column 2: unknown variable 'Nope' in #{Nope}",
                        "web.config: line 1, column 10: unknown variable 'Nope2' in #{Nope2 | ToUpper}"]


def test_unknown_variable_inside_a_value_points_at_the_use() -> None:
    with pytest.raises(TemplateError, match=r"^f: line 1, column 3: unknown variable 'Missing' \(in the value of "
                                            r"variable 'A' -> 'B', line 1, column 1\)"):
        render("x #{A}", {"A": "#{B}", "B": "#{Missing}"}, where="f")


def test_values_are_not_quoted_in_errors() -> None:
    # A (possibly sensitive) value's text never appears in a message, only its name and a position.
    with pytest.raises(TemplateError) as err:
        render("#{Password}", {"Password": "s3cr3t#{oops"})
    assert "s3cr3t" not in str(err.value) and "'Password'" in str(err.value)
    with pytest.raises(TemplateError) as err:
        render("#{each p in Passwords}#{p.Hash}#{/each}", {"Passwords": "s3cr3t,other"})
    assert "s3cr3t" not in str(err.value)
    assert "an entry of a comma-separated list has no '.Hash' in #{p.Hash}" in str(err.value)


@pytest.mark.parametrize("variables", [{"Foo": "#{Foo}"}, {"Foo": "#{Fox}", "Fox": "#{Fax}", "Fax": "#{Foo}"}])
def test_cycles_raise(variables: dict[str, str]) -> None:
    # Octostache UsageFixture.MaximumRecursionLimitException.
    for strict in (True, False):
        with pytest.raises(TemplateError, match=r"line 1, column 4: variable 'Foo' refers to itself \(Foo -> "):
            render("-> #{Foo}", variables, strict=strict)


def test_deep_but_finite_nesting_is_fine() -> None:
    chain = {f"V{n}": f"#{{V{n + 1}}}" for n in range(20)} | {"V20": "end"}
    assert render("#{V0}", chain) == "end"


def test_calc_errors() -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        render("#{calc 1 / Zero}", {"Zero": "0"})
    with pytest.raises(TemplateError, match="not a number"):
        render("#{calc 1 + Word}", {"Word": "abc"})
    # Octopus mode echoes what cannot be computed as Octostache does: the expression without "calc".
    assert render("#{calc 1 / Zero}", {"Zero": "0"}, strict=False) == "#{1 / Zero}"
    assert render("#{calc (1 + 2) * -3 / 2}", {}) == "-4.5"
    with pytest.raises(TemplateError, match="the result is too large"):
        render("#{calc Big * Big}", {"Big": "9" * 200})
    with pytest.raises(TemplateError, match="a number is too large"):
        render("#{calc 1" + "0" * 400 + " * 2}", {})


def test_each_with_nested_blocks_and_specials() -> None:
    variables = {"Roles": "web, db ,, api", "Web": "True"}
    template = ("#{each r in Roles}#{if Octopus.Template.Each.First}[#{/if}#{r}"
                "#{unless Octopus.Template.Each.Last},#{else}]#{/unless}#{/each}")
    assert render(template, variables) == "[web,db,api]"
    assert render("#{each r in Roles}#{Octopus.Template.Each.Index}#{/each}", variables) == "012"
    # Outside a loop the specials are ordinary (here unknown, so echoed) variables.
    assert render("#{Octopus.Template.Each.Index}", {}, strict=False) == "#{Octopus.Template.Each.Index}"


def test_is_truthy() -> None:
    # Octopus docs "Variable substitutions" > Truthy and Falsy values.
    for falsy in (None, "", "False", "false", " FALSE ", "No", "no", "0", " 0 "):
        assert not is_truthy(falsy)
    for truthy in ("True", "yes", "1", "anything", "-1", "00"):
        assert is_truthy(truthy)


def test_evaluate_condition() -> None:
    variables = {"Octopus.Environment.Name": "Production", "Flag": "No", "Octopus.Deployment.Error": "boom"}
    assert evaluate_condition("#{if Octopus.Deployment.Error}true#{/if}", variables)
    assert not evaluate_condition("#{if Octopus.Deployment.Error}true#{/if}", {})
    assert evaluate_condition('#{Octopus.Environment.Name == "Production"}', variables)
    assert not evaluate_condition('#{Octopus.Environment.Name != "Production"}', variables)
    assert evaluate_condition(' #{unless Flag}true#{/unless}\n', variables)
    assert not evaluate_condition("#{Flag}", variables)
    warnings: list[str] = []
    assert not evaluate_condition("#{Missing}", {}, where="step 'x' condition", warnings=warnings)
    assert warnings == ["step 'x' condition: line 1, column 1: unknown variable 'Missing' in #{Missing}"]
    with pytest.raises(TemplateError, match="never closed"):
        evaluate_condition("#{if X}true", {})
    with pytest.raises(TemplateError, match="filter 'Nope' is unknown"):
        evaluate_condition("#{X | Nope}", {})


def test_template_error_carries_variable_line_and_column_as_fields() -> None:
    # A caller (the CLI, a step's failure record) can point at the spot without parsing the message.
    with pytest.raises(TemplateError) as err:
        render("a: 1\nb: x #{Web.Host}", {}, where="app.yaml")
    assert (err.value.variable, err.value.line, err.value.column) == ("Web.Host", 2, 6)
    # Inside a value: the position of the use in the template, and the variable whose value failed.
    with pytest.raises(TemplateError) as err:
        render("\n  #{Url}", {"Url": "http://#{Host | Substring 99}", "Host": "h"})
    assert (err.value.variable, err.value.line, err.value.column) == ("Url", 2, 3)
    with pytest.raises(TemplateError) as err:
        render("#{A}", {"A": "#{B}", "B": "#{A}"})
    assert (err.value.variable, err.value.line, err.value.column) == ("A", 1, 1)
    # A malformed block: where it is, no variable.
    with pytest.raises(TemplateError) as err:
        render("x\ny #{if X}", {"X": "1"})
    assert (err.value.variable, err.value.line, err.value.column) == (None, 2, 3)
    with pytest.raises(TemplateError) as err:
        referenced_names("\n\n#{/each}")
    assert (err.value.line, err.value.column) == (3, 1)


def test_json_values_are_indexed_and_iterated() -> None:
    variables = {"Sizes": '{"Small": "11.5", Large: 15.21, "Items": [{"Name": "Toast"}]}', "Sizes.Small": "mine"}
    assert render("#{Sizes.Small} #{Sizes[Large]} #{Sizes.Items[0].Name}", variables) == "mine 15.21 Toast"
    assert render("#{each s in Sizes}#{s}=#{s.Value};#{/each}", variables) == (
        'Small=11.5;Large=15.21;Items=[{"Name":"Toast"}];')
    # A missing property is empty in Octopus mode (as Octostache has it) and an error in strict mode.
    assert render("[#{Sizes.Huge}]", variables, strict=False) == "[]"
    with pytest.raises(TemplateError, match=r"the JSON value of 'Sizes' has no '\.Huge'"):
        render("[#{Sizes.Huge}]", variables)
    # Not JSON (or invalid JSON): an ordinary unknown name.
    with pytest.raises(TemplateError, match=r"unknown variable 'Plain\.Huge'"):
        render("#{Plain.Huge}", {"Plain": "{Name: NoComma}"})
