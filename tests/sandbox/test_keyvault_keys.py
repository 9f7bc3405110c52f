"""The sandbox vault's keys, through the real azure-keyvault-keys clients (KeyClient, CryptographyClient)."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyType
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature


def _options(sandbox) -> dict:
    # The vault is 127.0.0.1:<port>, so the challenge's resource cannot match its domain.
    return {"connection_verify": sandbox["ca_bundle"], "verify_challenge_resource": False}


@pytest.fixture(scope="module")
def client(sandbox, credential) -> KeyClient:
    return KeyClient(sandbox["key_vault_url"], credential, **_options(sandbox))


def _crypto(sandbox, credential, key) -> CryptographyClient:
    return CryptographyClient(key, credential, **_options(sandbox))


def _name() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _raw(sandbox, credential, token: bool = True) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox["ca_bundle"]
    if token:
        session.headers["Authorization"] = "Bearer " + credential.get_token("https://vault.azure.net/.default").token
    return session


def _public_key(key) -> ec.EllipticCurvePublicKey:
    jwk = key.key
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                         ec.SECP256R1()).public_key()


def test_create_and_get_an_ec_key_without_private_material(sandbox, client, credential):
    name = _name()
    key = client.create_ec_key(name, curve="P-256", tags={"use": "records"})
    assert key.id == f"{sandbox['key_vault_url']}keys/{name}/{key.properties.version}"
    assert (key.key_type, key.key.crv, key.key_operations) == ("EC", "P-256", ["sign", "verify"])
    assert len(key.key.x) == 32 and len(key.key.y) == 32
    assert key.properties.enabled and key.properties.recovery_level == "Recoverable+Purgeable"
    assert key.properties.tags == {"use": "records"}
    _public_key(key)  # a point on P-256, else this raises

    got = client.get_key(name)
    assert (got.id, got.key.x, got.key.y) == (key.id, key.key.x, key.key.y)
    assert client.get_key(name, key.properties.version).id == key.id
    assert name in {k.name for k in client.list_properties_of_keys()}

    raw = _raw(sandbox, credential).get(sandbox["key_vault_url"] + f"keys/{name}", params={"api-version": "7.6"})
    assert raw.status_code == 200
    jwk = raw.json()["key"]
    assert set(jwk) == {"kid", "kty", "key_ops", "crv", "x", "y"}
    assert "d" not in jwk and "PRIVATE" not in raw.text


def test_sign_es256_then_verify_remotely_and_locally(sandbox, client, credential):
    key = client.create_ec_key(_name(), curve="P-256")
    crypto = _crypto(sandbox, credential, key.id)
    digest = hashlib.sha256(b"change record 1").digest()
    signed = crypto.sign(SignatureAlgorithm.es256, digest)
    assert signed.key_id == key.id and signed.algorithm == SignatureAlgorithm.es256
    assert len(signed.signature) == 64  # JWS r||s, not DER

    assert crypto.verify(SignatureAlgorithm.es256, digest, signed.signature).is_valid
    wrong = hashlib.sha256(b"change record 2").digest()
    assert not crypto.verify(SignatureAlgorithm.es256, wrong, signed.signature).is_valid

    # Remote verify, on the wire, whatever the SDK would do locally.
    raw = _raw(sandbox, credential)
    url = f"{key.id}/verify"

    def remote(d: bytes) -> bool:
        response = raw.post(url, params={"api-version": "7.6"}, json={
            "alg": "ES256", "digest": base64.urlsafe_b64encode(d).decode().rstrip("="),
            "value": base64.urlsafe_b64encode(signed.signature).decode().rstrip("=")})
        assert response.status_code == 200, response.text
        return response.json()["value"]

    assert remote(digest) is True and remote(wrong) is False

    # Locally, from the JWK's x and y: the signature is r||s, 32 bytes each.
    public = _public_key(client.get_key(key.name))
    der = encode_dss_signature(int.from_bytes(signed.signature[:32], "big"),
                               int.from_bytes(signed.signature[32:], "big"))
    public.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        public.verify(der, wrong, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_a_crypto_client_built_from_the_key_signs_too(sandbox, client, credential):
    key = client.create_key(_name(), KeyType.ec, curve="P-256")
    crypto = _crypto(sandbox, credential, key)
    digest = hashlib.sha256(b"from a KeyVaultKey").digest()
    signature = crypto.sign(SignatureAlgorithm.es256, digest).signature
    assert crypto.verify(SignatureAlgorithm.es256, digest, signature).is_valid
    # Two signatures of one digest differ (ECDSA is randomised): each one is the vault's, not a replay.
    assert crypto.sign(SignatureAlgorithm.es256, digest).signature != signature


def test_bad_digests_and_algorithms_are_refused(sandbox, client, credential):
    key = client.create_ec_key(_name(), curve="P-256")
    crypto = _crypto(sandbox, credential, key.id)
    with pytest.raises(HttpResponseError) as short:
        crypto.sign(SignatureAlgorithm.es256, b"\x01" * 20)
    assert short.value.status_code == 400 and short.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as mismatched:
        crypto.sign(SignatureAlgorithm.es384, hashlib.sha384(b"x").digest())
    assert mismatched.value.status_code == 400 and mismatched.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as rsa_alg:
        crypto.sign(SignatureAlgorithm.rs256, hashlib.sha256(b"x").digest())
    assert rsa_alg.value.status_code == 400


def test_key_ops_limit_what_a_key_may_do(sandbox, client, credential):
    key = client.create_ec_key(_name(), curve="P-256", key_operations=["verify"])
    assert key.key_operations == ["verify"]
    with pytest.raises(HttpResponseError) as refused:
        _crypto(sandbox, credential, key.id).sign(SignatureAlgorithm.es256, hashlib.sha256(b"x").digest())
    assert refused.value.status_code == 403


def test_other_curves_and_rsa(sandbox, client, credential):
    p384 = client.create_ec_key(_name(), curve="P-384")
    assert (p384.key.crv, len(p384.key.x)) == ("P-384", 48)
    digest = hashlib.sha384(b"x").digest()
    signed = _crypto(sandbox, credential, p384.id).sign(SignatureAlgorithm.es384, digest)
    assert len(signed.signature) == 96
    assert _crypto(sandbox, credential, p384.id).verify(SignatureAlgorithm.es384, digest, signed.signature).is_valid

    with pytest.raises(HttpResponseError) as curve:
        client.create_ec_key(_name(), curve="P-999")
    assert curve.value.status_code == 400 and curve.value.error.code == "BadParameter"

    rsa_key = client.create_rsa_key(_name(), size=2048)
    assert rsa_key.key_type == "RSA" and rsa_key.key.e == b"\x01\x00\x01" and len(rsa_key.key.n) == 256
    digest = hashlib.sha256(b"y").digest()
    signature = _crypto(sandbox, credential, rsa_key.id).sign(SignatureAlgorithm.rs256, digest).signature
    public = rsa.RSAPublicNumbers(65537, int.from_bytes(rsa_key.key.n, "big")).public_key()
    public.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def test_a_second_create_adds_a_version(client):
    name = _name()
    first = client.create_ec_key(name, curve="P-256")
    second = client.create_ec_key(name, curve="P-256")
    assert second.properties.version != first.properties.version
    assert client.get_key(name).id == second.id
    assert client.get_key(name, first.properties.version).key.x == first.key.x
    assert {p.version for p in client.list_properties_of_key_versions(name)} == {
        first.properties.version, second.properties.version}


def test_missing_keys_are_key_not_found(sandbox, client, credential):
    name = _name()
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_key(name)
    assert missing.value.error.code == "KeyNotFound"
    client.create_ec_key(name, curve="P-256")
    with pytest.raises(ResourceNotFoundError):
        client.get_key(name, uuid.uuid4().hex)
    response = _raw(sandbox, credential).get(sandbox["key_vault_url"] + "keys/no-such-key",
                                             params={"api-version": "2025-07-01"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "KeyNotFound"


def test_delete_refuses_the_name_until_recovered_then_purge(sandbox, client, credential):
    name = _name()
    first = client.create_ec_key(name, curve="P-256")
    deleted = client.begin_delete_key(name).result()
    assert deleted.name == name and deleted.deleted_date and deleted.scheduled_purge_date
    assert deleted.recovery_id == f"{sandbox['key_vault_url']}deletedkeys/{name}"
    assert deleted.key.x == first.key.x
    with pytest.raises(ResourceNotFoundError):
        client.get_key(name)
    assert client.get_deleted_key(name).name == name
    assert name in {k.name for k in client.list_deleted_keys()}

    response = _raw(sandbox, credential).post(sandbox["key_vault_url"] + f"keys/{name}/create",
                                              params={"api-version": "7.6"}, json={"kty": "EC", "crv": "P-256"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "Conflict" and error["innererror"] == {"code": "ObjectIsDeletedButRecoverable"}
    with pytest.raises(ResourceExistsError) as refused:
        client.create_ec_key(name, curve="P-256")
    assert refused.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}

    recovered = client.begin_recover_deleted_key(name).result()
    assert recovered.id == first.id
    assert client.get_key(name).key.x == first.key.x
    assert name not in {k.name for k in client.list_deleted_keys()}

    client.begin_delete_key(name).wait()
    client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_key(name)
    assert client.create_ec_key(name, curve="P-256").key.x != first.key.x


def test_a_request_without_a_token_is_challenged(sandbox, credential):
    session = _raw(sandbox, credential, token=False)
    response = session.post(sandbox["key_vault_url"] + "keys/anything/create", params={"api-version": "7.6"},
                            json={"kty": "EC", "crv": "P-256"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert f'authorization="{sandbox["authority"]}/{sandbox["tenant_id"]}"' in challenge
    assert 'resource="https://vault.azure.net"' in challenge
    response = session.get(sandbox["key_vault_url"] + "keys", params={"api-version": "7.6"})
    assert response.status_code == 401
