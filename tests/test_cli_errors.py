"""Everyday mistakes end in one line on stderr, never a traceback: what failed, where (file:line,
field or -p key) and what to do; exit 2 for input refused before anything ran, 1 for a failure,
130 for Ctrl-C. `crlib --debug` shows the traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit import site_data, wait_for

from crlib.cli import main

CRLIB = [sys.executable, "-c", "import sys; from crlib.cli import main; sys.exit(main())"]


def write(tmp_path: Path, data: dict, name: str = "site.yaml") -> Path:
    data.setdefault("secrets", {"store": "local", "local_dir": str(tmp_path / "secrets")})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_line(capsys, code: int, argv: list[str], expected: int) -> str:
    """Run `crlib argv` in-process; the stderr, which must be exactly one line and no traceback."""
    assert code == expected, capsys.readouterr()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err.strip()


def run(tmp_path: Path, *args: str) -> int:
    return main(["run", *args, "--runs-dir", str(tmp_path / "runs"), "--no-progress"])


def test_a_missing_parameter_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    err = one_line(capsys, run(tmp_path, str(missing)), [], 2)
    assert err.startswith(f"crlib run: {missing}: no such parameter file")
    assert not (tmp_path / "runs").exists()


def test_malformed_yaml_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "site.yaml"
    path.write_text("site: lab\nhub:\n  name: [hub-1\nregistry: {name: reg1}\n")
    err = one_line(capsys, run(tmp_path, str(path)), [], 2)
    assert err.startswith(f"crlib run: {path}:4: not valid YAML"), err


def test_a_typo_suggests_the_key_and_every_other_problem_is_listed(sandbox, tmp_path, capsys):
    data = site_data(sandbox)
    data["resource_grup"] = data.pop("resource_group")
    data["location"] = "West US"
    data["hub"]["capacity"] = 0
    path = write(tmp_path, data)
    lines = path.read_text().splitlines()
    line_of = {key: lines.index(next(li for li in lines if li.lstrip().startswith(f"{key}:"))) + 1
               for key in ("resource_grup", "location", "capacity")}
    err = one_line(capsys, run(tmp_path, str(path)), [], 2)
    assert err.startswith("crlib run: 3 problems: "), err
    assert (f"{path}:{line_of['resource_grup']}: resource_grup: unknown parameter (did you mean "
            "'resource_group'?)") in err
    assert f"{path}:{line_of['location']}: location: 'West US' is not an Azure region name" in err
    assert f"{path}:{line_of['capacity']}: hub.capacity: must be at least 1, not 0" in err
    assert "Field required" not in err  # resource_group's absence is the typo, said once
    assert not (tmp_path / "runs").exists()


def test_a_bad_name_is_said_in_plain_words(sandbox, tmp_path, capsys):
    data = site_data(sandbox)
    data["registry"]["name"] = "my-registry"
    path = write(tmp_path, data)
    err = one_line(capsys, run(tmp_path, str(path)), [], 2)
    assert "registry.name: 'my-registry' is not a container registry name (5-50 letters and digits)" in err
    assert f"{path}:" in err and "pattern" not in err and "[A-Za-z" not in err


def test_a_pattern_is_said_in_plain_words_and_a_section_without_pydantic_jargon(sandbox, tmp_path, capsys):
    data = site_data(sandbox)
    data["site"] = "My_Site"
    data["target"] = "sandbox"  # a word where a mapping belongs
    path = write(tmp_path, data)
    err = one_line(capsys, run(tmp_path, str(path)), [], 2)
    assert "site: 'My_Site' is not a site name (1-41 lowercase letters, digits and '-'" in err
    assert "target: expected a mapping with kind, cloud, sandbox_state_dir, not 'sandbox'" in err
    for jargon in ("should match pattern", "^[a-z", "instance of", "Input should"):
        assert jargon not in err


def test_resume_of_a_missing_folder(tmp_path, capsys):
    missing = tmp_path / "runs" / "20260101T000000Z-lab-abcdef"
    err = one_line(capsys, main(["run", "--resume", str(missing), "--no-progress"]), [], 2)
    assert err == f"crlib run: --resume: {missing}: no such run folder (crlib archive list shows the runs)"


def test_archive_verify_of_a_missing_folder(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    err = one_line(capsys, main(["archive", "verify", str(missing)]), [], 2)
    assert err == f"crlib archive verify: {missing}: no such run folder (crlib archive list shows the runs)"


def test_an_override_with_a_bad_value_names_the_option(sandbox, tmp_path, capsys):
    path = write(tmp_path, site_data(sandbox))
    err = one_line(capsys, run(tmp_path, str(path), "-p", "hub.capacity=two", "-p", "connected_registry.mode=ReadOnly"),
                   [], 2)
    assert err == "crlib run: -p hub.capacity: expected a whole number, not 'two'", err
    assert not (tmp_path / "runs").exists()
    assert one_line(capsys, run(tmp_path, str(path), "-p", "hub.capacity"), [], 2).startswith(
        "crlib run: -p: 'hub.capacity' is not KEY=VALUE")


def test_overrides_are_validated_applied_and_recorded(sandbox, tmp_path, capsys):
    path = write(tmp_path, site_data(sandbox))
    code = run(tmp_path, str(path), "--plan", "--only", "00", "-p", "connected_registry.mode=ReadOnly",
               "-p", "hub.capacity=2", "-p", "checks.referrers=true")
    err = capsys.readouterr().err
    if code == 2:  # checks.referrers is not a parameter of this version: said, naming the option
        assert "-p checks.referrers: unknown parameter" in err and len(err.strip().splitlines()) == 1, err
        code = run(tmp_path, str(path), "--plan", "--only", "00", "-p", "connected_registry.mode=ReadOnly",
                   "-p", "hub.capacity=2")
    assert code == 0, capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["overrides"]["connected_registry.mode"] == "ReadOnly"
    assert record["overrides"]["hub.capacity"] == 2
    archived = yaml.safe_load((run_dir / "parameters.yaml").read_text())
    assert archived["connected_registry"]["mode"] == "ReadOnly" and archived["hub"]["capacity"] == 2


def azure_site(sandbox: dict, tmp_path: Path) -> Path:
    data = site_data(sandbox, target={"kind": "azure"}, subscription_id="00000000-0000-0000-0000-000000000001",
                     records={"signing_key": "keyvault:crlib-records", "vault_url": "https://crlibtest.vault.azure.net"})
    return write(tmp_path, data)


def test_azure_target_without_credentials(sandbox, tmp_path, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))]:
        monkeypatch.delenv(name)
    # A developer's machine: azure-identity's AZURE_TOKEN_CREDENTIALS=dev leaves managed identity out of
    # DefaultAzureCredential, so nothing probes IMDS at 169.254.169.254 (no test addresses a non-loopback IP).
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "dev")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no az CLI login, no shared token cache
    monkeypatch.setenv("PATH", os.defpath)
    path = azure_site(sandbox, tmp_path)
    err = one_line(capsys, run(tmp_path, str(path)), [], 1)
    assert ("target: no Azure credentials: sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
            "AZURE_CLIENT_SECRET (or use a managed identity)") in err
    # Sealed unsigned (the Key Vault signing key was out of reach too): a new run, not a resume.
    assert f"after fixing it: crlib run {path} (a new run)" in err and "DefaultAzureCredential" not in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["--debug", "run", str(missing), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ParameterError" in err
    assert err.strip().splitlines()[-1].startswith(f"crlib run: {missing}: no such parameter file")
    assert main(["--debug", "archive", "verify", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith(f"crlib archive verify: {missing}: no such run folder")


def test_an_unexpected_error_is_one_line_naming_debug(tmp_path, capsys, monkeypatch):
    from crlib import archive

    def broken(runs_dir):
        raise ZeroDivisionError("something crlib did not expect")

    monkeypatch.setattr(archive, "list_runs", broken)
    err = one_line(capsys, main(["archive", "list", "--runs-dir", str(tmp_path)]), [], 1)
    assert err == ("crlib archive list: unexpected ZeroDivisionError: something crlib did not expect "
                   "(crlib --debug ... shows the traceback; please report it)")


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a process group")
def test_ctrl_c_during_a_run_is_one_line_with_the_resume_hint(sandbox, tmp_path):
    path = write(tmp_path, site_data(sandbox))
    runs = tmp_path / "runs"
    # Its own process group, as a terminal's Ctrl-C reaches crlib and the kernels it started.
    # SIGINT at its default, as a shell in a terminal starts a command: a suite started in the
    # background by a non-interactive shell (`nohup … &`, some CI runners) has SIGINT ignored, a child
    # inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([*CRLIB, "run", str(path), "--runs-dir", str(runs), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # The first notebook's events (the run folder's partial area) once its first step started.
        wait_for(lambda: [p for p in runs.glob("*/.partial/00-prerequisites.jsonl") if p.stat().st_size]
                 or proc.poll() is not None, timeout=600, what="the first notebook's first step")
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (out, err)
    (run_dir,) = runs.iterdir()
    assert err == (f"crlib run: interrupted; recorded as failed in {run_dir}; to continue: "
                   f"crlib run --resume {run_dir}\n"), err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["failed"]["reason"] == "interrupted", record["failed"]


@pytest.mark.parametrize(("argv", "names"), [(["run", "--bogus"], "--bogus"),
                                             (["archive", "nope"], "'nope'"),
                                             ([], "required")])
def test_a_usage_error_is_one_line_naming_help(argv, names, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.strip().splitlines()) == 1 and names in err and "--help)" in err
