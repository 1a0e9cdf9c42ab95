"""The OctoFX sample, copied into a test's own directory so a test can edit it freely."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES

SECRET = "Sup3r-S3cret/Value+With=Specials"


@dataclass
class Sample:
    root: Path

    @property
    def project(self) -> Path:
        return self.root / "project.yaml"

    @property
    def infrastructure(self) -> Path:
        return self.root / "infrastructure.yaml"

    def package(self, version: str) -> Path:
        """Build OctoFX.Web.<version>.tar.gz (deterministic bytes)."""
        out = self.root / "packages"
        subprocess.run([sys.executable, str(EXAMPLES / "octofx" / "build_package.py"), version, str(out)],
                       check=True, capture_output=True)
        return out / f"OctoFX.Web.{version}.tar.gz"

    def edit_project(self, change: callable) -> None:
        data = yaml.safe_load(self.project.read_text())
        change(data)
        self.project.write_text(yaml.safe_dump(data, sort_keys=False))


def make_sample(dest: Path) -> Sample:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("project.yaml", "infrastructure.yaml"):
        shutil.copy(EXAMPLES / "octofx" / name, dest / name)
    return Sample(dest)
