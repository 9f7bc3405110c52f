"""Nothing secret is logged or archived, and an altered archive is caught.

The logs are every record any logger emits at DEBUG during a whole run plus a password rotation;
the archive is what `crlib run` leaves. Both are scanned for every secret value the site's store
held at any point. Tampering flips one byte at several places in every archived file."""

from __future__ import annotations

import logging
import shutil

from reliability_kit import context

from crlib import archive, runbook, runner


def _store_values(directory) -> set[str]:
    return {p.read_text() for p in directory.iterdir() if p.is_file()} if directory.is_dir() else set()


def test_debug_logs_of_a_whole_run_and_a_rotation_hold_no_secret(new_site, tmp_path, figure):
    site, _, _ = new_site()
    secrets_dir = tmp_path / f"secrets-{site.site}"
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    seen = set()
    try:
        ctx = context(site)
        runbook.run(ctx)
        seen |= _store_values(secrets_dir)
        runbook.run(ctx, only=["rotate"])
        seen |= _store_values(secrets_dir)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    text = log_file.read_bytes()
    leaked = [value[:4] + "…" for value in seen if value.encode() in text]
    lines = text.count(b"\n")
    assert len(seen) >= 6 and lines > 100
    assert leaked == []
    assert archive.scan_bytes(text, seen) == []
    figure(f"{lines} DEBUG log lines from every logger over a whole run and a rotation: "
           f"0 of {len(seen)} secrets found")
    runbook.run(ctx, only=["teardown"])


def test_an_archive_holds_no_secret_and_every_flipped_byte_is_caught(new_site, tmp_path, figure):
    site, params_path, _ = new_site()
    run = runner.Run.create(params_path, runs_dir=tmp_path / "runs", phases=runner.select_phases(["00", "01"]),
                            plan=False)
    record = run.run(progress=False)
    assert record["status"] == "succeeded", record["failed"]
    secrets = _store_values(tmp_path / f"secrets-{site.site}")
    assert len(secrets) >= 2  # the hub's and the device's connection strings
    assert archive.verify(run.dir, secrets=secrets) == []
    files = [*archive.archived_files(run.dir), run.dir / archive.SUMS, run.dir / archive.SIGNATURE]
    caught = tried = 0
    for victim in files:
        for fraction in (0.0, 0.37, 0.5, 0.99):
            copy = tmp_path / f"copy-{tried}"
            shutil.copytree(run.dir, copy)
            archive.unseal(copy)
            target = copy / victim.relative_to(run.dir)
            data = bytearray(target.read_bytes())
            data[int(fraction * (len(data) - 1))] ^= 0x20
            target.write_bytes(bytes(data))
            tried += 1
            caught += bool(archive.verify(copy, secrets=secrets))
            shutil.rmtree(copy)
    assert caught == tried
    figure(f"archive of {len(files)} files: 0 of {len(secrets)} secrets found; {caught} of {tried} one-byte "
           "flips caught by verify")
    runbook.run(context(site), only=["teardown"])
