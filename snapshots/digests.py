"""The one way ferry hashes a whole file: streamed sha256 in large chunks.

Packages are pinned by sha256 at release creation and every layer checks the bytes it moves against that pin
(the feed, the client's push, transports' skip-if-present, the IIS step), so they share one helper. hashlib
releases the GIL while hashing, so several files hash in parallel threads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's sha256 as lowercase hex, read once in ``CHUNK``-sized pieces (never held in memory)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()
