"""The checks reach the device where the operator says it is, and trust it with the device's own CA:
a missing CA fails at once naming device.ca_cert, the cloud registry's endpoints are refused
before any request, and on-device mode writes a script and records the checks as pending."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from test_deploy_checks import TIMEOUT
from test_manifest import log_from_now

from crlib import retries, runbook
from crlib.azure.readers import registry as get_registry
from crlib.errors import ParameterError, StepFailed
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.checks import SyncWait, check_script_path, run_checks


def shown(ctx, sandbox) -> dict:
    return control.device_show(sandbox, ctx.site.device.id, hub=ctx.site.hub.name)


def with_device(ctx, **device) -> None:
    ctx.site = ctx.site.model_copy(update={"device": ctx.site.device.model_copy(update=device)})


def test_without_the_device_ca_the_checks_fail_at_once_naming_device_ca_cert(deployed, sandbox):
    ctx, _ = deployed()
    device = shown(ctx, sandbox)
    # The address alone: the profile's CA (the sandbox's own) does not trust the device's IoT Edge CA.
    with_device(ctx, address=device["address"])
    started = time.monotonic()
    # A wait of an hour: only a failure that is not retried ends this test before pytest's timeout.
    with pytest.raises(StepFailed, match=r"device\.ca_cert") as refused:
        run_checks(ctx, timeout=3600)
    elapsed = time.monotonic() - started
    assert "TLS verification of the device at " + device["address"] in str(refused.value)
    print(f"TLS refusal after {elapsed:.2f} s")

    with_device(ctx, address=device["address"], ca_cert=device["ca_cert"])
    checks = run_checks(ctx, timeout=TIMEOUT)
    assert checks.status == Status.PASSED
    assert checks.details["endpoint"] == device["address"]
    assert checks.details["ca_cert_sha256"] == "sha256:" + hashlib.sha256(Path(device["ca_cert"]).read_bytes()).hexdigest()
    assert checks.details["push"]["arrived_in_cloud"] is True


@pytest.mark.parametrize("endpoint", ["login server", "data endpoint"])
def test_an_address_of_the_cloud_registry_is_refused_before_any_request(deployed, sandbox, endpoint):
    ctx, _ = deployed()
    registry = get_registry(ctx)
    cloud = registry.login_server if endpoint == "login server" else registry.data_endpoint_host_names[0]
    with_device(ctx, address=cloud, ca_cert=sandbox["ca_bundle"])
    log = log_from_now(sandbox)
    with pytest.raises(ParameterError) as refused:
        run_checks(ctx, timeout=TIMEOUT)
    message = str(refused.value)
    assert message.startswith("device.address: ")
    assert f"the cloud registry's {endpoint}" in message and cloud in message, message
    if endpoint == "login server":
        assert registry.login_server in message
    port = cloud.rsplit(":", 1)[1]
    # The device's connected registry syncs through these hosts in the background: crlib's own requests
    # are the ones it marks with its User-Agent.
    sent = [r for r in log() if r["host"].endswith(":" + port) and "crlib/" in (r["user_agent"] or "")]
    assert sent == [], sent


def test_on_device_mode_writes_a_script_and_the_checks_stay_pending(deployed, sandbox, tmp_path, monkeypatch):
    ctx, _ = deployed(checks={"mode": "on-device"})
    monkeypatch.chdir(tmp_path)
    log = log_from_now(sandbox)
    plan = run_checks(ctx, plan=True)
    assert plan.status == Status.PLANNED and not check_script_path(ctx).exists()
    result = run_checks(ctx)
    assert result.status == Status.PENDING
    assert result.details["pending"] == "run the script on the device"
    script = check_script_path(ctx)
    assert result.details["script"] == script.name and script.exists()
    text = script.read_text()
    assert ctx.get_secret(f"client-token-{ctx.site.client_access.tokens[0].name}") not in text
    # Nothing was sent to the device: the checks are the script's to run.
    device_port = shown(ctx, sandbox)["address"].rsplit(":", 1)[1]
    assert [r for r in log() if r["host"].endswith(":" + device_port) and "crlib/" in (r["user_agent"] or "")] == []
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed to check the script"
    checked = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_the_runbook_records_on_device_checks_as_pending(deployed, tmp_path, monkeypatch):
    ctx, _ = deployed(checks={"mode": "on-device"})
    monkeypatch.chdir(tmp_path)
    results = runbook.run(ctx, only=["checks"])
    assert [(r.step, r.status) for r in results] == [("checks", Status.PENDING)]


@pytest.mark.parametrize(("schedule", "window", "now", "waits", "opens"), [
    # example-azure.yaml: every 4 hours, a 2-hour window; the wait covers the next window and the grace.
    ("0 */4 * * *", dt.timedelta(hours=2), "10:30", dt.timedelta(hours=3, minutes=32), "12:00"),
    ("0 */4 * * *", dt.timedelta(hours=2), "12:00", dt.timedelta(hours=6, minutes=2), "16:00"),
    # Every minute, no window: the next minute and the grace.
    ("* * * * *", None, "10:30:15", dt.timedelta(minutes=2, seconds=45), "10:31"),
])
def test_the_wait_lasts_until_the_next_sync_window_has_closed(schedule, window, now, waits, opens):
    at = dt.datetime.fromisoformat(f"2026-12-02T{now}+00:00")
    wait = SyncWait(schedule, window)
    assert wait.seconds(at) == waits.total_seconds()
    assert f"the next sync window opens at 2026-12-02 {opens} UTC (schedule '{schedule}'" in wait.after_timeout(at)
    assert SyncWait(schedule, window, fixed=5).seconds(at) == 5


def test_only_a_failed_certificate_verification_is_final_not_a_tls_connection_that_broke():
    import ssl

    from urllib3.exceptions import MaxRetryError
    from urllib3.exceptions import SSLError as Urllib3SSLError

    def as_requests_sees_it(cause: Exception) -> requests.exceptions.SSLError:
        return requests.exceptions.SSLError(MaxRetryError(None, "/v2/", Urllib3SSLError(cause)))

    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer certificate")
    broken = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert retries.is_certificate_failure(as_requests_sees_it(untrusted))
    assert not retries.is_certificate_failure(as_requests_sees_it(broken))
    assert not retries.is_certificate_failure(requests.ConnectionError("connection reset"))
