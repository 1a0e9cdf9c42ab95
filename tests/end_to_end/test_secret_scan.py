"""Secret scan (issue 13's standing suite): a full deployment on the real lab (SSH targets, a real Prefect
server on PostgreSQL) with four sensitive values — one inline in the YAML, one ``from_env``, one prompted at
deploy time, one ``from_env`` in an included library variable set — whose script prints each of them plainly
and base64-, hex-, URL- and JSON-encoded. Afterwards none of them, in any of those forms (tests/secret_scan.py:
plain, base64 at every alignment, base64url, hex, HEX, URL-encoded, JSON-escaped, UTF-16), is found in:

- every file under FERRY_HOME and PREFECT_HOME;
- Prefect's database (pg_dump) and what its API says about the flow run (logs, states, artifacts, events);
- every CLI output of the session (apply, release create, deploy --wait, deployment show);
- ``/proc/*/cmdline`` and ``/proc/*/environ`` sampled every 50 ms while the deployment runs;
- the targets' temporary directories (``/tmp/ferry.*`` the SSH transport creates, local scratch folders)
  and the lab user's home on the target.

The deployment really used the values: the target holds their sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.flows.local_project import LocalProject
from tests.secret_scan import Report, pg_dump, prefect_api_responses, sampling, scan_bytes, scan_files, scan_json
from tests.servers.ssh_lab import LabInfo

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TARGET = "dev-01"

SCRIPT = r"""
for name in Inline.Secret Env.Secret Prompt.Secret Lib.Secret; do
  value="$(ferry_var "$name")"
  printf '%s' "$value" | sha256sum | cut -d' ' -f1 >> /srv/secret-scan.sha256
  echo "plain $name: $value"
  echo "base64 $name: $(printf '%s' "$value" | base64 -w0)"
  echo "basic auth: $(printf 'deploy:%s' "$value" | base64 -w0)"
  echo "hex $name: $(printf '%s' "$value" | od -An -tx1 | tr -d ' \n')"
  echo "url $name: $(printf '%s' "$value" |
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))')"
  echo "json $name: $(printf '%s' "$value" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')"
done
"""


def _secret(kind: str) -> str:
    """Characters that make every encoding differ from the plain text, and a random part."""
    return f"{kind}-Pa#ss W0rd/+=Ünï&%\"q'-{uuid.uuid4().hex}"


def _temp_dirs(before: set[Path]) -> list[Path]:
    """Temporary folders ferry's transports made during the test (/tmp is the same on the lab's targets)."""
    found = {p for pattern in ("ferry.*", "ferry-run-*") for p in Path("/tmp").glob(pattern)}
    return sorted(found - before)


def test_no_sensitive_value_is_found_anywhere(lab: LabInfo, tmp_path: Path, ferry: Any, ferry_home: Path,
                                              prefect_server: Any, prefect_env: dict[str, str]) -> None:
    secrets = {"inline": _secret("inline"), "env": _secret("env"), "prompt": _secret("prompt"),
               "library": _secret("library")}
    temp_before = {p for pattern in ("ferry.*", "ferry-run-*") for p in Path("/tmp").glob(pattern)}
    srv = lab.lab.app_root(TARGET)
    (srv / "secret-scan.sha256").unlink(missing_ok=True)

    infra = yaml.safe_load(lab.lab.infrastructure_file.read_text())
    infra["lifecycles"] = [{"name": "Default", "phases": [{"name": "Dev", "environments": ["Development"]}]}]
    infra["targets"] = [t for t in infra["targets"] if t["name"] == TARGET]
    (tmp_path / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))
    name = f"Scan-{uuid.uuid4().hex[:6]}"
    # a library variable set's sensitive value (issue 14 item 4), included by the project
    library = {"library_variable_set": f"{name}-Lib", "variables": [
        {"name": "Lib.Secret", "sensitive": True, "value": {"from_env": "SCAN_LIB_SECRET"}}]}
    (tmp_path / "library.yaml").write_text(yaml.safe_dump(library, sort_keys=False))
    project = {"project": name, "lifecycle": "Default", "include": [f"{name}-Lib"],
               "process": [{"name": "Use secrets", "kind": "script", "roles": ["web"], "script": SCRIPT}],
               "variables": [
                   {"name": "Inline.Secret", "sensitive": True, "value": secrets["inline"]},
                   {"name": "Env.Secret", "sensitive": True, "value": {"from_env": "SCAN_ENV_SECRET"}},
                   {"name": "Prompt.Secret", "sensitive": True, "prompt": {"label": "Prompted secret"}}]}
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    outputs: dict[str, str] = {}
    # the from_env value lives in the environment of `ferry apply` only (where the operator put it)
    applied = ferry("apply", str(tmp_path / "infrastructure.yaml"), str(tmp_path / "library.yaml"),
                    str(tmp_path / "project.yaml"),
                    env={"SCAN_ENV_SECRET": secrets["env"], "SCAN_LIB_SECRET": secrets["library"]})
    assert applied.exit_code == 0, applied.output
    outputs["apply"] = applied.output
    created = ferry("release", "create", name, "--version", "1.0.0")
    assert created.exit_code == 0, created.output
    outputs["release create"] = created.output

    with sampling(secrets["inline"]) as inline_s, sampling(secrets["env"]) as env_s, \
            sampling(secrets["prompt"]) as prompt_s, sampling(secrets["library"]) as library_s:
        deployed = ferry("deploy", name, "1.0.0", "--to", "Development", "--wait", "--local",
                         "--variable", "Prompt.Secret", input=secrets["prompt"] + "\n")
    samplers = {"inline": inline_s, "env": env_s, "prompt": prompt_s, "library": library_s}
    outputs["deploy"] = deployed.output
    assert deployed.exit_code == 0, deployed.output
    assert "********" in deployed.output  # the script printed them: the masker caught every form

    used = (srv / "secret-scan.sha256").read_text().split()
    assert used == [hashlib.sha256(secrets[k].encode()).hexdigest() for k in ("inline", "env", "prompt", "library")]

    project_runs = LocalProject(tmp_path, ferry, name=name)
    (record,) = project_runs.deployments()
    assert record["state"] == "Success"
    shown = ferry("deployment", "show", str(record["id"]), "--json")
    outputs["deployment show"] = shown.output
    flow_run_id = record.get("flow_run_id") or project_runs.show(record["id"]).get("flow_run_id")
    assert flow_run_id, record

    api = httpx.Client(base_url=prefect_env["PREFECT_API_URL"], timeout=30)
    responses = prefect_api_responses(api, flow_run_id)
    database = pg_dump(prefect_server.database_url)
    temp_dirs = _temp_dirs(temp_before)
    target_home = lab.lab.user_home(TARGET)
    reports: dict[str, Report] = {}
    for kind, secret in secrets.items():
        report = Report()
        report.merge(scan_files(secret, [ferry_home, Path(prefect_server.home), *temp_dirs, target_home]))
        report.merge(scan_bytes(secret, database, "Prefect database (pg_dump)", "database dumps"))
        report.merge(scan_json(secret, responses))
        for command, text in outputs.items():
            report.merge(scan_bytes(secret, text.encode(), f"ferry {command} output", "outputs"))
        report.merge(samplers[kind].stop())
        reports[kind] = report
    summary = "\n".join(f"{kind}: {report}" for kind, report in reports.items())
    print(summary)
    assert all(report.total == 0 for report in reports.values()), summary
    for report in reports.values():  # it looked: the store, key and PREFECT_HOME files at least, many processes
        assert report.looked_at["samples"] > 10 and report.looked_at["files"] >= 3, str(report)
        assert report.looked_at["distinct processes"] > 20 and report.looked_at["database dumps"] == 1, str(report)
    assert any(p.name.endswith(".db") for p in ferry_home.rglob("*")), "the SQLite store was not under FERRY_HOME"
    # the deploy output really contained the encodings, masked: the script ran its lines
    assert len(re.findall(r"^.*(plain|base64|hex|url|json) \w+\.Secret: \*{8}", deployed.output, re.M)) >= 12, \
        deployed.output
    assert not os.environ.get("SCAN_ENV_SECRET") and not os.environ.get("SCAN_LIB_SECRET")
