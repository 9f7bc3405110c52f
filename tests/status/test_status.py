"""`crlib status` against the sandbox: a healthy site reads healthy and nothing is written; an offline
device and a client token close to expiry make it exit 1 naming both; notebook 11 plots the unhealthy
site; bad input is one line and exit 2. The rules themselves are checked with a fixed clock."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from testkit import site_data, wait_for

from crlib import params, status
from crlib.cli import main
from crlib.sandbox import control

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "11-status.ipynb"
# The simulated devices' own requests (they sync in the background): not the status command's.
DEVICE_AGENTS = ("python-requests/", "Docker-Client/")


def from_crlib(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not (agent := r.get("user_agent") or "").startswith(DEVICE_AGENTS)
            and not agent.rsplit(" ", 1)[-1].startswith("IoTEdgeDevice/")]


def reads_only(rows: list[dict]) -> list[str]:
    """What was not a read: a write the sandbox recorded, or any PUT/PATCH/DELETE; a POST only for a
    token (Entra ID, ACR's token exchange) or listKeys, which read."""
    found = []
    for row in from_crlib(rows):
        path = row["path"].lower()
        post_read = row["method"] == "POST" and (path.endswith(("/token", "/listkeys")) or "/oauth2" in path)
        if row["wrote"] or row["method"] in ("PUT", "PATCH", "DELETE") or (row["method"] == "POST" and not post_read):
            found.append(f"{row['method']} {row['path']}")
    return found


def test_a_healthy_site_exits_0_with_one_healthy_row_and_writes_nothing(sites, request_log, capsys):
    code = main(["status", str(sites.healthy_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].split()[:2] == ["site", "host"] and "healthy: all 1 site" in out
    row = [line for line in lines if line.startswith(sites.healthy["site"])]
    assert len(row) == 1 and "True" in row[0] and ("Online" in row[0] or "Syncing" in row[0]), out
    rows = request_log()
    assert from_crlib(rows), "the status call sent nothing?"
    assert reads_only(rows) == []
    # One list per registry for connected registries and tokens; no GET of a single one.
    paths = [r["path"].lower() for r in from_crlib(rows) if r["method"] == "GET"]
    assert sum(p.endswith("/connectedregistries") for p in paths) == 1
    assert sum(p.endswith("/tokens") for p in paths) == 1


def test_an_offline_device_and_an_expiring_client_token_exit_1_naming_both(sites, sandbox, request_log, capsys):
    a, b = sites.healthy, sites.expiring
    site = params.load(b)
    control.device_offline(sandbox, b["device"]["id"], 3600, hub=b["hub"]["name"])  # simulated seconds
    try:
        wait_for(lambda: status.read_status([site])[0].connection_state == "Offline", timeout=30,
                 what="the connected registry to turn Offline")
        code = main(["status", str(sites.inventory)])
        out = capsys.readouterr().out
        assert code == 1, out
        token = b["client_access"]["tokens"][0]["name"]
        assert f"  {b['site']}: connected registry is Offline" in out
        assert f"  {b['site']}: client token {token} expire" in out  # expires in 3 days (...), by the sandbox's clock
        assert f"{a['site']}:" not in out.split("unhealthy:")[1], out  # the healthy site has no reason
        assert "unhealthy: 1 of 2 sites" in out

        assert main(["status", str(sites.inventory), "--json"]) == 1
        document = json.loads(capsys.readouterr().out)
        assert document["healthy"] is False
        shown = {s["site"]: s for s in document["sites"]}
        assert list(shown) == [a["site"], b["site"]]
        assert shown[a["site"]]["healthy"] is True and shown[a["site"]]["reasons"] == []
        assert shown[b["site"]]["healthy"] is False and shown[b["site"]]["connection_state"] == "Offline"
        reasons = shown[b["site"]]["reasons"]
        assert any("connected registry is Offline" in r for r in reasons)
        assert any(f"client token {token} expire" in r for r in reasons)
        expiring = shown[b["site"]]["client_tokens"][0]
        assert expiring["token"] == token and expiring["days"] < 3.01 and expiring["expires"].endswith("Z")
        assert shown[a["site"]]["client_tokens"][0]["days"] > 14
        assert shown[a["site"]]["last_sync_time"].endswith("Z")
        assert "SharedAccessKey" not in json.dumps(document)
        assert reads_only(request_log()) == []
    finally:
        control.device_offline(sandbox, b["device"]["id"], 0, hub=b["hub"]["name"])


def test_the_status_notebook_plots_the_unhealthy_site(sites, tmp_path):
    import papermill as pm

    output = tmp_path / "11-status.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(output), cwd=str(tmp_path), progress_bar=False,
                        parameters={"params_file": str(sites.inventory), "interactive": False})
    outputs = [o for cell in json.loads(output.read_text())["cells"] if cell["cell_type"] == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"
    html = ["".join(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
    plotted = [h for h in html if "days to expiry" in h and "sync age (min)" in h]
    assert len(plotted) == 1, html
    assert sites.expiring["site"] in plotted[0] and sites.healthy["site"] in plotted[0]
    rows = plotted[0].split("<tr")
    assert any(sites.expiring["site"] in r and "False" in r for r in rows)
    assert any(sites.healthy["site"] in r and "True" in r for r in rows)
    reasons = [h for h in html if "reason" in h and sites.expiring["site"] in h and "client token" in h]
    assert reasons, html
    assert any("#fdecea" in h and sites.expiring["site"] in h for h in html)  # the table, coloured by health


def test_the_status_notebook_declares_its_parameters_with_help():
    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOK))
    assert list(declared) == ["params_file", "overrides", "interactive"]
    assert all(spec["help"] for spec in declared.values())


def test_bad_input_is_one_line_naming_the_file_and_field_with_exit_2(sandbox, tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert main(["status", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "Traceback" not in err

    data = site_data(sandbox)
    data["status"] = {"expiry_warning_days": -1}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["status", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:" in err and "status.expiry_warning_days" in err, err

    assert main(["status", str(missing.with_name("x.yaml")), "--sites", "a"]) == 2
    assert main(["status", str(tmp_path / "bad.yaml"), "-p", "status.sync_grace=soon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "status.sync_grace" in err[-1]


# -- the rules, on a fixed clock ------------------------------------------------------------------------
NOW = dt.datetime(2026, 12, 2, 12, 0, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(("schedule", "window", "now", "due"), [
    ("* * * * *", None, NOW, dt.datetime(2026, 12, 2, 11, 50, tzinfo=dt.UTC)),
    ("0 0 * * *", None, NOW, dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC)),
    # 00:05: today's midnight sync may still be running late (grace), so yesterday's is the one due.
    ("0 0 * * *", None, NOW.replace(hour=0, minute=5), dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)),
    # A 3 h window from 10:00 closes at 13:00 (not yet): the window that counts opened yesterday.
    ("0 10 * * *", "PT3H", NOW, dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)),
    ("0 10 * * *", "PT3H", NOW.replace(hour=13, minute=11), dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)),
])
def test_the_sync_due_time_follows_the_schedule_window_and_grace(schedule, window, now, due):
    import isodate

    grace = dt.timedelta(minutes=10)
    assert status.sync_due(schedule, isodate.parse_duration(window) if window else None, grace, now) == due


def test_expiry_words():
    def expiry(days: float) -> status.TokenExpiry:
        return status.TokenExpiry("t", "client token", NOW + dt.timedelta(days=days), days)

    assert status.expiry_words(expiry(2.98)) == "expires in 3 days (2026-12-05)"
    assert status.expiry_words(expiry(0.25)) == "expires in 6 hours (2026-12-02)"
    assert status.expiry_words(expiry(-2.0)) == "expired 2 days ago (2026-11-30)"
