"""Config files the package step rewrote with values (maybe secrets) get ``config_file_mode`` (default 0640)
on the target instead of the package's 0644; other files keep theirs (issue 12, item 7)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from snapshots.model.steps import PackageStep
from steps.kinds import package as package_step
from steps.transports.local import LocalTransport
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo
from tests.steps.kinds.test_package_step import context, make_package, root  # noqa: F401 (root: a fixture)


def _mode(dev: SshTransport, path: str) -> str:
    lines: list[str] = []
    assert dev.run(f"stat -c %a -- {path}", on_line=lines.append).ok
    return lines[-1].strip()


@pytest.mark.parametrize(("option", "expected"), [({}, "640"), ({"config_file_mode": "0600"}, "600")],
                         ids=["default", "0600"])
def test_substituted_config_files_get_the_config_mode_over_ssh(dev: SshTransport, lab: LabInfo, root: str,  # noqa: F811
                                                               tmp_path: Path, option: dict[str, str],
                                                               expected: str) -> None:
    ref = make_package(tmp_path, "1.0.0")
    package_step.run(context(dev, lab, ref, root, [], **option))
    release = f"{root}/Test/App/1.0.0"
    assert _mode(dev, f"{release}/config/app.conf") == expected
    assert _mode(dev, f"{release}/config/settings.json") == expected
    assert _mode(dev, f"{release}/VERSION") == "644"  # not substituted: the package's own mode


def test_local_transport_sets_the_mode_before_writing(tmp_path: Path) -> None:
    transport = LocalTransport("t", tmp_path)
    (tmp_path / "app.conf").write_text("old")
    (tmp_path / "app.conf").chmod(0o644)
    transport.write_file("app.conf", b"password=s3cr3t", mode=0o640)
    assert (tmp_path / "app.conf").stat().st_mode & 0o777 == 0o640
    transport.write_file("app.conf", b"password=other")  # no mode: the file keeps its own
    assert (tmp_path / "app.conf").stat().st_mode & 0o777 == 0o640
    transport.close()


@pytest.mark.parametrize("value", ["0999", "rw-r-----", "06400"])
def test_config_file_mode_must_be_octal(value: str) -> None:
    with pytest.raises(ValidationError, match="config_file_mode"):
        PackageStep(name="Install", kind="package", package="App", config_file_mode=value)


def test_bad_config_file_mode_in_yaml_is_one_line_and_writes_nothing(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert ferry("apply", str(sample.infrastructure), str(sample.project)).exit_code == 0
    text = sample.project.read_text()
    assert "        kind: package\n" in text
    sample.project.write_text(text.replace("        kind: package\n",
                                           '        kind: package\n        config_file_mode: "0999"\n', 1))

    def state() -> list:
        conn = sqlite3.connect(ferry_home / "ferry.db")
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            return [(t, conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in tables]
        finally:
            conn.close()

    before = state()
    result = ferry("apply", str(sample.infrastructure), str(sample.project))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"error: .*project\.yaml:\d+: process\[0\]\.steps\[1\]\.config_file_mode: "
                                            r"String should match pattern .*", lines[0]), result.stderr
    assert state() == before
