"""PowerShell checked beyond parsing (issue 15 item 6): every command each shipped .ps1 invokes — as sent, with
its includes — is a function it (or the runner around it) defines, a cmdlet of Windows PowerShell 5.1 or of a
module it imports, or an allowed native program; every named parameter and splatted key exists on it. Against
tests/steps/kinds/powershell_cmdlets.json (signatures from Microsoft's reference pages). A static check: values,
parameter sets and behaviour on Windows are the `windows` tests' business."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.kinds.iis_website import SCRIPTS as KIND_SCRIPTS
from steps.kinds.powershell_scripts import compose
from steps.transports.winrm import SCRIPTS
from tests.steps.conftest import ECHO_SCRIPT, SET_OUTPUT_SCRIPT
from tests.steps.kinds.powershell_check import check, functions, load_table

TABLE = load_table()
RUNNER = functions((SCRIPTS / "runner.ps1").read_bytes())
"""Every script runs inside runner.ps1, so the functions it defines (Set-OctopusVariable …) exist for them."""
SHIPPED = sorted([*SCRIPTS.glob("*.ps1"), *KIND_SCRIPTS.glob("*.ps1")], key=lambda p: p.name)


@pytest.mark.parametrize("script", [*SHIPPED, ECHO_SCRIPT, SET_OUTPUT_SCRIPT], ids=lambda p: Path(p).name)
def test_every_command_and_parameter_exists(script: Path) -> None:
    assert check(compose(script.name, script.parent).encode(), TABLE, also_defined=RUNNER) == []


def test_the_check_rejects_a_misspelt_cmdlet_and_a_misspelt_parameter() -> None:
    source = b"Get-ChildItme -LiteralPath 'C:\\x'\nRemove-Item -LiteralPath 'C:\\x' -Recures -Force\n"
    assert check(source, TABLE) == [
        "line 1: Get-ChildItme is not a function of the script, a known cmdlet, an allowed alias or an allowed native "
        "command",
        "line 2: Remove-Item has no parameter -Recures"]


def test_the_check_knows_what_51_lacks_and_what_a_module_needs() -> None:
    """ConvertFrom-Json -Depth and -AsHashtable came with PowerShell 6; WebAdministration must be imported."""
    assert check(b"ConvertFrom-Json -AsHashtable $text\n", TABLE) == [
        "line 1: ConvertFrom-Json has no parameter -AsHashtable"]
    assert check(b"Start-WebAppPool -Name OctoFX\n", TABLE) == [
        "line 1: Start-WebAppPool is in module WebAdministration, which the script does not import"]
    assert check(b"Import-Module WebAdministration\nStart-WebAppPool -Name OctoFX\n", TABLE) == []


def test_abbreviations_are_refused_and_ambiguity_named() -> None:
    assert check(b"Get-Item -Lit 'C:\\x'\n", TABLE) == [
        "line 1: -Lit abbreviates -LiteralPath of Get-Item: write it out"]
    assert check(b"Stop-Service -N x\n", TABLE) == ["line 1: -N is ambiguous for Stop-Service (-Name, -NoWait)"]


def test_aliases_common_and_provider_parameters_are_accepted() -> None:
    source = (b"Remove-Item -PSPath x -ErrorAction SilentlyContinue -WhatIf -Recurse:$true\n"
              b"Set-ItemProperty -LiteralPath 'HKLM:\\x' -Name A -Value 1 -Type DWord\n"
              b"Get-ChildItem -LiteralPath 'Cert:\\LocalMachine\\My' -SSLServerAuthentication\n")
    assert check(source, TABLE) == []
    assert check(b"Get-Item -LiteralPath x -WhatIf\n", TABLE) == ["line 1: Get-Item has no parameter -WhatIf"]


def test_script_functions_and_splatted_hashtables_are_checked() -> None:
    source = (b"function Wait-It([string]$Name, [int]$Seconds) { Start-Sleep -Seconds $Seconds }\n"
              b"Wait-It -Name a -Secnods 3\n"
              b"$create = @{ Name = 'svc'; BinaryPathName = 'C:\\svc.exe' }\n"
              b"$create['StartType'] = 'Manual'\n"
              b"New-Service @create\n")
    assert check(source, TABLE) == ["line 2: function Wait-It has no parameter -Secnods",
                                    "line 5: @create: New-Service has no parameter -StartType"]


def test_the_table_is_consistent() -> None:
    """No alias of a cmdlet names another of its parameters; every module is one the check knows how to load."""
    modules = {m for m in TABLE["auto_loaded_modules"]} | {"WebAdministration"}
    for name, entry in TABLE["cmdlets"].items():
        assert entry["module"] in modules, name
        spelled: dict[str, str] = {}
        for group in (entry["parameters"], entry.get("provider_parameters", {}), TABLE["common_parameters"]):
            for full, aliases in group.items():
                for word in [full, *aliases]:
                    assert spelled.setdefault(word.lower(), full) == full, f"{name}: -{word}"
