"""`crlib archive report` in a real browser: the HTML file of a run (00-06 against the sandbox) opens
from disk in headless Chromium with every network request refused, shows the summary (kind, status,
verification, signer, steps and the checks' evidence) and the archived notebooks. Screenshots of the
summary and of notebook 06 go to the artifacts dir."""

from __future__ import annotations

import pytest
import yaml
from playwright.sync_api import expect
from testkit import site_data

from crlib import archive, runbook, runner
from crlib.cli import main

pytestmark = pytest.mark.browser


@pytest.fixture
def reported_run(sandbox, tmp_path):
    """A deployed test site's run folder and its report, written by the command line."""
    from crlib.context import open_context
    from crlib.params import load_file

    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path / "secrets")}
    params = tmp_path / "site.yaml"
    params.write_text(yaml.safe_dump(data))
    run = runner.Run.create(params, runs_dir=tmp_path / "runs", phases=runner.select_phases(None), plan=False)
    try:
        assert run.run(progress=False)["status"] == "succeeded", run.record["failed"]
        assert main(["archive", "report", str(run.dir)]) == 0
        yield run.dir, run.dir.parent / f"{run.dir.name}.html"
    finally:
        runbook.run(open_context(load_file(params)), only=["teardown"])


def test_the_report_opens_offline_and_shows_the_summary(reported_run, page, artifacts):
    run_dir, report_file = reported_run
    fetched: list[str] = []

    def refuse(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:  # a self-contained report fetches nothing
            fetched.append(route.request.url)
            route.abort()

    page.route("**/*", refuse)
    page.goto(report_file.as_uri())
    summary = page.locator("#summary")
    expect(summary).to_be_visible()
    expect(page.locator("h1").first).to_have_text(f"crlib run {run_dir.name}")  # the notebooks' own follow
    facts = summary.locator("table").first
    expect(facts.locator("tr", has_text="kind")).to_contain_text("deploy")
    expect(facts.locator("tr", has_text="status")).to_contain_text("succeeded")
    expect(facts.locator("tr", has_text="signed by")).to_contain_text(archive.signature(run_dir).key_id)
    expect(page.locator("#verification")).to_contain_text("Verified")
    checks = summary.locator("tr", has_text="pulled hello-world:latest through")
    expect(checks).to_contain_text("passed")
    expect(checks).to_contain_text("seen in the cloud registry at")
    path = artifacts / "report-summary.png"
    summary.screenshot(path=str(path))
    print(f"screenshot: {path}")

    for phase in runbook.DEFAULT_PHASES:  # every archived notebook follows, rendered by nbconvert
        expect(page.locator(f"section.notebook#notebook-{phase.notebook}")).to_have_count(1)
    notebook = page.locator("section.notebook#notebook-06-checks")
    notebook.scroll_into_view_if_needed()
    expect(notebook).to_contain_text("pulled hello-world:latest through")
    path = artifacts / "report-06-checks.png"
    notebook.screenshot(path=str(path))
    print(f"screenshot: {path}")
    assert fetched == []
