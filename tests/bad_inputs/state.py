"""What a refused command must leave exactly as it was: the store's rows and the files under FERRY_HOME."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any


def state(home: Path) -> dict[str, Any]:
    """Every row of every store table, and the sha256 of every other file under FERRY_HOME (the feed, the key).
    A FERRY_HOME that is not a directory is itself hashed."""
    if not home.exists():
        return {"missing": True}
    if not home.is_dir():
        return {"file": hashlib.sha256(home.read_bytes()).hexdigest()}
    rows: list[Any] = []
    db = home / "ferry.db"
    if db.is_file():
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1")]
                rows = [(t, conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()) for t in tables]
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            rows = [("unreadable", hashlib.sha256(db.read_bytes()).hexdigest())]
    files: dict[str, str] = {}
    folders: list[str] = []
    for path in sorted(home.rglob("*")):
        rel = path.relative_to(home).as_posix()
        if rel.startswith("ferry.db") or rel == "logs" or rel.startswith("logs/"):
            continue
        if path.is_dir():
            folders.append(rel)
        elif path.is_file():
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"rows": rows, "files": files, "folders": folders}
