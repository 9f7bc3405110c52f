"""A registry's dedicated data endpoint as ACR splits the traffic: a blob GET on the login server
answers 307 with a short-lived signed URL on the data endpoint, which serves the bytes without a
bearer token; a wrong, moved or expired signature is refused; without a data endpoint the login
server serves blobs itself. python-dxf follows the redirect and the request log shows both hops."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from requestlog import log_from_now
from test_containerregistry import create_registry, new_group, unique
from test_registry_data import digest_of, dxf_client, new_token, pulled, push_image


@pytest.fixture(scope="module")
def split(acr, arm) -> SimpleNamespace:
    """A Premium registry with its data endpoint on, one without, an admin token for each, and an
    image pushed to both."""
    group = new_group(arm)
    on = create_registry(acr, group, data_endpoint=True)
    off = create_registry(acr, group)
    return SimpleNamespace(group=group, on=on, off=off, on_admin=new_token(acr, group, on),
                           off_admin=new_token(acr, group, off))


def bearer(host: str, ca: str, token, scope: str) -> dict[str, str]:
    answer = requests.get(f"https://{host}/oauth2/token", params={"service": host, "scope": scope},
                          auth=(token.name, token.password), verify=ca, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def pushed(registry, token, ca: str) -> tuple[str, str]:
    repo = unique("split/app")
    client = dxf_client(registry.login_server, repo, ca, token.name, token.password)
    _, blobs = push_image(client, "v1", repo)
    return repo, blobs[-1]


def blob_get(registry, token, ca: str, host: str | None = None) -> tuple[str, str, requests.Response]:
    """Push an image to `registry`, then GET one of its blobs on `host` (the login server by
    default) with a pull token, not following redirects: (repository, digest, answer)."""
    host = host or registry.login_server
    repo, blob = pushed(registry, token, ca)
    headers = bearer(host, ca, token, f"repository:{repo}:pull")
    answer = requests.get(f"https://{host}/v2/{repo}/blobs/{blob}", headers=headers, verify=ca,
                          allow_redirects=False, timeout=30)
    return repo, blob, answer


def test_a_blob_get_on_the_login_server_redirects_to_a_signed_url_on_the_data_endpoint(split, sandbox):
    ca = sandbox["ca_bundle"]
    repo, blob, answer = blob_get(split.on, split.on_admin, ca)
    assert answer.status_code == 307, answer.text
    location = urlsplit(answer.headers["Location"])
    algorithm, hexdigest = blob.split(":")
    assert location.scheme == "https" and location.netloc == split.on.data_endpoint_host_names[0]
    assert location.path == f"/{split.on.name}//docker/registry/v2/blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}/data"
    query = parse_qs(location.query)
    assert set(query) == {"se", "sp", "spr", "sig"} and query["sp"] == ["r"]
    expiry = datetime.strptime(query["se"][0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(0) < expiry - datetime.now(UTC) <= timedelta(minutes=20)

    # The signed URL is its own authorization: no bearer token goes to the data endpoint.
    data = requests.get(answer.headers["Location"], verify=ca, timeout=30)
    assert data.status_code == 200 and digest_of(data.content) == blob
    ranged = requests.get(answer.headers["Location"], headers={"Range": "bytes=0-9"}, verify=ca, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data.content[:10]

    # HEAD is redirected as well; the signed URL answers it with the size and digest.
    headers = bearer(split.on.login_server, ca, split.on_admin, f"repository:{repo}:pull")
    head = requests.head(f"https://{split.on.login_server}/v2/{repo}/blobs/{blob}", headers=headers, verify=ca,
                         timeout=30)
    assert head.status_code == 307 and urlsplit(head.headers["Location"]).netloc == location.netloc
    followed = requests.head(head.headers["Location"], verify=ca, timeout=30)
    assert followed.status_code == 200 and int(followed.headers["Content-Length"]) == len(data.content)
    assert followed.headers["Docker-Content-Digest"] == blob


def test_the_data_endpoint_redirects_its_own_blob_gets_too(split, sandbox):
    """A connected registry's parent gateway is the data endpoint: its blob GETs are signed as well."""
    data_host = split.on.data_endpoint_host_names[0]
    _, _, answer = blob_get(split.on, split.on_admin, sandbox["ca_bundle"], data_host)
    assert answer.status_code == 307 and urlsplit(answer.headers["Location"]).netloc == data_host


def test_without_a_data_endpoint_the_login_server_serves_blobs_itself(split, sandbox):
    _, blob, answer = blob_get(split.off, split.off_admin, sandbox["ca_bundle"])
    assert answer.status_code == 200 and digest_of(answer.content) == blob


def _signed(split, sandbox) -> tuple[str, str]:
    _, blob, answer = blob_get(split.on, split.on_admin, sandbox["ca_bundle"])
    return answer.headers["Location"], blob


def test_signed_urls_are_refused_when_tampered_with_moved_or_served_elsewhere(split, sandbox):
    ca = sandbox["ca_bundle"]
    location, blob = _signed(split, sandbox)
    url = urlsplit(location)
    query = parse_qs(url.query)

    def get(netloc: str, path: str, **changes: str) -> requests.Response:
        params = {k: v[0] for k, v in query.items()} | changes
        return requests.get(f"https://{netloc}{path}?{urlencode(params)}", verify=ca, timeout=30)

    signature = query["sig"][0]
    tampered = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert get(url.netloc, url.path, sig=tampered).status_code == 403
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert get(url.netloc, url.path, se=later).status_code == 403  # the expiry is signed
    other = digest_of(b"another blob").split(":")[1]
    assert get(url.netloc, url.path.replace(blob.split(":")[1], other).replace(f"/{blob[7:9]}/", f"/{other[:2]}/"))\
        .status_code == 403  # the digest is signed
    # Only the data endpoint serves signed URLs: the login server does not know the path.
    assert get(split.on.login_server, url.path).status_code == 404
    # Permissions and protocol are signed too, and a signature that is not even ASCII is refused.
    assert get(url.netloc, url.path, sp="rw").status_code == 403
    assert get(url.netloc, url.path, spr="http").status_code == 403
    assert get(url.netloc, url.path, sig="\u00e9" * 44).status_code == 403
    refused = get(url.netloc, url.path, sig="")
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "AuthenticationFailed"


def test_an_expired_signed_url_is_refused(split, sandbox):
    """Signed with the sandbox's own key (kept in its state folder), but expired a second ago."""
    ca = sandbox["ca_bundle"]
    location, blob = _signed(split, sandbox)
    url = urlsplit(location)
    expired = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    key = (Path(sandbox["state_dir"]) / "blob-sas.key").read_bytes()
    message = "\n".join([split.on.id.lower(), blob, expired, "r", "https"]).encode()
    sig = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    query = urlencode({"se": expired, "sp": "r", "spr": "https", "sig": sig})
    answer = requests.get(f"https://{url.netloc}{url.path}?{query}",
                          verify=ca, timeout=30)
    assert answer.status_code == 403 and "expired" in answer.json()["errors"][0]["message"]


def test_python_dxf_follows_the_redirect_and_the_log_shows_both_hops(split, sandbox):
    ca = sandbox["ca_bundle"]
    repo, blob = pushed(split.on, split.on_admin, ca)
    log = log_from_now(sandbox)
    client = dxf_client(split.on.login_server, repo, ca, split.on_admin.name, split.on_admin.password)
    assert digest_of(pulled(client, blob)) == blob
    rows = [(r["host"], r["method"], r["status"], r["path"]) for r in log()]
    hexdigest = blob.split(":")[1]
    assert (split.on.login_server, "GET", 307, f"/v2/{repo}/blobs/{blob}") in rows
    assert [r for r in rows if r[0] == split.on.data_endpoint_host_names[0] and r[2] == 200
            and r[3].endswith(f"/{hexdigest}/data")], rows
