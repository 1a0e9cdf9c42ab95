"""XDT transforms as data tables (tests/snapshots/variables/xdt_cases.yaml: Microsoft's and Octopus's samples,
each with its exact expected output), then the planning rules of which transform runs on which file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from snapshots.errors import ConfigError
from snapshots.variables import transforms
from snapshots.variables.xdt import transform

CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "xdt_cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_transform_table(case: dict[str, Any]) -> None:
    run = lambda: transform(case["source"].encode(), case["transform"].encode(),  # noqa: E731
                            source_file="web.config", transform_file="web.Release.config")
    if "error" in case:
        with pytest.raises(ConfigError) as caught:
            run()
        assert str(caught.value) == case["error"]
        assert "\n" not in str(caught.value)
        return
    result = run()
    assert result.data.decode() == case["expected"]
    assert result.notes == case.get("notes", [])
    assert b"XML-Document-Transform" not in result.data and b"xdt:" not in result.data


def test_untouched_bytes_survive_crlf_bom_and_odd_formatting() -> None:
    source = ("\ufeff<?xml version='1.0' encoding='utf-8'?>\r\n<configuration>\r\n  <appSettings>\r\n"
              "    <add   key='a'\r\n         value=\"1\"/><!-- odd -->\r\n    <add key=\"b\" value=\"&amp;x\" />\r\n"
              "  </appSettings>\r\n  <x><![CDATA[<raw>]]></x>\r\n</configuration>\r\n").encode()
    xdt = (b'<configuration xmlns:xdt="http://schemas.microsoft.com/XML-Document-Transform"><appSettings>'
           b'<add key="b" value="2" xdt:Transform="SetAttributes" xdt:Locator="Match(key)"/></appSettings>'
           b'</configuration>')
    out = transform(source, xdt, source_file="web.config", transform_file="t.config").data
    assert out == source.replace(b'value="&amp;x"', b'value="2"')


def test_plan_automatic_then_listed_in_order_and_once() -> None:
    files = ["web.config", "Web.Release.config", "web.Production.config", "web.Test.config", "sub/app.config",
             "sub/app.Release.config", "custom/web.Extra.config", "log4net.config", "log4net.production.config"]
    pairs = transforms.plan(files, "Production", [("custom/web.Extra.config => web.config", False),
                                                  ("Web.Release.config => web.config", False)])
    assert [(p.transform, p.target) for p in pairs] == [
        ("log4net.production.config", "log4net.config"), ("sub/app.Release.config", "sub/app.config"),
        ("Web.Release.config", "web.config"), ("web.Production.config", "web.config"),
        ("custom/web.Extra.config", "web.config")]
    assert transforms.plan(files, "Production", [], automatic=False) == []


def test_plan_wildcards_bare_names_and_optional() -> None:
    files = ["Web.config", "Web.A.config", "Web.B.config", "Web.Custom.config"]
    pairs = transforms.plan(files, "Dev", [("Web.*.config => Web.config", False), ("Web.Custom.config", False),
                                           ("Web.Missing.config => Web.config", True)], automatic=False)
    assert [p.transform for p in pairs] == ["Web.A.config", "Web.B.config", "Web.Custom.config"]


@pytest.mark.parametrize(("entry", "message"), [
    ("web.Custom.config => web.config",
     "transform 'web.Custom.config => web.config': the package has no file 'web.Custom.config' (mark the entry "
     "optional: true if it may be absent)"),
    ("Web.*.config => Other.config", "transform 'Web.*.config => Other.config': no file in the package matches it "
                                     "(mark the entry optional: true if it may be absent)"),
    ("../x.config => web.config", "transform path '../x.config' must be relative to the package and stay inside it"),
])
def test_plan_refuses_with_one_line(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        transforms.plan(["web.config", "Web.A.config"], "Dev", [(entry, False)], automatic=False)
    assert str(caught.value) == message


def test_apply_writes_nothing_when_a_later_transform_fails(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text("<configuration><a x='1'/></configuration>")
    (tmp_path / "web.Release.config").write_text(
        '<configuration xmlns:xdt="http://schemas.microsoft.com/XML-Document-Transform">'
        '<a x="2" xdt:Transform="SetAttributes"/></configuration>')
    (tmp_path / "web.Dev.config").write_text("<configuration><broken></configuration>")
    with pytest.raises(ConfigError, match=r"^web.Dev.config:1: not well-formed XML"):
        transforms.run(tmp_path, "Dev", [])
    assert (tmp_path / "web.config").read_text() == "<configuration><a x='1'/></configuration>"
    (tmp_path / "web.Dev.config").unlink()
    assert transforms.run(tmp_path, "Dev", []) == ["web.config: applied web.Release.config"]
    assert (tmp_path / "web.config").read_text() == "<configuration><a x='2'/></configuration>"
