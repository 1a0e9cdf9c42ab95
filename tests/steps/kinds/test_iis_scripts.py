"""Checks on the PowerShell itself: every .ps1 ferry ships (and the stdin line that starts them) parses with a
real PowerShell grammar — tree-sitter-powershell (github.com/airbus-cert/tree-sitter-powershell, from PyPI) —
with no ERROR or MISSING node. This is a syntax check, not execution: whether the scripts *do* the right thing
on Windows is what the `windows` tests (.github/workflows/windows-iis.yml) check."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from steps.kinds.iis_website import SCRIPTS as KIND_SCRIPTS
from steps.kinds.powershell_scripts import compose
from steps.transports.winrm import SCRIPTS, bootstrap_line, request_payload
from tests.steps.conftest import ECHO_SCRIPT, SET_OUTPUT_SCRIPT

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
SHIPPED = sorted([*SCRIPTS.glob("*.ps1"), *KIND_SCRIPTS.glob("*.ps1")], key=lambda p: p.name)


def problems(source: bytes) -> list[str]:
    """Every ERROR/MISSING node as 'line:column: text'."""
    found: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.is_error or node.is_missing:
            row, column = node.start_point
            found.append(f"{row + 1}:{column + 1}: {source[node.start_byte:node.end_byte][:60]!r}")
        for child in node.children:
            walk(child)

    walk(PARSER.parse(source).root_node)
    return found


def test_the_expected_scripts_ship() -> None:
    assert [p.name for p in SHIPPED] == [
        "certificate-import.ps1", "deploy-common.ps1", "iis-deploy.ps1", "pull-package.ps1", "read-file.ps1",
                                         "receive-file.ps1", "runner.ps1", "target-health.ps1",
                                         "windows-service.ps1", "write-file.ps1"]


@pytest.mark.parametrize("name", ["iis-deploy.ps1", "windows-service.ps1"])
def test_scripts_as_sent_with_their_includes_parse(name: str) -> None:
    """What ferry sends: the step kind's script with deploy-common.ps1 spliced in at its include line."""
    text = compose(name, KIND_SCRIPTS)
    assert "\n# ferry:include" not in text and "function Install-Folder" in text
    assert problems(text.encode()) == []


@pytest.mark.parametrize("script", [*SHIPPED, ECHO_SCRIPT, SET_OUTPUT_SCRIPT], ids=lambda p: Path(p).name)
def test_script_parses_without_errors(script: Path) -> None:
    assert problems(script.read_bytes()) == []


def test_the_stdin_lines_ferry_writes_parse() -> None:
    line = bootstrap_line(request_payload("Write-Output 1", parameters={"A": "$(x) `' \""}))
    assert problems(line.encode()) == []
    assert problems(b"Add-FerryChunk 'QUJD+/=='\r\nComplete-FerryUpload\r\n") == []


def test_the_grammar_does_catch_broken_powershell() -> None:
    """The check has teeth: an unclosed block and a dangling pipe are reported."""
    assert problems(b"if ($x) {\n  Write-Output 1\n") != []
    assert problems(b"Get-Item -Path 'C:\\' |\n}") != []
