"""Signed change records: a run's SHA256SUMS is signed when it is sealed, by a local P-256 key in
the secret store or by a Key Vault key (here the sandbox's vault), and `crlib archive verify`
says who signed. A record edited and re-summed fails on its signature; a record re-signed with
another key fails once the reviewer pins the key."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from notebook_kit import crlib_run
from testkit import site_data

from crlib import archive, signing
from crlib.cli import main
from crlib.params import load_file
from crlib.secrets import LocalSecretStore


def resum(run_dir: Path) -> None:
    """What anyone able to write the folder can do: SHA256SUMS rewritten to match, SIGNATURE kept."""
    lines = [f"{archive.sha256_file(p)}  {p.relative_to(run_dir).as_posix()}\n" for p in archive.archived_files(run_dir)]
    (run_dir / archive.SUMS).write_text("".join(lines))


def verify(run_dir: Path, *pin: str, capsys) -> tuple[int, str]:
    code = main(["archive", "verify", str(run_dir), *pin])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tampered_copy(run: Path, tmp_path: Path) -> Path:
    """A copy whose run.json says something else, with SHA256SUMS regenerated to match."""
    copy = tmp_path / "tampered" / run.name
    shutil.copytree(run, copy)
    archive.unseal(copy)
    record = json.loads((copy / "run.json").read_text())
    record["operator"]["local_user"] = "someone-else"
    (copy / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    resum(copy)
    return copy


@pytest.fixture(scope="module")
def signed_runs(sandbox, tmp_path_factory):
    """One run of 00 per kind of key: the local key, and a key in the sandbox's Key Vault."""
    base = tmp_path_factory.mktemp("signed")
    runs = {}
    for kind in ("local", "keyvault"):
        data = site_data(sandbox)
        data["secrets"] = {"store": "local", "local_dir": str(base / f"secrets-{kind}")}
        if kind == "keyvault":
            data["records"] = {"signing_key": f"keyvault:crlib-records-{uuid.uuid4().hex[:8]}"}
        params = base / f"{kind}.yaml"
        params.write_text(yaml.safe_dump(data, sort_keys=False))
        run = crlib_run(params, base / "runs", only=["00"])
        assert archive.read_record(run.dir)["status"] == "succeeded"
        runs[kind] = {"dir": run.dir, "params": params, "data": data, "signer": run.signer}
    return runs


@pytest.mark.parametrize("kind", ["local", "keyvault"])
def test_an_untouched_record_verifies_and_names_its_key(signed_runs, kind, capsys):
    run = signed_runs[kind]
    key_id = archive.signature(run["dir"]).key_id
    assert key_id == run["signer"].key_id
    if kind == "local":
        assert key_id.startswith(f"local:{signing.LOCAL_KEY_ENTRY}/")
    else:
        assert key_id.startswith("https://127.0.0.1:") and "/keys/crlib-records-" in key_id
    code, output = verify(run["dir"], capsys=capsys)
    assert code == 0, output
    assert f"by {key_id} (" in output and "the signer is not pinned" in output
    code, output = verify(run["dir"], "--key-id", key_id, capsys=capsys)
    assert code == 0, output
    assert "the signer is the " in output and key_id in output


@pytest.mark.parametrize("kind", ["local", "keyvault"])
def test_an_edited_and_resummed_record_fails_on_its_signature(signed_runs, kind, tmp_path, capsys):
    copy = tampered_copy(signed_runs[kind]["dir"], tmp_path)
    assert [p for p in archive.verify(copy) if "sha256 differs" in p or "not listed" in p] == []  # the sums match
    code, output = verify(copy, capsys=capsys)
    assert code == 1
    assert "SIGNATURE does not match SHA256SUMS: the sums changed after they were signed" in output


@pytest.mark.parametrize("kind", ["local", "keyvault"])
def test_a_record_resigned_with_another_key_fails_once_the_key_is_pinned(signed_runs, kind, tmp_path, capsys):
    run = signed_runs[kind]
    original = archive.signature(run["dir"])
    copy = tampered_copy(run["dir"], tmp_path)
    forger = signing.LocalSigner(LocalSecretStore(tmp_path / "forger"))
    archive.seal(copy, signer=forger)
    code, output = verify(copy, capsys=capsys)
    assert code == 0 and f"by {forger.key_id}" in output and "not pinned" in output  # consistent, but not theirs
    code, output = verify(copy, "--key-id", original.key_id, capsys=capsys)
    assert code == 1 and f"signed by {forger.key_id}, not by {original.key_id}" in output
    pem = tmp_path / "expected.pem"
    pem.write_text(signing.public_pem(run["signer"].public_key()))
    code, output = verify(copy, "--key", str(pem), capsys=capsys)
    assert code == 1 and f"not by the key in {pem}" in output
    code, output = verify(run["dir"], "--key", str(pem), capsys=capsys)
    assert code == 0 and f"the signer is the key in {pem}" in output


def test_a_local_key_id_pins_its_public_key(signed_runs, tmp_path, capsys):
    """A local key id carries its public key's fingerprint: a forger can copy the id, not the key."""
    run = signed_runs["local"]
    key_id = archive.signature(run["dir"]).key_id
    copy = tampered_copy(run["dir"], tmp_path)
    forger = signing.LocalSigner(LocalSecretStore(tmp_path / "forger"))
    forger_with_stolen_id = type("Forger", (), {"key_id": key_id, "source": forger.source,
                                                "public_key": forger.public_key, "sign_digest": forger.sign_digest})()
    archive.seal(copy, signer=forger_with_stolen_id)
    code, output = verify(copy, "--key-id", key_id, capsys=capsys)
    assert code == 1 and f"key id {key_id} does not name its public key" in output


def test_a_certificate_pins_the_signer_too(signed_runs, tmp_path, capsys):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    store = LocalSecretStore(signed_runs["local"]["data"]["secrets"]["local_dir"])
    key = serialization.load_pem_private_key(store.get(signing.LOCAL_KEY_ENTRY).encode(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crlib records")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path = tmp_path / "signer.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    code, output = verify(signed_runs["local"]["dir"], "--key", str(path), capsys=capsys)
    assert code == 0, output


def test_an_unsigned_record_does_not_verify(signed_runs, tmp_path, capsys):
    copy = tmp_path / "unsigned" / signed_runs["local"]["dir"].name
    shutil.copytree(signed_runs["local"]["dir"], copy)
    archive.unseal(copy)
    (copy / archive.SIGNATURE).unlink()
    code, output = verify(copy, capsys=capsys)
    assert code == 1 and "SIGNATURE is missing: the record is not signed" in output


def test_the_archived_parameters_are_the_validated_document_without_comments(sandbox, tmp_path):
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path / "secrets")}
    source = tmp_path / "site.yaml"
    comment = "# the vault admin's pw is Hunter2Hunter2 (ask Bob)"
    source.write_text(comment + "\n" + yaml.safe_dump(data, sort_keys=False) + "# trailing note\n")
    run = crlib_run(source, tmp_path / "runs", only=["00"])
    archived = (run.dir / "parameters.yaml").read_text()
    assert "Hunter2" not in archived and "trailing note" not in archived and "Bob" not in archived
    assert load_file(run.dir / "parameters.yaml").model_dump() == load_file(source).model_dump()
    assert archive.verify(run.dir) == []
    for path in [*archive.archived_files(run.dir), run.dir / archive.SUMS, run.dir / archive.SIGNATURE]:
        assert b"Hunter2" not in path.read_bytes(), path
