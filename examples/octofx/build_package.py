"""Build ``OctoFX.Web.<version>.tar.gz`` from ``app/``: deterministic bytes for a given version
(sorted entries, fixed mtimes and owners), so rebuilding a version gives the same sha256.

    python examples/octofx/build_package.py 1.0.0 [OUTDIR]     (--help: usage)
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import tarfile
from pathlib import Path

APP = Path(__file__).resolve().parent / "app"


def build(version: str, outdir: Path, app: Path = APP) -> Path:
    """``app``: another source folder (tests build variants, e.g. one whose Deploy.sh fails)."""
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"OctoFX.Web.{version}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = sorted(p for p in app.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        entries = [(p.relative_to(app).as_posix(), p.read_bytes(), p.stat().st_mode & 0o111) for p in files]
        entries.append(("VERSION", f"{version}\n".encode(), 0))
        for name, data, executable in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(target, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return target


def main(argv: list[str] | None = None) -> None:
    """``--help`` prints help (a version is never taken from an option-looking word)."""
    parser = argparse.ArgumentParser(prog="build_package.py",
                                     description="Build OctoFX.Web.<VERSION>.tar.gz from examples/octofx/app "
                                                 "(deterministic bytes: the same version gives the same sha256).")
    parser.add_argument("version", metavar="VERSION", help="SemVer of the package, e.g. 1.1.0")
    parser.add_argument("outdir", metavar="OUTDIR", nargs="?", type=Path, default=Path.cwd(),
                        help="where to write the file (default: the current directory)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?", args.version):
        parser.error(f"VERSION {args.version!r} is not a SemVer version such as 1.1.0")
    print(build(args.version, args.outdir))


if __name__ == "__main__":
    main()
