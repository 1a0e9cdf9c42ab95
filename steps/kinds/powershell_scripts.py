"""The PowerShell the step kinds ship, as sent: ``# ferry:include NAME`` lines replaced by that file's text.

A script runs from a ScriptBlock (no file on the target, so no dot-sourcing): shared functions such as the
versioned-folder install and the journal (``deploy-common.ps1``) are spliced in here instead, so each exists
once in the repository. The include line must stand alone after the ``param`` block.
"""

from __future__ import annotations

import re
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "powershell"
_INCLUDE = re.compile(r"^# ferry:include ([A-Za-z0-9_.-]+\.ps1)[ \t]*$", re.M)


def includes(name: str, folder: Path = FOLDER) -> list[str]:
    """The files ``name`` includes, in order."""
    return _INCLUDE.findall((folder / name).read_text(encoding="utf-8"))


def compose(name: str, folder: Path = FOLDER) -> str:
    """The text ferry sends for ``name`` (one level of includes; an included file includes nothing)."""
    text = (folder / name).read_text(encoding="utf-8")

    def splice(match: re.Match[str]) -> str:
        included = (folder / match.group(1)).read_text(encoding="utf-8")
        if _INCLUDE.search(included):
            raise ValueError(f"{match.group(1)} may not include another file")
        return included.rstrip("\n")

    return _INCLUDE.sub(splice, text)
