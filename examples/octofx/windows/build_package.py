"""Build ``OctoFX.Web.<version>.zip`` for Windows targets from ``app/``: deterministic bytes for a version
(sorted entries, fixed timestamps), so rebuilding a version gives the same sha256.

    python examples/octofx/windows/build_package.py 1.0.0 [OUTDIR]
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

APP = Path(__file__).resolve().parent / "app"


def build(version: str, outdir: Path) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"OctoFX.Web.{version}.zip"
    entries = [(p.relative_to(APP).as_posix(), p.read_bytes()) for p in APP.rglob("*") if p.is_file()]
    entries.append(("VERSION", f"{version}\n".encode()))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return target


if __name__ == "__main__":
    print(build(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else Path.cwd()))
