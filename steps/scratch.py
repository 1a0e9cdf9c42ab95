"""Private scratch folders on the worker for anything derived from decrypted values (rendered config files, the
worker's own shell folder), named for the process that owns them so a later run can sweep what a killed one left.

A ``TemporaryDirectory`` is removed when its process ends normally; after SIGKILL it stays, holding whatever was
rendered into it. Every new folder is therefore created 0700 as ``ferry-<kind>-<pid>-…`` in the temp directory,
and each creation (and each local transport) first removes the folders of processes that are gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

_OURS = re.compile(r"^ferry-(run|substitute|iis|worker)-(\d+)-")
_LEGACY = re.compile(r"^ferry-(run|substitute|iis|worker)-[^-]+$")  # before the pid was in the name
LEGACY_GRACE = 3600.0  # seconds a legacy folder is left alone: an older ferry may still be using it


def private_tempdir(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A 0700 folder ``ferry-<kind>-<pid>-…``, removed on exit or, after a kill, by the next sweep."""
    sweep()
    return tempfile.TemporaryDirectory(prefix=f"ferry-{kind}-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, someone else's
        return True
    return True


def sweep() -> None:
    """Remove scratch folders of this user whose process is gone (and legacy ones older than an hour)."""
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith("ferry-"):
            continue
        ours, legacy = _OURS.match(entry.name), _LEGACY.match(entry.name)
        if not ours and not legacy:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_uid != uid:
                continue
        except OSError:
            continue
        if ours and _alive(int(ours.group(2))):
            continue
        if legacy and time.time() - info.st_mtime < LEGACY_GRACE:
            continue
        shutil.rmtree(Path(entry.path), ignore_errors=True)
