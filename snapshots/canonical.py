"""Canonical JSON and its sha256: the identity of every frozen snapshot.

Sorted keys, no insignificant whitespace, UTF-8, and no NaN/Infinity, so the same content always hashes
to the same digest on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically (raises ValueError on NaN/Infinity)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(obj: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def digest_text(text: str) -> str:
    """sha256 hex digest of already-canonical JSON text, exactly as stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
