"""The Prefect UI as a person uses it, in headless Chromium (Debian's package, driven by Playwright): open the
project's ``deploy-release`` deployment, fill the run form (environment from the project's lifecycle, release from a
select of its releases, newest first), run it and see it complete; then answer a guided-failure pause through the
UI's resume form; then type a prompted secret into the form's password field and find it used by the deployment and
nowhere in Prefect. The UI talks to Prefect through ferry's Prefect proxy (``PREFECT_UI_API_URL`` → ``ferry
serve``'s ``/prefect/api``), as the README tells users to set it up.

Screenshots of each step are kept under ``artifacts/ui/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.orchestration.artifacts import dashboard_key
from tests.conftest import REPO
from tests.flows.serve_lab import ServedProject, make_served, parse_time
from tests.servers.prefect_server import PrefectServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "ui"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ferry_api_port() -> int:
    """Where ``ferry serve`` serves its API and, under /prefect, the Prefect proxy the UI is pointed at."""
    return _free_port()


@pytest.fixture(scope="module")
def ui_server(postgres, ferry_api_port: int) -> Iterator[PrefectServer]:  # type: ignore[no-untyped-def]
    """A Prefect server with its UI (the session's shared one runs without), database on PostgreSQL, its UI
    pointed at ferry's Prefect proxy."""
    url = postgres.create_database(extensions=("pg_trgm",)).replace("postgresql://", "postgresql+asyncpg://")
    server = PrefectServer(database_url=url, ui=True,
                           ui_api_url=f"http://127.0.0.1:{ferry_api_port}/prefect/api").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ui_server: PrefectServer, postgres,  # type: ignore[no-untyped-def]
           ferry_api_port: int) -> Iterator[ServedProject]:
    root = tmp_path_factory.mktemp("ui")
    lab = make_served(root, ui_server.env(), postgres.create_database(), environments={"Dev": 1, "Prod": 2},
                      serve_args=("--api-port", str(ferry_api_port)))
    fault = root / "fault"
    used = root / "used.sha256"  # what the deployment made of the prompted secret (its sha256)
    lab.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1},
                "steps": [{"name": "Install", "kind": "script",
                           "script": lab.project.script(
                               f'printf %s "$(ferry_var Sec.Prompt)" | sha256sum | cut -d" " -f1 > "{used}"; '
                               f'sleep 0.3; [ ! -e "{fault}" ]')}]}],
              guided_failure=True)
    project_file = lab.project.root / "project.yaml"
    document = yaml.safe_load(project_file.read_text())
    document["variables"].append({"name": "Sec.Prompt", "sensitive": True,
                                  "prompt": {"label": "Database password", "required": False}})
    project_file.write_text(yaml.safe_dump(document, sort_keys=False))
    lab.project.apply()
    lab.project.release("1.0.0")
    lab.project.release("1.1.0")
    lab.project.release("1.2.0")
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run flows/lab/install-debian-packages (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_run_form(page: Any, ui: str, served: ServedProject) -> None:
    """Deployments → the project's deploy-release deployment → Run → Custom run."""
    page.goto(f"{ui}/deployments", wait_until="networkidle")
    row = page.locator("tr", has=page.get_by_text("deploy-release", exact=True)).filter(
        has=page.get_by_text(served.name, exact=True))
    row.get_by_text(served.name, exact=True).click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/.*"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url(re.compile(r".*/run.*"))
    page.wait_for_load_state("networkidle")


def choose(page: Any, field: Any, value: str) -> None:
    """Pick ``value`` in one of the form's select boxes (it opens on the keyboard reliably; a click on the
    button sometimes toggles it open and shut before the options render, and on a loaded machine the chosen
    value can take a moment to show: so wait for it, and try again if it did not take)."""
    button = field.locator("button.p-select-button__control")
    option = page.get_by_role("option", name=value, exact=True)
    for _ in range(4):
        button.focus()
        page.keyboard.press("Space")
        try:
            option.wait_for(state="visible", timeout=3000)
            option.click()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and value not in button.inner_text():
                page.wait_for_timeout(100)
        except Exception:
            pass
        if value in button.inner_text():
            return
        page.keyboard.press("Escape")
    assert value in button.inner_text(), f"could not choose {value!r} in the form"


def fill_and_submit(page: Any, environment: str, release: str) -> None:
    environment_field = page.locator(".schema-form-property", has=page.get_by_text("environment", exact=True))
    options = _open_options(page, environment_field)
    assert options == ["Dev", "Prod"], options  # the project's lifecycle, nothing else
    page.keyboard.press("Escape")
    choose(page, environment_field, environment)
    choose(page, release_field_v1(page), release)  # a select of the project's releases (issue 16)


def release_field_v1(page: Any) -> Any:
    return page.locator(".schema-form-property", has=page.get_by_text("release (Optional)", exact=True))


def _open_options(page: Any, field: Any) -> list[str]:
    button = field.locator("button.p-select-button__control")
    for _ in range(4):
        button.focus()
        page.keyboard.press("Space")
        try:
            page.get_by_role("option").first.wait_for(state="visible", timeout=3000)
            break
        except Exception:
            continue
    return [t.strip() for t in page.get_by_role("option").all_inner_texts()]


def submit_and_find_run(page: Any, served: ServedProject, environment: str) -> str:
    """Submit the form; the UI goes back to the deployment. Returns the flow run the form created."""
    before = time.time()
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/[^/]+(\?.*)?$"))
    deployment_id = served.deployment()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = served.api.post("/flow_runs/filter", json={
            "deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC",
            "limit": 5}).json()
        fresh = [r for r in runs if r["parameters"].get("environment") == environment
                 and parse_time(r["created"]) >= before - 2]
        if fresh:
            return fresh[0]["id"]
        time.sleep(0.5)
    raise AssertionError("the form created no flow run")


def wait_badge(page: Any, ui: str, run_id: str, state: str, timeout: float = 180) -> None:
    """Open the run's page and wait until its state badge says ``state`` (reloading: a fresh read)."""
    badge = page.locator(".page-heading-flow-run__meta .state-badge")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
        try:
            badge.filter(has_text=state).wait_for(state="visible", timeout=5000)
            return
        except Exception:
            time.sleep(2)
    raise AssertionError(f"flow run {run_id} never showed {state} (last: {badge.inner_text()})")


def test_deploy_from_the_ui_form(page: Any, served: ServedProject, ui_server: PrefectServer) -> None:
    ui = ui_server.ui_url
    open_run_form(page, ui, served)
    shot(page, "01-deployment-run-form")
    releases = _open_options(page, release_field_v1(page))  # the project's releases, newest first (issue 16)
    shot(page, "01b-release-select")
    assert releases == ["latest", "1.2.0", "1.1.0", "1.0.0"], releases
    page.keyboard.press("Escape")
    fill_and_submit(page, "Dev", "1.0.0")
    shot(page, "02-form-filled-dev-1.0.0")
    run_id = submit_and_find_run(page, served, "Dev")
    wait_badge(page, ui, run_id, "Completed")
    assert page.get_by_text(f"{served.name} 1.0.0 → Dev").first.is_visible()
    shot(page, "03-run-completed")
    run = served.flow_run(run_id)
    assert run["state"]["type"] == "COMPLETED"
    assert run["parameters"]["environment"] == "Dev" and run["parameters"]["release"] == "1.0.0"
    record = served.record_of(run_id)
    assert (record["version"], record["environment"], record["state"]) == ("1.0.0", "Dev", "Success")
    # a run the form started tags itself, and leaves its progress table and the project's dashboard (issue 16)
    assert {f"project:{served.name}", "environment:Dev"} <= set(served.flow_run(run_id)["tags"])
    page.goto(f"{ui}/artifacts/key/{dashboard_key(served.name).replace('-dashboard', '-dev-progress')}",
              wait_until="networkidle")
    page.get_by_text("remaining").first.wait_for(state="visible", timeout=30000)
    shot(page, "04-run-progress-table")
    page.goto(f"{ui}/artifacts/key/{dashboard_key(served.name)}", wait_until="networkidle")
    page.get_by_text("1.0.0").first.wait_for(state="visible", timeout=30000)
    shot(page, "05-project-dashboard-artifact")


def test_guided_failure_answered_in_the_ui_resume_form(page: Any, served: ServedProject,
                                                       ui_server: PrefectServer) -> None:
    ui = ui_server.ui_url
    if not any(r["environment"] == "Dev" and r["state"] == "Success" for r in served.records()):
        assert served.project.deploy("1.0.0", "Dev").exit_code == 0
    fault = served.root / "fault"
    fault.touch()  # prod-01 and prod-02 will fail until a person fixes this
    open_run_form(page, ui, served)
    fill_and_submit(page, "Prod", "1.0.0")
    run_id = submit_and_find_run(page, served, "Prod")
    served.wait_state(run_id, "PAUSED", timeout=180)
    wait_badge(page, ui, run_id, "Paused")
    shot(page, "04-paused-on-guided-failure")

    fault.unlink()  # ...the person fixes the problem, then answers in the UI
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Guided failure").first.wait_for(state="visible")
    assert "Install failed on prod-01" in dialog.inner_text()
    action = dialog.locator(".schema-form-property", has=page.get_by_text("Action (Optional)", exact=True))
    choose(page, action, "retry")
    dialog.locator(".schema-form-property", has=page.get_by_text("Notes (Optional)", exact=True)).locator(
        "textarea").fill("disk cleaned up, retrying from the UI")
    shot(page, "05-resume-form-filled")
    dialog.get_by_role("button", name="Submit").click()
    wait_badge(page, ui, run_id, "Completed")
    shot(page, "06-resumed-and-completed")

    record = served.record_of(run_id)
    assert record["state"] == "Success"
    shown = served.ferry("deployment", "show", str(record["id"]), "--json")
    results = json.loads(shown.stdout)["results"]
    guided = [(r["target"], r["state"], r["message"]) for r in results if r["step"] == "Guided failure"]
    assert guided == [("prod-01", "retry", "disk cleaned up, retrying from the UI")]
    installs = [(r["target"], r["state"]) for r in results if r["step"] == "Install"]
    assert installs == [("prod-01", "failed"), ("prod-01", "success"), ("prod-02", "success")]


def fill_prompted_form_v1(page: Any, ui: str, served: ServedProject, secret: str, release: str) -> None:
    """The V1 (Vue) UI: it draws the ``format: password`` field as a plain text box (the value shows while
    typed), but what is typed still goes through ferry's proxy like any field."""
    open_run_form(page, ui, served)
    field = page.locator(".schema-form-property", has=page.get_by_text("Database password (Optional)", exact=True))
    field.last.locator("textarea, input").first.fill(secret)  # the innermost: the whole prompted object matches too
    fill_and_submit(page, "Dev", release)


def fill_prompted_form_v2(page: Any, ui: str, served: ServedProject, secret: str, release: str) -> None:
    """The V2 (React) UI, Prefect's default: a real password field (hidden, with a reveal button)."""
    deployment_id = served.deployment()["id"]
    page.goto(f"{ui}/v2/deployments/deployment/{deployment_id}/run?parameters=%7B%7D", wait_until="networkidle")
    password = page.locator("input[type=password]")
    password.wait_for(state="visible")
    assert password.count() == 1  # the project's one sensitive prompted variable
    password.fill(secret)
    page.get_by_role("button", name="Select environment").click()
    page.get_by_role("option", name="Dev", exact=True).click()
    # the select of the project's releases: it shows its default, latest (or a placeholder before it renders it)
    page.get_by_role("button", name=re.compile(r"^(latest|Select release)$")).click()
    page.get_by_role("option", name=release, exact=True).click()


@pytest.mark.parametrize(("ui_version", "release"), [("v2", "1.1.0"), ("v1", "1.2.0")])
def test_prompted_secret_typed_into_the_form_never_reaches_prefect(page: Any, served: ServedProject,
                                                                    ui_server: PrefectServer, ui_version: str,
                                                                    release: str, postgres: Any) -> None:
    """The form's field for the project's sensitive prompted variable: the run uses the value, and the value
    is found 0 times in Prefect's database (pg_dump), its API answers about the run, the files of the Prefect
    server and of ferry, or any process's command line and environment while it runs."""
    import hashlib
    import uuid

    from tests.secret_scan import (
        Report,
        pg_dump,
        postgres_checkpoint,
        prefect_api_responses,
        sampling,
        scan_bytes,
        scan_files,
        scan_json,
    )

    secret = f"Pa#{{ss W0rd}}/+=Ünï&%-{uuid.uuid4().hex}"
    used = served.root / "used.sha256"
    used.unlink(missing_ok=True)
    ui = ui_server.ui_url
    with sampling(secret) as sampler:
        (fill_prompted_form_v2 if ui_version == "v2" else fill_prompted_form_v1)(page, ui, served, secret, release)
        shot(page, f"07-{ui_version}-form-with-prompted-secret")
        run_id = submit_and_find_run(page, served, "Dev")
        run = served.wait_final(run_id)
    processes = sampler.stop()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert used.read_text().strip() == hashlib.sha256(secret.encode()).hexdigest()
    assert "prompted" not in run["parameters"] and run["parameters"]["prompted_ref"].startswith("bundle:")
    record = served.record_of(run_id)
    assert (record["version"], record["environment"], record["state"]) == (release, "Dev", "Success")
    page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
    shot(page, f"08-{ui_version}-secret-run-completed")

    report = Report()
    assert ui_server.database_url is not None
    report.merge(scan_bytes(secret, pg_dump(ui_server.database_url), "Prefect database (pg_dump)", "database dumps"))
    report.merge(scan_json(secret, prefect_api_responses(served.api, run_id)))
    postgres_checkpoint(postgres.admin_url)  # then the cluster's raw files: pages, TOAST, WAL
    report.merge(scan_files(secret, [ui_server.home, served.root / "ferry-home", postgres.data]))
    report.merge(scan_bytes(secret, served.serve_log().encode(), "ferry serve output", "outputs"))
    report.merge(processes)
    print(report)
    assert report.total == 0, str(report)
