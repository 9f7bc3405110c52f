"""The interactive path in a real browser: JupyterLab in headless Chromium, driven like a user.

Notebook 03 is run cell by cell: the form renders as widgets grouped by section with each field's help,
a bad value is refused as a short message with its field highlighted (no traceback), the mode is switched
to ReadOnly in its dropdown, the plan says so (its table wraps long values), apply refuses with a short
message until **Confirm apply** is pressed (which then reads "Confirmed ✓" and is disabled), and then the
connected registry exists in the sandbox as ReadOnly, and the apply left a sealed run folder that
`crlib archive verify` accepts, as does the new one the **Save record** button writes after a save.
The steps of 04 and 05 then run in-process, and notebook 06
proves the pull and the refused push through the device endpoint. Screenshots go to the artifacts dir.
A last test starts `make lab`'s script and checks that its JupyterLab serves the widgets extension and
does not ask about Jupyter news.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from lab_server import free_port, get, isolated_env, stop_process, wait_for_status
from playwright.sync_api import Locator, Page, expect

from crlib import archive
from crlib.cli import main

pytestmark = pytest.mark.browser

PROMPT_DONE = re.compile(r"^\[\d+\]:$")
INDICATOR = ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator"
ROOT = Path(__file__).resolve().parents[2]
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


class Notebook:
    """One notebook open in JupyterLab, its cells found by their source and run with Ctrl+Enter."""

    def __init__(self, page: Page, lab, site, name: str):
        self.page, self.lab, self.name = page, lab, name
        self.sources = ["".join(c["source"]) for c in json.loads((site.notebooks / name).read_text())["cells"]]

    def open(self) -> Notebook:
        workspace = re.sub(r"\W", "", self.name.split("-")[0])  # a fresh workspace per notebook: one panel
        self.page.goto(f"{self.lab.url}/lab/workspaces/nb{workspace}/tree/{self.name}?token={self.lab.token}")
        self.panel = self.page.locator(".jp-NotebookPanel")
        expect(self.panel).to_have_count(1, timeout=60_000)
        expect(self.panel.locator(".jp-NotebookPanel-toolbar .jp-KernelName")).to_have_text(re.compile("Python 3"),
                                                                                             timeout=60_000)
        expect(self.page.locator(INDICATOR)).to_have_attribute("data-status", "idle", timeout=60_000)
        expect(self.page.locator(".jp-Dialog")).to_have_count(0)
        self.page.evaluate("window.jupyterapp.shell.collapseLeft()")  # room for the tables in screenshots
        return self

    def index(self, source: str) -> int:
        return next(i for i, text in enumerate(self.sources) if source in text)

    def cell(self, source: str) -> Locator:
        return self.panel.locator(f'.jp-Notebook .jp-Cell[data-windowed-list-index="{self.index(source)}"]')

    def run(self, source: str, *, error: bool = False, timeout: float = 120_000) -> Locator:
        """Select the cell (its prompt, in command mode) and press Ctrl+Enter; wait for [N]: and idle.
        Unless an error is expected, the cell must show none."""
        cell = self.cell(source)
        cell.scroll_into_view_if_needed()
        prompt = cell.locator(".jp-InputArea-prompt")
        before = prompt.inner_text()
        cell.locator(".jp-InputPrompt").click()
        expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
        self.page.keyboard.press("Control+Enter")
        expect(prompt).not_to_have_text(before, timeout=timeout)
        expect(prompt).to_have_text(PROMPT_DONE, timeout=timeout)
        expect(self.page.locator(INDICATOR)).to_have_attribute("data-status", "idle", timeout=timeout)
        output = cell.locator(".jp-OutputArea")
        if not error:
            expect(output).not_to_contain_text("Traceback")
            expect(cell.locator(ERROR_OUTPUT)).to_have_count(0)
        return cell


def rendered_widgets(cell: Locator) -> None:
    output = cell.locator(".jp-OutputArea")
    expect(output).not_to_contain_text("Error displaying widget")
    expect(output).not_to_contain_text("Loading widget")
    expect(output).not_to_contain_text("<crlib.")  # a raw repr instead of the widgets


def open_form(page: Page, lab, lab_site, name: str) -> tuple[Notebook, Locator]:
    """Open a notebook, run its parameters, open_page and form cells; the rendered form."""
    nb = Notebook(page, lab, lab_site, name).open()
    nb.run("params_file: str")
    nb.run("notebook.open_page(")
    cell = nb.run("form = page.form()")
    rendered_widgets(cell)
    form = cell.locator(".jp-OutputArea-output .crlib-form")
    expect(form).to_be_visible()
    return nb, form


def table(cell: Locator) -> list[dict[str, str]]:
    """The pandas table a cell shows, as rows of {column: text}."""
    frame = cell.locator(".jp-OutputArea-output table.dataframe")
    expect(frame).to_be_visible()
    columns = frame.locator("thead th").all_inner_texts()[1:]  # the first is the index's
    rows = frame.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText))")
    cut = [value for row in rows for value in row if value.endswith("...")]
    assert not cut, f"the table shows values cut short (pandas' display.max_colwidth): {cut}"
    return [dict(zip(columns, row, strict=True)) for row in rows]


def shoot(target: Locator | Page, artifacts: Path, name: str) -> Path:
    path = artifacts / name
    target.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def short_refusal(cell: Locator, text: str) -> Locator:
    """A refusal shown as crlib's styled message, its traceback suppressed: the cell failed (Run All
    stops there) with one short line, and no frame of a traceback shows."""
    message = cell.locator(".jp-OutputArea-output .crlib-message-error")
    expect(message).to_be_visible()
    expect(message).to_contain_text(text)
    output = cell.locator(".jp-OutputArea")
    expect(output).not_to_contain_text("Traceback")
    expect(output).not_to_contain_text("File ")
    expect(cell.locator(ERROR_OUTPUT)).to_have_text(re.compile(r"^\w+: stopped here; the message above says what to "
                                                               r"do\s*$"))
    return message


def confirm_and_apply(nb: Notebook, artifacts: Path | None = None) -> Locator:
    """The confirmation button; apply before pressing it is refused (a short message, no traceback);
    press it (it then says "Confirmed ✓" and is disabled); apply."""
    confirm = nb.run("page.confirmation()")
    button = confirm.locator(".jp-OutputArea-output button.crlib-confirm")
    expect(button).to_be_visible()
    expect(button).to_contain_text("Confirm apply")
    expect(button).to_be_enabled()
    expect(button).not_to_have_class(re.compile(r"\bmod-active\b"))
    rendered_widgets(confirm)

    refused = nb.run("page.apply()", error=True)
    short_refusal(refused, "press 'Confirm apply' above")
    expect(refused.locator(".crlib-message-error")).to_contain_text("Not applied: nothing was written.")
    if artifacts is not None:
        shoot(refused.locator(".jp-OutputArea"), artifacts, f"{nb.name[:2]}-not-confirmed.png")

    button.click()
    expect(button).to_have_class(re.compile(r"\bmod-active\b"))
    expect(button).to_have_text(re.compile("Confirmed ✓"))
    expect(button).to_be_disabled()
    expect(button).to_have_class(re.compile(r"\bmod-success\b"))
    if artifacts is not None:
        shoot(confirm.locator(".jp-OutputArea"), artifacts, f"{nb.name[:2]}-confirmed.png")
    return nb.run("page.apply()")


def wraps(cell: Locator) -> None:
    """The cell's table wraps long values in its cells and fits its output area (no squeezed columns
    pushed off to the side)."""
    frame = cell.locator(".jp-OutputArea-output .crlib-table table.dataframe")
    expect(frame).to_be_visible()
    assert frame.locator("td").first.evaluate("td => getComputedStyle(td).whiteSpace") == "pre-wrap"
    assert frame.evaluate("t => t.getBoundingClientRect().width <= "
                          "t.closest('.jp-OutputArea-output').getBoundingClientRect().width + 1")


def run_folders(lab_site) -> list[Path]:
    runs = lab_site.notebooks / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def test_03_connected_registry_form_plan_confirm_apply(page, lab, lab_site, artifacts):
    data = lab_site.data
    nb, form = open_form(page, lab, lab_site, "03-connected-registry.ipynb")
    expect(form).to_contain_text(data["site"])
    section = form.locator(".crlib-section-connected-registry")
    expect(section.locator(".crlib-section-title")).to_have_text("Connected registry")
    expect(section).to_contain_text("5-40 letters and digits, starting with a letter")  # the Field's description
    expect(form.locator(".crlib-field-connected-registry-name input")).to_have_value(data["connected_registry"]["name"])
    mode = form.locator(".crlib-field-connected-registry-mode select")
    expect(mode).to_have_value("ReadWrite")
    expect(form.locator(".crlib-field-connected-registry-repositories input")).to_have_value("hello-world")
    expect(form.locator(".crlib-field-connected-registry-sync-schedule input")).to_have_value("* * * * *")
    # A bad value: the read is refused with a short message, and its field is highlighted.
    schedule = form.locator(".crlib-field-connected-registry-sync-schedule")
    schedule.locator("input").fill("every minute")
    refused = nb.run("page.read_form(form)", error=True)
    short_refusal(refused, "connected_registry.sync_schedule")
    expect(schedule).to_have_class(re.compile(r"\bcrlib-field-error\b"))
    expect(form.locator(".crlib-field-error")).to_have_count(1)
    expect(form.locator(".crlib-form-message .crlib-message-error")).to_contain_text("five-field cron expression")
    assert schedule.locator("input").evaluate("i => getComputedStyle(i).borderTopColor") == "rgb(198, 40, 40)"
    shoot(form, artifacts, "03-form-error.png")
    shoot(refused.locator(".jp-OutputArea"), artifacts, "03-form-error-message.png")
    schedule.locator("input").fill("* * * * *")

    mode.select_option("ReadOnly")
    expect(mode).to_have_value("ReadOnly")

    values = {row["parameter"]: row for row in table(nb.run("page.read_form(form)"))}
    expect(form.locator(".crlib-field-error")).to_have_count(0)
    expect(form.locator(".crlib-form-message .crlib-message-error")).to_have_count(0)
    shoot(form, artifacts, "03-form.png")
    assert values["connected_registry.mode"]["value"] == "ReadOnly"
    assert values["connected_registry.mode"]["source"] == "form"
    assert values["connected_registry.name"]["source"] == "parameter file"

    planned = nb.run("page.plan()")
    wraps(planned)
    shoot(planned.locator(".jp-OutputArea"), artifacts, "03-plan.png")
    plan = table(planned)
    assert {row["step"] for row in plan} == {"definition", "settings"}
    assert all(row["status"] == "planned" for row in plan), plan
    assert any("ReadOnly" in row["change"] for row in plan if row["step"] == "definition"), plan

    before = run_folders(lab_site)
    applied = confirm_and_apply(nb, artifacts)
    results = {row["step"]: row for row in table(applied)}
    assert list(results) == ["definition", "settings"]
    assert {step: row["status"] for step, row in results.items()} == {"definition": "created", "settings": "created"}
    wraps(applied)
    shoot(applied.locator(".jp-OutputArea"), artifacts, "03-apply.png")

    # The apply is recorded: a sealed run folder beside the notebook that `crlib archive verify` accepts.
    expect(applied.locator(".crlib-record .crlib-message-note")).to_contain_text("Recorded:")
    recorded = [p for p in run_folders(lab_site) if p not in before]
    assert len(recorded) == 1, recorded
    assert main(["archive", "verify", str(recorded[0])]) == 0
    record = archive.read_record(recorded[0])
    assert (record["source"], record["status"], record["kind"]) == ("jupyterlab", "succeeded", "deploy"), record
    assert [s["step"] for s in record["steps"]] == ["definition", "settings"]
    # Save the notebook, press Save record: a new sealed folder holds the notebook with the apply's outputs.
    nb.page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    save = applied.locator("button.crlib-save-record")
    save.click()
    expect(applied.locator(".crlib-save-record-status")).to_contain_text("Saved record:")
    saved = [p for p in run_folders(lab_site) if p not in before and p != recorded[0]]
    assert len(saved) == 1, saved
    assert main(["archive", "verify", str(saved[0])]) == 0
    assert archive.read_record(saved[0])["supersedes"] == recorded[0].name
    assert "crlib-table" not in (recorded[0] / "notebooks" / "03-connected-registry.ipynb").read_text()
    assert "crlib-table" in (saved[0] / "notebooks" / "03-connected-registry.ipynb").read_text()  # the outputs
    shoot(applied.locator(".jp-OutputArea"), artifacts, "03-record.png")

    details = table(nb.run("page.details()"))
    assert {row["step"] for row in details} >= {"definition"}, details
    shoot(page, artifacts, "03-notebook.png")

    site = lab_site.site()
    cr = lab_site.context().clients.acr.connected_registries.get(site.resource_group, site.registry.name,
                                                                 site.connected_registry.name)
    assert cr.mode == "ReadOnly"


def test_06_checks_pull_and_refused_push(page, lab, lab_site, artifacts):
    # The operator records the mode chosen in 03's form in the parameter file, which every later
    # notebook reads; then 04 and 05 run in-process (03's steps too, unchanged after the test above).
    lab_site.data["connected_registry"]["mode"] = "ReadOnly"
    lab_site.write()
    lab_site.run("definition", "settings", "manifest", "deploy", "access")

    nb, form = open_form(page, lab, lab_site, "06-checks.ipynb")
    expect(form.locator(".crlib-field-checks-pull-image input")).to_have_value(re.compile(r"^hello-world:"))
    expect(form.locator(".crlib-field-checks-push-repository input")).not_to_have_value("")
    shoot(form, artifacts, "06-form.png")

    values = {row["parameter"]: row for row in table(nb.run("page.read_form(form)"))}
    assert all(row["source"] in ("parameter file", "notebook") for row in values.values()), values

    plan = table(nb.run("page.plan()"))
    assert [row["step"] for row in plan] == ["checks", "checks"]  # > run: the pull, then the push
    assert "expecting a refusal" in plan[1]["change"], plan

    applied = confirm_and_apply(nb)
    results = table(applied)
    assert [row["step"] for row in results] == ["checks"]
    assert results[0]["status"] == "passed", results  # ReadOnly: pulled, and the push refused

    cell = nb.run("page.details()")
    details = {row["detail"]: row["value"] for row in table(cell)}
    assert details["mode"] == "ReadOnly"
    pull, push = json.loads(details["pull"]), json.loads(details["push"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", pull["digest"]), pull
    assert push["refused_with"] == 403 and push["read_only_refusal"] is True, push
    assert push["refusal"] == "This operation is not allowed on this registry.", push
    shoot(cell.locator(".jp-OutputArea"), artifacts, "06-details.png")
    shoot(page, artifacts, "06-notebook.png")


def test_make_lab_serves_the_notebooks_with_the_widgets_extension(tmp_path):
    """scripts/lab.sh (what `make lab` runs): a sandbox, then JupyterLab with ipywidgets' extension,
    whose news setting is "false" by default, so it never asks "get notified about official Jupyter news?"
    (JupyterLab asks while the setting is "none")."""
    port, token = free_port(), secrets.token_hex(16)
    # The tests' own settings without the news one: only the script may set it here.
    env = isolated_env(tmp_path / "jupyter", {"@jupyterlab/docmanager-extension:plugin": {"autosave": False}})
    env["CRLIB_SANDBOX_DIR"] = str(tmp_path / "sandbox")
    log_path = tmp_path / "lab.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(["bash", "scripts/lab.sh", f"--port={port}", f"--IdentityProvider.token={token}",
                                 "--ServerApp.port_retries=0"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_status(url, token, proc, log_path, timeout=90)
        page = get(f"{url}/lab?token={token}")
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      page, re.S).group(1))
        extensions = [e["name"] for e in config.get("federated_extensions", [])]
        assert "@jupyter-widgets/jupyterlab-manager" in extensions, extensions
        assert "python3" in json.loads(get(f"{url}/api/kernelspecs?token={token}"))["kernelspecs"]
        listing = {item["name"] for item in json.loads(get(f"{url}/api/contents?token={token}"))["content"]}
        assert "03-connected-registry.ipynb" in listing, listing
        notification = json.loads(get(f"{url}/lab/api/settings/@jupyterlab/apputils-extension:notification"
                                      f"?token={token}"))
        assert notification["schema"]["properties"]["fetchNews"]["default"] == "false", notification["schema"]
        assert "fetchNews" not in notification.get("settings", {}), notification  # a default: the user's choice wins
        assert (tmp_path / "sandbox").is_dir()
    finally:
        stop_process(proc)
        subprocess.run([str(Path(sys.executable).with_name("crlib")), "sandbox", "stop", "--state-dir",
                        str(tmp_path / "sandbox")], check=False, timeout=60)
