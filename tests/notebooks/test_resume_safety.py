"""`crlib run --resume` trusts nothing in the run folder: it verifies the hashes first, refuses a
folder with a symlink anywhere or that another user can write, and its kernels never run in the
folder (nor import from it). Seal, unseal and verify never follow a symlink; seal adds no
permission the umask removes; verify prints no part of a secret.

One failed run (00 completes, 01 refuses at step 'hub') is made per module; each case works on a
copy of it."""

from __future__ import annotations

import os
import secrets as random
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from notebook_kit import crlib_run
from testkit import site_data

from crlib import archive, runbook, runner, signing
from crlib.cli import main
from crlib.errors import ArchiveError
from crlib.secrets import LocalSecretStore

LAUNCHER = "ipykernel_launcher.py"


@pytest.fixture(scope="module")
def failed_run(sandbox, tmp_path_factory):
    base = tmp_path_factory.mktemp("resume-safety")
    data = site_data(sandbox)
    data["hub"]["reuse"] = True  # valid, but the hub does not exist: step 'hub' in 01 refuses
    data["secrets"] = {"store": "local", "local_dir": str(base / "secrets")}
    params = base / "site.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    run = crlib_run(params, base / "runs", only=["00", "01"])
    record = archive.read_record(run.dir)
    assert record["status"] == "failed" and record["failed"]["step"] == "hub", record["failed"]
    assert (run.dir / runner.EVENTS).is_file() and list((run.dir / "notebooks").glob("*.ipynb"))
    yield {"dir": run.dir, "params": params, "site": data}
    from crlib.context import open_context
    from crlib.params import load_file

    runbook.run(open_context(load_file(params)), only=["teardown"])  # the sandbox's request counts stay quiet


@pytest.fixture
def copy(failed_run, tmp_path) -> Path:
    """A copy of the failed run, unsealed (writable by its owner) for the case to alter."""
    target = tmp_path / "runs" / failed_run["dir"].name
    shutil.copytree(failed_run["dir"], target)
    archive.unseal(target)
    return target


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry of a folder: its mode and its bytes (a symlink: its target, unread)."""
    entries = {}
    for path in sorted(run_dir.rglob("*")):
        info = path.lstat()
        content: bytes | str = (os.readlink(path) if path.is_symlink() else
                                path.read_bytes() if path.is_file() else b"")
        entries[path.relative_to(run_dir).as_posix()] = (stat.S_IMODE(info.st_mode), content)
    return entries


def refused(run_dir: Path, params: Path | None = None) -> str:
    """Resume is refused before anything runs or is written: the folder is left as it was."""
    before = snapshot(run_dir)
    with pytest.raises(ArchiveError) as caught:
        runner.Run.resume(run_dir, params)
    assert snapshot(run_dir) == before
    return str(caught.value)


def plant_launcher(run_dir: Path, marker: Path) -> None:
    (run_dir / LAUNCHER).write_text(f"open({str(marker)!r}, 'w').write('the planted launcher ran')\n"
                                    "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n")


def test_a_planted_kernel_launcher_is_refused_and_never_runs(copy, tmp_path):
    marker = tmp_path / "outside" / "planted-ran"
    marker.parent.mkdir()
    plant_launcher(copy, marker)  # SHA256SUMS does not list it
    message = refused(copy)
    assert f"{LAUNCHER} is not listed in SHA256SUMS" in message
    assert not marker.exists() and list(marker.parent.iterdir()) == []


def resum(run_dir: Path) -> None:
    """What anyone able to write the folder can do: SHA256SUMS rewritten to match (sha256sum's
    format), SIGNATURE left as it was."""
    lines = [f"{archive.sha256_file(p)}  {p.relative_to(run_dir).as_posix()}\n" for p in archive.archived_files(run_dir)]
    (run_dir / archive.SUMS).write_text("".join(lines))


def test_a_planted_launcher_with_regenerated_sums_is_refused_on_the_signature(copy, tmp_path):
    marker = tmp_path / "outside" / "planted-ran"
    marker.parent.mkdir()
    plant_launcher(copy, marker)
    resum(copy)
    message = refused(copy)
    assert "SIGNATURE does not match SHA256SUMS: the sums changed after they were signed" in message
    assert not marker.exists()


def test_a_planted_launcher_resigned_with_another_key_is_refused(copy, tmp_path):
    marker = tmp_path / "outside" / "planted-ran"
    marker.parent.mkdir()
    plant_launcher(copy, marker)
    someone_else = signing.LocalSigner(LocalSecretStore(tmp_path / "someone-else"))
    archive.seal(copy, signer=someone_else)
    archive.unseal(copy)  # the signature holds, with its own key ...
    assert archive.signature(copy).problems == []
    message = refused(copy)  # ... which is not the site's
    assert f"signed by {someone_else.key_id}" in message and "not by this site's signing key" in message
    assert not marker.exists()


def test_parameters_pointed_at_another_store_and_resigned_are_refused(copy, tmp_path):
    """Whoever writes the folder can name a store of their own in its parameters and sign with the
    key there: the key is not one crlib has sealed runs with on this account."""
    forged_store = tmp_path / "forged-store"
    archived = yaml.safe_load((copy / "parameters.yaml").read_text())
    archived["secrets"]["local_dir"] = str(forged_store)
    (copy / "parameters.yaml").write_text(yaml.safe_dump(archived, sort_keys=False))
    forger = signing.LocalSigner(LocalSecretStore(forged_store))
    archive.seal(copy, signer=forger)
    archive.unseal(copy)
    message = refused(copy)
    assert f"signed by {forger.key_id}, a key crlib has not sealed a run with on this account" in message


def test_a_planted_launcher_signed_with_the_sites_own_key_still_never_runs(copy, failed_run, tmp_path):
    """Whoever holds the site's key can sign anything: the kernels still start outside the folder
    with PYTHONSAFEPATH=1, so a planted file is never imported."""
    marker = tmp_path / "outside" / "planted-ran"
    marker.parent.mkdir()
    plant_launcher(copy, marker)
    archive.seal(copy, signer=signing.LocalSigner(LocalSecretStore(failed_run["site"]["secrets"]["local_dir"])))
    run = runner.Run.resume(copy)
    record = run.run(progress=False)
    assert [a["from"] for a in record["attempts"]] == ["00-prerequisites", "01-iot-hub-and-device"]
    assert record["failed"]["step"] == "hub"  # 01 really ran again, on a kernel
    assert not marker.exists()
    assert archive.verify(copy) == []


@pytest.mark.parametrize("victim", ["run.json", "steps.jsonl", "notebooks/00-prerequisites.ipynb"])
def test_a_symlinked_file_is_refused_and_its_target_is_untouched(copy, tmp_path, victim):
    outside = tmp_path / "outside" / "precious"
    outside.parent.mkdir()
    outside.write_bytes((copy / victim).read_bytes())
    outside.chmod(0o640)
    before = (outside.read_bytes(), stat.S_IMODE(outside.stat().st_mode))
    (copy / victim).unlink()
    (copy / victim).symlink_to(outside)
    message = refused(copy)
    assert f"{victim} is a symlink" in message
    for act in (archive.seal, archive.unseal):
        with pytest.raises(ArchiveError, match="is a symlink"):
            act(copy)
    assert archive.verify(copy) == [f"{victim} is a symlink"]
    assert (outside.read_bytes(), stat.S_IMODE(outside.stat().st_mode)) == before


def test_a_symlinked_run_folder_is_refused(copy, tmp_path):
    link = tmp_path / "linked-run"
    link.symlink_to(copy)
    assert "the folder is a symlink" in refused(link)


def test_an_edited_notebook_is_refused(copy):
    notebook = copy / "notebooks" / "00-prerequisites.ipynb"
    notebook.write_text(notebook.read_text().replace('"cells": [', '"cells": [ ', 1))
    # SHA256SUMS stays as it was: the notebook's hash differs
    assert "notebooks/00-prerequisites.ipynb was altered (sha256 differs)" in refused(copy)


@pytest.mark.parametrize("what", ["the folder", "steps.jsonl", "notebooks"])
def test_a_folder_another_user_can_write_is_refused(copy, what):
    archive.seal(copy)
    path = copy if what == "the folder" else copy / what
    path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWGRP)
    assert f"{what} can be written by other users" in refused(copy)


def test_seal_under_umask_077_adds_no_permission(tmp_path):
    folder = tmp_path / "run"
    previous = os.umask(0o077)
    try:
        (folder / "notebooks").mkdir(parents=True)
        (folder / "run.json").write_text("{}\n")
        (folder / "notebooks" / "00.ipynb").write_text("{}\n")
        (folder / "check.sh").write_text("#!/bin/sh\n")
        (folder / "check.sh").chmod(0o755)  # written wider than the umask allows: seal narrows it
        archive.seal(folder, signer=signing.LocalSigner(LocalSecretStore(tmp_path / "store")))
    finally:
        os.umask(previous)
    modes = {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o500
    assert modes == {"notebooks": 0o500, "run.json": 0o400, "notebooks/00.ipynb": 0o400, "check.sh": 0o500,
                     "SHA256SUMS": 0o400, "SIGNATURE": 0o400}
    assert archive.verify(folder) == []


def test_files_written_during_a_run_are_private(failed_run):
    for path in [failed_run["dir"], *failed_run["dir"].rglob("*")]:
        assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path


def test_verify_prints_no_part_of_a_secret(copy, failed_run, capsys):
    secret = "Vq" + random.token_urlsafe(30)
    name = f"crlib-{failed_run['site']['site']}-planted-password"
    LocalSecretStore(failed_run["site"]["secrets"]["local_dir"]).set(name, secret)
    try:
        with (copy / "steps.jsonl").open("a") as fh:
            fh.write(f'{{"event": "note", "password": "{secret}"}}\n')
        resum(copy)  # the hashes match: the signature and the secret are the findings
        assert main(["archive", "verify", str(copy)]) == 1
    finally:
        LocalSecretStore(failed_run["site"]["secrets"]["local_dir"]).delete(name)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert f"steps.jsonl holds the secret '{name}' from the store" in output
    assert not [secret[:n] for n in range(3, len(secret) + 1) if secret[:n] in output]
