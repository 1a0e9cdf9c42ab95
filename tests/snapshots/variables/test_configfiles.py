"""Structured configuration variables and file substitution on realistic config files."""

from __future__ import annotations

import codecs
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from snapshots.errors import ConfigError
from snapshots.variables.configfiles import apply_to_directory, format_for, replace_structured, substitute_text

WEB_CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<!--
  For more information on how to configure your ASP.NET application, please visit
  https://go.microsoft.com/fwlink/?LinkId=301880
  -->
<configuration>
  <configSections>
    <sectionGroup name="applicationSettings" type="System.Configuration.ApplicationSettingsGroup, System">
      <section name="Shop.Web.Properties.Settings" type="System.Configuration.ClientSettingsSection, System" />
    </sectionGroup>
  </configSections>
  <appSettings>
    <!-- Feature switches: flipped per environment by ferry -->
    <add key="webpages:Version" value="3.0.0.0" />
    <add key="ClientValidationEnabled" value="true" />
    <add key="Payments.ApiUrl" value="https://sandbox.payments.example/v2" />
    <add value='#{Shop.Banner}' key='Banner'/>
  </appSettings>
  <connectionStrings>
    <add name="ShopDb" connectionString="Data Source=.;Initial Catalog=Shop;Integrated Security=True"
         providerName="System.Data.SqlClient" />
    <add name="Redis" connectionString="localhost:6379" />
  </connectionStrings>
  <system.web>
    <compilation debug="true" targetFramework="4.8" />
    <httpRuntime targetFramework="4.8" maxRequestLength="4096" />
    <customErrors mode="Off" />
  </system.web>
  <applicationSettings>
    <Shop.Web.Properties.Settings>
      <setting name="PageSize" serializeAs="String">
        <value>25</value>
      </setting>
      <setting name="Motd" serializeAs="String">
        <value><![CDATA[Welcome!]]></value>
      </setting>
    </Shop.Web.Properties.Settings>
  </applicationSettings>
  <system.webServer>
    <modules runAllManagedModulesForAllRequests="true" />
  </system.webServer>
</configuration>
""".replace("\n", "\r\n")

APPSETTINGS_JSON = """{
    // ASP.NET Core reads comments and trailing commas; so must we.
    "Logging": {
        "LogLevel": {
            "Default": "Information",
            "Microsoft.AspNetCore": "Warning"
        }
    },
    "AllowedHosts": "*",
    "ConnectionStrings": {
        "Default": "Server=localhost;Database=shop;User Id=sa;Password=dev"
    },
    "Kestrel": { "Limits": { "MaxConcurrentConnections": 100, "KeepAliveTimeout": 2.5 } },
    "Features": { "Search": true, "Recommendations": false, "Beta": null },
    "Servers": [
        { "Name": "web01", "Port": 8080 },
        { "Name": "web02", "Port": 8081 }
    ],
    "Cors": { "Origins": ["https://shop.example"] },
}
"""

APPLICATION_YAML = """# Spring Boot configuration for the catalog service
server:
  port: 8080          # overridden per environment
  servlet:
    context-path: /catalog
spring:
  datasource:
    url: jdbc:postgresql://localhost/catalog
    username: catalog
    password: "dev-password"
  jpa:
    show-sql: true
catalog:
  page-size: 20
  banner: |
    Welcome to the catalog.
    Have fun.

  regions: [eu-west-1, us-east-1]
  owners:
    - team: search   # primary
    - team: data
"""

APPLICATION_PROPERTIES = """# catalog service
server.port=8080
spring.datasource.url = jdbc:postgresql://localhost/catalog
spring.datasource.password: dev
logging.level.root   INFO
catalog.description=first line \\
    continued line
! old style comment
"""


# ----------------------------------------------------------------------------------------------- JSON


def _jsonc(text: str) -> dict:
    """Strict-JSON view of the appsettings sample (drop its comment line and trailing comma)."""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("//")]
    return json.loads("\n".join(lines).replace(",\n}", "\n}"))


def test_json_sets_nested_keys_case_insensitively_and_keeps_everything_else() -> None:
    out, keys = replace_structured(APPSETTINGS_JSON, "json", {
        "logging:loglevel:default": "Debug",
        "ConnectionStrings:Default": "Server=db01;Database=shop;Password=s3cr\"et",
        "Servers:1:Name": "web03",
        "Missing:Key": "ignored",
        "Project.Name": "Shop",
    }, file="appsettings.json")
    assert keys == ["logging:loglevel:default", "ConnectionStrings:Default", "Servers:1:Name"]
    assert '"Default": "Debug",' in out
    assert '"Default": "Server=db01;Database=shop;Password=s3cr\\"et"' in out
    assert '{ "Name": "web03", "Port": 8081 }' in out
    # comments, key order, indentation and the trailing comma are untouched
    assert out.replace("Debug", "Information").replace("web03", "web02").replace(
        'Server=db01;Database=shop;Password=s3cr\\"et', "Server=localhost;Database=shop;User Id=sa;Password=dev"
    ) == APPSETTINGS_JSON
    assert "Missing" not in out


def test_json_keeps_the_original_type() -> None:
    out, _ = replace_structured(APPSETTINGS_JSON, "json", {
        "Kestrel:Limits:MaxConcurrentConnections": "250",
        "Kestrel:Limits:KeepAliveTimeout": "1e1",
        "Servers:0:Port": "not-a-number",
        "Features:Search": "False",
        "Features:Recommendations": "maybe",
        "Features:Beta": "on",
        "AllowedHosts": "123",
    }, file="appsettings.json")
    data = _jsonc(out)
    assert data["Kestrel"]["Limits"] == {"MaxConcurrentConnections": 250, "KeepAliveTimeout": 10.0}
    assert data["Servers"][0]["Port"] == "not-a-number"  # not a number: becomes a string, like Octopus
    assert data["Features"] == {"Search": False, "Recommendations": "maybe", "Beta": "on"}
    assert data["AllowedHosts"] == "123"  # a string stays a string


def test_json_null_stays_null_only_for_null() -> None:
    out, _ = replace_structured('{"a": null, "b": null}', "json", {"a": "null", "b": "x"}, file="f.json")
    assert out == '{"a": null, "b": "x"}'


def test_json_subtree_replaced_by_json_text_with_the_files_indentation() -> None:
    out, keys = replace_structured(APPSETTINGS_JSON, "json", {
        "Cors:Origins": '["https://a.example", "https://b.example"]',
        "Features": '{"Search": false}',
        "Kestrel": "not json",  # a scalar never wipes out a section
    }, file="appsettings.json")
    assert keys == ["Features", "Cors:Origins"]
    assert '"Origins": [\n        "https://a.example",\n        "https://b.example"\n    ] }' in out
    assert '"Features": {\n        "Search": false\n    },' in out
    assert '"Kestrel": { "Limits"' in out


def test_json_outermost_match_wins() -> None:
    out, keys = replace_structured('{"A": {"B": 1}}', "json", {"A": '{"C": 2}', "A:B": "5"}, file="f.json")
    assert keys == ["A"]
    assert json.loads(out) == {"A": {"C": 2}}


def test_json_top_level_array_and_unicode() -> None:
    out, keys = replace_structured('[{"name": "x"}]', "json", {"0:name": "Zoë ✓"}, file="f.json")
    assert out == '[{"name": "Zoë ✓"}]' and keys == ["0:name"]


@pytest.mark.parametrize(("text", "line", "col"), [
    ('{\n  "a": 1,\n  "b": \n}\n', 4, 1),
    ('{\n  "a": 1\n  "b": 2\n}', 3, 3),
    ('{"a": "unterminated}', 1, 7),
    ('{"a": 1} extra', 1, 10),
    ("", 1, 1),
])
def test_malformed_json_names_file_and_position(text: str, line: int, col: int) -> None:
    with pytest.raises(ConfigError) as info:
        replace_structured(text, "json", {"a": "2"}, file="config/appsettings.json")
    assert info.value.file == "config/appsettings.json"
    assert info.value.line == line
    assert f"line {line}, column {col}" in str(info.value)
    assert str(info.value).startswith("config/appsettings.json:")


# ----------------------------------------------------------------------------------------------- YAML


def test_yaml_edits_values_in_place_keeping_comments_and_types() -> None:
    out, keys = replace_structured(APPLICATION_YAML, "yaml", {
        "server:port": "9090",
        "spring:datasource:password": "pa\"ss: word",
        "spring:datasource:url": "jdbc:postgresql://db01/catalog",
        "spring:jpa:show-sql": "false",
        "catalog:page-size": "big",
        "catalog:regions:1": "ap-south-1",
        "catalog:owners:0:team": "platform",
        "Catalog:Banner": "Hello.\nBye.\n",
        "nothing:here": "x",
    }, file="application.yaml")
    assert keys == ["server:port", "spring:datasource:url", "spring:datasource:password",
                    "spring:jpa:show-sql", "catalog:page-size", "Catalog:Banner", "catalog:regions:1",
                    "catalog:owners:0:team"]
    assert "  port: 9090          # overridden per environment\n" in out
    assert out.startswith("# Spring Boot configuration for the catalog service\n")
    assert '    password: "pa\\"ss: word"\n' in out
    assert "    - team: platform   # primary\n" in out
    assert "  banner: |\n    Hello.\n    Bye.\n\n  regions: [eu-west-1, ap-south-1]\n" in out
    data = yaml.safe_load(out)
    assert data["server"]["port"] == 9090
    assert data["spring"]["datasource"]["password"] == 'pa"ss: word'
    assert data["spring"]["jpa"]["show-sql"] is False
    assert data["catalog"]["page-size"] == "big"
    assert data["catalog"]["banner"] == "Hello.\nBye.\n"
    assert data["catalog"]["regions"] == ["eu-west-1", "ap-south-1"]


def test_yaml_quotes_values_that_would_change_type_or_break_syntax() -> None:
    text = "a: text\nb: [x, y]\nc: 'q'\nd: true\ne:\nf: 1\n"
    out, _ = replace_structured(text, "yaml", {
        "a": "123", "b:0": "p, q", "c": "it's", "d": "yes", "e": "filled", "f": "# not a comment",
    }, file="f.yml")
    assert out == "a: '123'\nb: ['p, q', y]\nc: 'it''s'\nd: 'yes'\ne: filled\nf: '# not a comment'\n"
    assert yaml.safe_load(out) == {"a": "123", "b": ["p, q", "y"], "c": "it's", "d": "yes", "e": "filled",
                                   "f": "# not a comment"}


def test_yaml_multiline_value_into_a_plain_scalar_is_double_quoted() -> None:
    out, _ = replace_structured("key: one\nnext: 2\n", "yaml", {"key": "l1\nl2\ttab"}, file="f.yml")
    assert out == 'key: "l1\\nl2\\ttab"\nnext: 2\n'


def test_yaml_leaves_application_tags_and_missing_keys_alone() -> None:
    text = "Value: !Ref Bucket\nOther: 1\n"
    out, keys = replace_structured(text, "yaml", {"Value": "x", "Missing": "y"}, file="t.yaml")
    assert (out, keys) == (text, [])


def test_yaml_crlf_block_scalar() -> None:
    text = "script: |\r\n  echo a\r\n  echo b\r\nafter: 1\r\n"
    out, _ = replace_structured(text, "yaml", {"script": "echo c\n"}, file="f.yml")
    assert out == "script: |\r\n  echo c\r\nafter: 1\r\n"


def test_malformed_yaml_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        replace_structured("a: 1\nb: [1, 2\nc: 3\n", "yaml", {"a": "2"}, file="app.yaml")
    assert info.value.file == "app.yaml" and info.value.line is not None
    assert "malformed YAML" in str(info.value)


# ------------------------------------------------------------------------------------------------ XML


def test_web_config_dotnet_conventions_and_xpath() -> None:
    out, keys = replace_structured(WEB_CONFIG, "xml", {
        "clientvalidationenabled": "false",
        "Payments.ApiUrl": "https://payments.example/v2?a=1&b=2",
        "Banner": "Sale <today> \"only\" it's",
        "ShopDb": "Data Source=sql01;Initial Catalog=Shop;User Id=shop;Password=p&ss",
        "PageSize": "50",
        "Motd": "Hi ]]> there",
        "/configuration/system.web/compilation/@debug": "false",
        "/configuration/system.web/customErrors/@mode": "RemoteOnly",
        "/configuration/system.webServer/modules/@missing": "x",
        "/configuration/appSettings/add[@key='webpages:Version']/@value": "3.1.0.0",
        "NotThere": "x",
    }, file="web.config")
    assert keys == ["clientvalidationenabled", "Payments.ApiUrl", "Banner", "ShopDb", "PageSize", "Motd",
                    "/configuration/system.web/compilation/@debug",
                    "/configuration/system.web/customErrors/@mode",
                    "/configuration/appSettings/add[@key='webpages:Version']/@value"]
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")
    assert out.startswith('<?xml version="1.0" encoding="utf-8"?>\r\n<!--\r\n  For more information')
    assert "<!-- Feature switches: flipped per environment by ferry -->" in out
    assert '<add key="ClientValidationEnabled" value="false" />' in out
    assert '<add key="Payments.ApiUrl" value="https://payments.example/v2?a=1&amp;b=2" />' in out
    assert "<add value='Sale &lt;today&gt; \"only\" it&apos;s' key='Banner'/>" in out  # quote style kept
    assert ('connectionString="Data Source=sql01;Initial Catalog=Shop;User Id=shop;Password=p&amp;ss"\r\n'
            '         providerName="System.Data.SqlClient" />') in out
    assert '<compilation debug="false" targetFramework="4.8" />' in out
    assert '<customErrors mode="RemoteOnly" />' in out
    assert "<value>50</value>" in out
    assert "<value><![CDATA[Hi ]]]]><![CDATA[> there]]></value>" in out
    assert '<add key="webpages:Version" value="3.1.0.0" />' in out
    assert '<modules runAllManagedModulesForAllRequests="true" />' in out

    root = ET.fromstring(out.encode("utf-8"))
    app = {a.get("key"): a.get("value") for a in root.find("appSettings")}  # type: ignore[union-attr]
    assert app["Banner"] == "Sale <today> \"only\" it's"
    assert app["Payments.ApiUrl"] == "https://payments.example/v2?a=1&b=2"
    motd = root.find("applicationSettings/Shop.Web.Properties.Settings/setting[@name='Motd']/value")
    assert motd is not None and motd.text == "Hi ]]> there"


def test_web_config_report_lists_each_used_key_once() -> None:
    _, keys = replace_structured(WEB_CONFIG, "xml", {"PageSize": "1", "Redis": "r:1"}, file="Web.config")
    assert sorted(keys) == ["PageSize", "Redis"]


def test_dotnet_conventions_only_for_config_files_unless_asked() -> None:
    text = '<root><appSettings><add key="A" value="1"/></appSettings></root>'
    assert replace_structured(text, "xml", {"A": "2"}, file="settings.xml") == (text, [])
    out, _ = replace_structured(text, "xml", {"A": "2"}, file="settings.xml", dotnet_conventions=True)
    assert 'value="2"' in out


def test_xml_xpath_element_text_indexes_and_fragments() -> None:
    text = ("<?xml version='1.0'?>\n<!-- keep me -->\n<root xmlns='urn:x'>\n  <item>one</item>\n"
            "  <item>two</item>\n  <group><a>1</a></group>\n  <empty/>\n</root>\n")
    out, keys = replace_structured(text, "xml", {
        "/root/item[2]": "second & last",
        "/root/group": "<b>2</b><c/>",
        "//empty": "filled",
        "/root/item[1]/text()": "first",
        "not/an/xpath": "x",
    }, file="data.xml")
    assert out == ("<?xml version='1.0'?>\n<!-- keep me -->\n<root xmlns='urn:x'>\n  <item>first</item>\n"
                   "  <item>second &amp; last</item>\n  <group><b>2</b><c/></group>\n"
                   "  <empty>filled</empty>\n</root>\n")
    assert sorted(keys) == ["//empty", "/root/group", "/root/item[1]/text()", "/root/item[2]"]


def test_xml_element_with_children_and_non_fragment_value_is_left_alone() -> None:
    text = "<root><group><a>1</a></group></root>"
    assert replace_structured(text, "xml", {"/root/group": "a < b"}, file="d.xml") == (text, [])


def test_malformed_xml_names_file_and_position() -> None:
    broken = WEB_CONFIG.replace("<customErrors mode=\"Off\" />", "<customErrors mode=\"Off\">")
    with pytest.raises(ConfigError) as info:
        replace_structured(broken, "xml", {"PageSize": "1"}, file="web.config")
    assert info.value.file == "web.config"
    line = next(i for i, ln in enumerate(broken.split("\r\n"), 1) if "</system.web>" in ln)
    assert info.value.line == line
    assert "mismatched tag" in str(info.value) and f"line {line}, column 5" in str(info.value)


# ----------------------------------------------------------------------------------------- .properties


def test_properties_dotted_keys_from_colon_paths_and_escaping() -> None:
    out, keys = replace_structured(APPLICATION_PROPERTIES, "properties", {
        "server:port": "9090",
        "Spring.Datasource.URL": "jdbc:postgresql://db01/catalog",
        "spring:datasource:password": " s3cr\\et=€",
        "logging:level:root": "DEBUG",
        "catalog.description": "one\ntwo",
        "missing.key": "x",
    }, file="application.properties")
    assert keys == ["server:port", "Spring.Datasource.URL", "spring:datasource:password", "logging:level:root",
                    "catalog.description"]
    assert out == (
        "# catalog service\n"
        "server.port=9090\n"
        "spring.datasource.url = jdbc:postgresql://db01/catalog\n"
        "spring.datasource.password: \\ s3cr\\\\et=\\u20ac\n"
        "logging.level.root   DEBUG\n"
        "catalog.description=one\\ntwo\n"
        "! old style comment\n"
    )


def test_properties_escaped_keys() -> None:
    out, keys = replace_structured("my\\ key\\:x = 1\r\nother=2\r\n", "properties",
                                   {"my key:x": "3"}, file="a.properties")
    assert (out, keys) == ("my\\ key\\:x = 3\r\nother=2\r\n", ["my key:x"])


# ------------------------------------------------------------------------------------------ directory


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _render(variables: dict[str, str]):  # a stand-in for snapshots.octostache.render
    calls: list[str] = []

    def render(text: str, where: str) -> str:
        calls.append(where)
        for name, value in variables.items():
            text = text.replace("#{" + name + "}", value)
        return text

    render.calls = calls  # type: ignore[attr-defined]
    return render


def test_apply_to_directory_transforms_and_preserves_bom_and_crlf(tmp_path: Path) -> None:
    web = codecs.BOM_UTF8 + WEB_CONFIG.encode("utf-8")
    _tree(tmp_path, {
        "Web.config": web,
        "appsettings.json": APPSETTINGS_JSON.encode("utf-8"),
        "config/application.yaml": APPLICATION_YAML.encode("utf-8"),
        "config/application.properties": APPLICATION_PROPERTIES.encode("utf-8"),
        "bin/Shop.dll": b"MZ\x90\x00binary",
    })
    render = _render({"Shop.Banner": "Spring sale"})
    report = apply_to_directory(
        tmp_path,
        substitute_globs=["*.config"],
        structured_globs=["*.config", "**/*.json", "**/application.*"],
        variables={"ClientValidationEnabled": "false", "Logging:LogLevel:Default": "Warning",
                   "server:port": "9443", "spring:datasource:password": "Sup3rS3cret!"},
        render=render,
    )
    assert render.calls == ["Web.config"]  # type: ignore[attr-defined]
    new_web = (tmp_path / "Web.config").read_bytes()
    assert new_web.startswith(codecs.BOM_UTF8 + b'<?xml version="1.0" encoding="utf-8"?>\r\n')
    assert new_web.count(b"\r\n") == web.count(b"\r\n") and b"\n" not in new_web.replace(b"\r\n", b"")
    assert b"value='Spring sale'" in new_web and b'value="false"' in new_web
    assert _jsonc((tmp_path / "appsettings.json").read_text())["Logging"]["LogLevel"]["Default"] == "Warning"
    assert yaml.safe_load((tmp_path / "config/application.yaml").read_text())["server"]["port"] == 9443
    assert "password: Sup3rS3cret!" in (tmp_path / "config/application.properties").read_text()
    assert (tmp_path / "bin/Shop.dll").read_bytes() == b"MZ\x90\x00binary"
    assert report == [
        "Web.config: substituted #{...} variables; set ClientValidationEnabled",
        "appsettings.json: set Logging:LogLevel:Default",
        "config/application.properties: set server:port, spring:datasource:password",
        "config/application.yaml: set server:port, spring:datasource:password",
    ]
    assert not any("Sup3rS3cret" in line or "Spring sale" in line for line in report)
    assert not list(tmp_path.rglob("*.tmp"))


def test_apply_to_directory_report_never_contains_values(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.properties": b"server.port=1\nspring.datasource.password=x\n"})
    report = apply_to_directory(tmp_path, substitute_globs=[], structured_globs=["*.properties"],
                                variables={"server:port": "2", "spring:datasource:password": "hunter22"},
                                render=_render({}))
    assert report == ["a.properties: set server:port, spring:datasource:password"]


@pytest.mark.parametrize(("name", "broken", "fragment"), [
    ("appsettings.json", b'{\n  "Logging": {\n    "LogLevel": "x"\n  \n}\n', "line 6, column 1"),
    ("Web.config", WEB_CONFIG.replace("</system.web>", "</system.wbe>").encode("utf-8"), "mismatched tag"),
])
def test_one_malformed_file_writes_nothing(tmp_path: Path, name: str, broken: bytes, fragment: str) -> None:
    good_json = b'{"Port": 1}\n'
    _tree(tmp_path, {name: broken, "good/settings.json": good_json, "good/readme.txt": b"v=#{V}\n"})
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as info:
        apply_to_directory(tmp_path, substitute_globs=["**/*.txt"], structured_globs=["**/*.json", "*.config"],
                           variables={"Port": "2", "PageSize": "3"}, render=_render({"V": "new"}))
    assert info.value.file == name and fragment in str(info.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_apply_to_directory_keeps_file_mode_and_skips_unchanged(tmp_path: Path) -> None:
    _tree(tmp_path, {"run.sh": b"#!/bin/sh\necho #{Greeting}\n", "static.txt": b"no templates\n"})
    os.chmod(tmp_path / "run.sh", 0o750)
    mtime = (tmp_path / "static.txt").stat().st_mtime_ns
    report = apply_to_directory(tmp_path, substitute_globs=["*.sh", "*.txt", "nothing/*.cfg"],
                                structured_globs=[], variables={}, render=_render({"Greeting": "hi"}))
    assert (tmp_path / "run.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "static.txt").stat().st_mtime_ns == mtime
    assert report == ["no file matches 'nothing/*.cfg' (substitute variables)", "run.sh: substituted #{...} variables"]


def test_apply_to_directory_utf16_and_patterns_outside_root(tmp_path: Path) -> None:
    text = '<?xml version="1.0" encoding="utf-16"?>\r\n<configuration><appSettings>' \
           '<add key="K" value="v"/></appSettings></configuration>\r\n'
    _tree(tmp_path, {"App.config": codecs.BOM_UTF16_LE + text.encode("utf-16-le")})
    apply_to_directory(tmp_path, substitute_globs=[], structured_globs=["*.config"], variables={"K": "ö"},
                       render=_render({}))
    data = (tmp_path / "App.config").read_bytes()
    assert data.startswith(codecs.BOM_UTF16_LE)
    assert data[2:].decode("utf-16-le") == text.replace('value="v"', 'value="ö"')
    with pytest.raises(ConfigError):
        apply_to_directory(tmp_path, substitute_globs=["../*"], structured_globs=[], variables={},
                           render=_render({}))


def test_apply_to_directory_does_not_follow_symlinks_out_of_the_package(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"Port": 1}')
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "link.json").symlink_to(outside)
    assert apply_to_directory(pkg, substitute_globs=[], structured_globs=["*.json"], variables={"Port": "2"},
                              render=_render({})) == ["no file matches '*.json' (structured variables)"]
    assert outside.read_text() == '{"Port": 1}'


def test_unknown_structured_extension_is_an_error(tmp_path: Path) -> None:
    _tree(tmp_path, {"settings.ini": b"[a]\nb=1\n"})
    with pytest.raises(ConfigError, match="cannot tell the structured format"):
        apply_to_directory(tmp_path, substitute_globs=[], structured_globs=["*.ini"], variables={},
                           render=_render({}))


def test_substitute_text_and_format_for() -> None:
    assert substitute_text("a #{X}", lambda t: t.replace("#{X}", "1")) == "a 1"
    assert format_for("conf/Web.Release.config") == "xml"
    assert format_for("application.yml") == "yaml"
    assert format_for("README.md") is None


def test_binary_files_matched_by_a_substitute_glob_are_skipped_and_named(tmp_path: Path) -> None:
    """A glob such as ``**/*`` also matches images and DLLs: they are left byte-identical and the report names
    each one; text files beside them are still substituted."""
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR#{Site.Host}")
    (tmp_path / "app.conf").write_text("host=#{Site.Host}\n")
    (tmp_path / "utf16.txt").write_bytes(codecs.BOM_UTF16_LE + "v=#{Site.Host}".encode("utf-16-le"))
    report = apply_to_directory(tmp_path, substitute_globs=["*"], structured_globs=[],
                                variables={"Site.Host": "example.org"},
                                render=lambda text, where: text.replace("#{Site.Host}", "example.org"))
    assert (tmp_path / "logo.png").read_bytes().endswith(b"#{Site.Host}")
    assert (tmp_path / "app.conf").read_text() == "host=example.org\n"
    assert (tmp_path / "utf16.txt").read_bytes()[2:].decode("utf-16-le") == "v=example.org"
    assert any(line.startswith("logo.png: skipped: binary file") for line in report), report


def test_a_text_file_over_the_size_limit_is_refused_with_its_name(tmp_path: Path) -> None:
    """A 1.5 GB file caught by a glob took 6 GB of memory: over 64 MiB it is refused before a byte is read
    (a sparse file: cheap to make)."""
    big = tmp_path / "data.xml"
    with open(big, "wb") as fh:
        fh.write(b"<?xml version='1.0'?><data>" + b"x" * 9000)
        fh.truncate(1536 << 20)
    with pytest.raises(ConfigError, match=r"^data\.xml: 1\.5 GiB is over the 64\.0 MiB limit"):
        apply_to_directory(tmp_path, substitute_globs=["*.xml"], structured_globs=[], variables={},
                           render=lambda text, where: text)
