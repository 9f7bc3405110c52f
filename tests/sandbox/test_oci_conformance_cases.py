"""The OCI distribution-spec conformance suite (opencontainers/distribution-spec, conformance/: the
runner of run.go, api.go, testdata.go) replayed against the sandbox's registry, request for request.

`Suite` is a port of api.go's client: every request goes out without credentials until a 401, then
follows the Bearer challenge to the token endpoint with Basic credentials (OCI_USERNAME and
OCI_PASSWORD, here an ACR token with the admin scope map), sending the challenge's scope as one
parameter, and caches the header per host, repository and pull/push/<method> as CacheAuth does.
Redirects are followed, HEAD included, as Go's client does. The data sets are generated as
testdata.go generates them (opts flow into an index's children: tags, subjects, algorithms).

The module replays the default (spec version 1.1) run in order on one pair of repositories: ping,
the empty repository, the blob APIs for sha256 and sha512, every data set, the manifest errors.
The tests after that reproduce divergences: each FAILS against the sandbox today.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import tarfile
from collections import defaultdict
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from test_containerregistry import create_registry, new_group, unique
from test_registry_data import new_token

MT_CONF1 = "application/vnd.example.oci.conformance.v1"
MT_CONF2 = "application/vnd.example.oci.conformance.v2"
MT_OCTET = "application/octet-stream"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_PRE = "application/vnd.oci.image.layer.v1."
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_LAYER_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
CHUNK_MIN = 1024  # config.go chunkMin
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
# OCI_VERSION=dev replays the 1.1+dev configuration's DigestHeader flags: Docker-Content-Digest required.
REQUIRE_DIGEST_HEADER = os.environ.get("OCI_VERSION") in ("dev", "1.1+dev")

# api.go reRepo and parseAuthHeader's parameter matcher, as written there.
RE_REPO = re.compile(r"/v2/([a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*)"
                     r"(/(?:blobs|manifests|tags|referrers)/(?:[^/]+)|/blobs/uploads/[^/]*)")
AUTH_PARAM = re.compile(r'([a-zA-z]+)="(.+?)"')


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def go_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- the suite's HTTP client (api.go) ---------------------------------------------------------------
class Suite:
    def __init__(self, sandbox: dict, host: str, username: str, password: str):
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = sandbox["ca_bundle"]
        self.base = f"https://{host}"
        self.user, self.password = username, password
        self.auth_cache: dict[str, str] = {}
        self.token_requests: list[dict] = []

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base + "/", path_or_url)

    @staticmethod
    def cache_key(method: str, url: str) -> str:
        parts = urlsplit(url)
        repo = ""
        if parts.path != "/v2/":
            match = RE_REPO.search(parts.path)
            assert match, f"api.go authCacheKey: could not extract repo from path {parts.path}"
            repo = match.group(1)
        kind = {"GET": "pull", "HEAD": "pull", "POST": "push", "PATCH": "push", "PUT": "push"}.get(method, method)
        return f"{parts.netloc}:{repo}:{kind}"

    def do(self, method: str, url: str, *, params=None, headers=None, body=None) -> requests.Response:
        """One api.Do: cached auth, a 401 answered by the challenge, then one retry. `body` is bytes,
        or a callable giving an iterator (sent chunked, with no Content-Length, like a Go body of
        unknown length)."""
        url = self.url(url)
        headers = dict(headers or {})
        key = self.cache_key(method, url)
        if key in self.auth_cache:
            headers["Authorization"] = self.auth_cache[key]

        def send() -> requests.Response:
            data = body() if callable(body) else body
            return self.http.request(method, url, params=params, headers=headers, data=data, allow_redirects=True)

        response = send()
        if response.status_code == 401:
            headers["Authorization"] = self.auth_header(response, key)
            response = send()
        return response

    def auth_header(self, response: requests.Response, key: str) -> str:
        header = response.headers.get("WWW-Authenticate", "")
        assert header.lower().startswith("bearer"), f"api.go getAuthHeader: no bearer challenge: {header!r}"
        parsed = {k.lower(): v for k, v in AUTH_PARAM.findall(header)}
        params = {"service": parsed.get("service", "")}
        if parsed.get("scope"):
            params["scope"] = parsed["scope"]
        self.token_requests.append(params)
        answer = self.http.get(urljoin(response.request.url, parsed["realm"]), params=params,
                               headers={"Accept": "application/json"}, auth=(self.user, self.password))
        assert answer.status_code == 200, f"invalid status on auth request: {answer.status_code} {answer.text}"
        info = answer.json()
        auth = "Bearer " + (info.get("access_token") or info.get("token"))
        self.auth_cache[key] = auth
        return auth


def check_digest_header(response: requests.Response, digest: str, *, required: bool = REQUIRE_DIGEST_HEADER) -> None:
    """api.go VerifyDigest (required: the RequireDigestHeader flag of the 1.1+dev configuration)."""
    header = response.headers.get("Docker-Content-Digest", "")
    assert header or not required, "registry did not return a Docker-Content-Digest header"
    assert not header or header == digest, f"Docker-Content-Digest expected {digest}, received {header}"


# -- the data sets (testdata.go) -------------------------------------------------------------------
def descriptor_json(desc: dict) -> dict:
    """image-spec's Descriptor as Go marshals it: omitempty fields dropped, data base64."""
    out = {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"]}
    for field in ("urls", "annotations"):
        if desc.get(field):
            out[field] = desc[field]
    if desc.get("data") is not None:
        out["data"] = base64.b64encode(desc["data"]).decode()
    if desc.get("platform"):
        out["platform"] = desc["platform"]
    if desc.get("artifactType"):
        out["artifactType"] = desc["artifactType"]
    return out


def with_extra_field(value: dict) -> dict:
    return {**value, "extraField" + secrets.token_hex(4): secrets.token_hex(8)}


class TestData:
    __test__ = False  # not a pytest class

    def __init__(self, name: str):
        self.name = name
        self.tags: dict[str, str] = {}
        self.tag_pushed: set[str] = set()
        self.desc: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.man_order: list[str] = []
        self.referrers: dict[str, list[dict]] = defaultdict(list)
        self.skip_pull: set[str] = set()
        self.bad_digest: set[str] = set()
        self.tag_param: set[str] = set()

    def add_blob(self, data: bytes, **opts) -> str:
        o = {"algo": "sha256", "descriptor_media_type": MT_OCTET, **opts}
        dig = digest_of(data, o["algo"])
        self.blobs[dig] = data
        self.desc[dig] = {"mediaType": o["descriptor_media_type"], "digest": dig, "size": len(data),
                          "data": data if o.get("set_data") else None}
        return dig

    def gen_blob(self, **opts) -> tuple[str, bytes]:
        data = os.urandom(opts.get("blob_size", 2048))
        return self.add_blob(data, **opts), data

    def gen_layer(self, file_num: int, **opts) -> tuple[str, str]:
        o = {"comp": "gzip", "algo": "sha256", **opts}
        content = f"Conformance test file contents for file number {file_num}.\nTodays lucky number is " \
                  f"{secrets.randbelow(2**63)}\n".encode()
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            info = tarfile.TarInfo(f"./conformance-{file_num}.txt")
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
        body, media_type = tar.getvalue(), MT_LAYER
        if o["comp"] == "gzip":
            body, media_type = gzip.compress(body), MT_LAYER_GZ
        dig, uncompressed = digest_of(body, o["algo"]), digest_of(b"", o["algo"])  # testdata.go's empty bufUncomp
        self.blobs[dig] = body
        self.desc[dig] = {"mediaType": media_type, "digest": dig, "size": len(body),
                          "data": body if o.get("set_data") else None}
        return dig, uncompressed

    def gen_config(self, for_platform: dict, diff_ids: list[str], **opts) -> str:
        o = {"algo": "sha256", "config_media_type": MT_CONFIG, **opts}
        config = {"author": "OCI Conformance Test", **for_platform, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        body = go_json(with_extra_field(config) if o.get("extra_field") else config)
        dig = digest_of(body, o["algo"])
        self.blobs[dig] = body
        self.desc[dig] = {"mediaType": o["config_media_type"], "digest": dig, "size": len(body),
                          "data": body if o.get("set_data") else None}
        return dig

    def _record(self, manifest: dict, body: bytes, o: dict, artifact_type: str) -> str:
        dig = digest_of(body, o["algo"])
        self.manifests[dig] = body
        self.man_order.append(dig)
        self.desc[dig] = {"mediaType": manifest["mediaType"], "digest": dig, "size": len(body),
                          "data": body if o.get("set_data") else None}
        if o.get("subject"):
            self.referrers[o["subject"]["digest"]].append({
                "mediaType": manifest["mediaType"], "artifactType": artifact_type, "digest": dig,
                "size": len(body), "annotations": manifest.get("annotations")})
        if o.get("tag"):
            self.tags[o["tag"]] = dig
        return dig

    def _annotations(self, o: dict) -> dict | None:
        annotations = dict(o["annotations"]) if o.get("annotations") else None
        if o.get("annotation_uniq"):
            annotations = annotations or {}
            annotations["org.example." + secrets.token_hex(8)] = secrets.token_hex(8)
        return annotations

    def gen_manifest(self, config_desc: dict, layer_descs: list[dict], **opts) -> str:
        o = {"algo": "sha256", **opts}
        manifest: dict = {"schemaVersion": 2, "mediaType": MT_IMAGE}
        if o.get("artifact_type"):
            manifest["artifactType"] = o["artifact_type"]
        manifest["config"] = descriptor_json(config_desc)
        manifest["layers"] = [descriptor_json(d) for d in layer_descs]
        if o.get("subject"):
            manifest["subject"] = descriptor_json(o["subject"])
        if annotations := self._annotations(o):
            manifest["annotations"] = annotations
        body = go_json(with_extra_field(manifest) if o.get("extra_field") else manifest)
        return self._record(manifest, body, o, o.get("artifact_type") or config_desc["mediaType"])

    def gen_manifest_full(self, **opts) -> str:
        o = {"layer_count": 2, "platform": {"architecture": "amd64", "os": "linux"}, **opts}
        compressed, uncompressed = [], []
        for n in range(o["layer_count"]):
            layer_mt = o.get("layer_media_type")
            if not layer_mt or layer_mt.startswith(MT_LAYER_PRE):
                c, u = self.gen_layer(n, **opts)
            elif o.get("layer_bytes") is not None:
                c = u = self.add_blob(o["layer_bytes"], descriptor_media_type=layer_mt, **opts)
            else:
                c = u = self.gen_blob(descriptor_media_type=layer_mt, **opts)[0]
            compressed.append(c)
            uncompressed.append(u)
        if o.get("config_media_type") in (None, MT_CONFIG):
            config = self.gen_config(o["platform"], uncompressed, **opts)
        else:
            config = self.add_blob(o["config_bytes"], descriptor_media_type=o["config_media_type"], **opts)
        return self.gen_manifest(self.desc[config], [self.desc[d] for d in compressed], **opts)

    def gen_index(self, child_platforms: list, children: list[str], **opts) -> str:
        o = {"algo": "sha256", **opts}
        index: dict = {"schemaVersion": 2, "mediaType": MT_INDEX}
        if o.get("artifact_type"):
            index["artifactType"] = o["artifact_type"]
        index["manifests"] = [descriptor_json({**self.desc[d], "platform": p})
                              for d, p in zip(children, child_platforms, strict=True)]
        if o.get("subject"):
            index["subject"] = descriptor_json(o["subject"])
        if annotations := self._annotations(o):
            index["annotations"] = annotations
        body = go_json(with_extra_field(index) if o.get("extra_field") else index)
        return self._record(index, body, o, o.get("artifact_type") or "")

    def gen_index_full(self, **opts) -> str:
        platforms = opts.get("platforms", [{"architecture": "amd64", "os": "linux"},
                                           {"architecture": "arm64", "os": "linux"}])
        children = [self.gen_manifest_full(**{"platform": p, **opts}) for p in platforms]
        return self.gen_index(platforms, children, **opts)


def artifact_opts(artifact_type: str, layer_media_type: str, tag: str, subject: dict | None = None) -> dict:
    opts = {"artifact_type": artifact_type, "annotations": {"org.opencontainers.conformance": "hello conformance test"},
            "annotation_uniq": True, "config_media_type": MT_EMPTY, "config_bytes": b"{}", "layer_count": 1,
            "layer_media_type": layer_media_type, "tag": tag}
    return opts | ({"subject": subject} if subject else {})


def generate(name: str) -> TestData:
    """run.go GenerateData, one data set of the default configuration."""
    td = TestData(name)
    amd64, arm64 = {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}
    if name == "image":
        td.gen_manifest_full(tag="image")
    elif name == "image-uncompressed":
        td.gen_manifest_full(tag="image-uncompressed", comp="none")
    elif name == "large-manifest":
        td.gen_manifest_full(tag="large-manifest",
                             annotations={f"large-annotation-{i}": "A" * 10000 for i in range(390)})
    elif name == "index":
        td.gen_index_full(tag="index", platforms=[amd64, arm64])
    elif name == "nested-index":
        one, two = td.gen_index_full(platforms=[amd64, arm64]), td.gen_index_full(platforms=[amd64, arm64])
        td.gen_index([None, None], [one, two], tag="index-of-index")
    elif name == "empty-index":
        td.gen_index_full(tag="index", platforms=[])
    elif name == "artifact":
        td.gen_manifest_full(tag="artifact", artifact_type=MT_CONF1, config_media_type=MT_EMPTY, config_bytes=b"{}",
                             layer_count=1, layer_media_type=MT_CONF1)
    elif name == "artifact-index":
        td.gen_index_full(tag="artifact-index", platforms=[amd64, arm64], artifact_type=MT_CONF1,
                          config_media_type=MT_EMPTY, config_bytes=b"{}", layer_count=1, layer_media_type=MT_CONF1)
    elif name == "artifact-without-layers":
        td.gen_manifest_full(tag="artifact-without-layers", artifact_type=MT_CONF1, config_media_type=MT_EMPTY,
                             config_bytes=b"{}", layer_count=1, layer_bytes=b"{}", layer_media_type=MT_EMPTY)
    elif name == "artifacts-with-subject":
        subject = dict(td.desc[td.gen_manifest_full(tag="image")])
        td.gen_manifest_full(subject=subject)
        td.gen_manifest_full(**artifact_opts(MT_CONF1, MT_CONF1, "tagged-artifact1", subject))
        td.gen_manifest_full(**artifact_opts(MT_CONF2, MT_OCTET, "tagged-artifact2", subject))
    elif name == "index-with-subject":
        subject = dict(td.desc[td.gen_index_full(tag="index")])
        td.gen_index_full(**artifact_opts(MT_CONF1, MT_CONF1, "tagged-artifact", subject))
    elif name == "missing-subject":
        missing = {"mediaType": MT_IMAGE, "size": 123, "digest": digest_of(b"missing content")}
        td.gen_manifest_full(**artifact_opts(MT_CONF1, MT_CONF1, "tagged-artifact", missing))
    elif name == "data-field":
        td.gen_manifest_full(tag="data-field", set_data=True)
    elif name == "non-distributable-layers":
        layers = []
        for media_type, size in ((MT_LAYER_ND_GZ, 123456), (MT_LAYER_ND, 12345)):
            dig = digest_of(os.urandom(256))
            layers.append({"mediaType": media_type, "digest": dig, "size": size,
                           "urls": [f"https://store.example.com/blobs/sha256/{dig.split(':')[1]}"]})
        normal, uncompressed = td.gen_layer(1)
        layers.append(td.desc[normal])
        config = td.gen_config(amd64, [digest_of(os.urandom(256)), layers[1]["digest"], uncompressed])
        td.gen_manifest(td.desc[config], layers, tag="non-distributable-image")
    elif name == "custom-fields":
        td.gen_index_full(tag="custom-fields", platforms=[amd64, arm64], extra_field=True)
    elif name == "no-layers":
        td.gen_manifest_full(tag="no-layers", layer_count=0)
    elif name == "sha512":
        td.gen_index_full(algo="sha512")
    elif name in ("tag-param-sha256", "tag-param-sha512"):
        td.gen_index_full(tag=name, algo=name.rsplit("-", 1)[1])
        for i, dig in enumerate(td.man_order):
            td.tags[f"{name}-{i}"] = dig
            td.tag_param.add(dig)
    elif name == "bad-digest-image":
        dig = td.gen_manifest_full()
        td.skip_pull.add(dig)
        td.bad_digest.add(dig)
        td.manifests[dig] += b"  "
    else:
        raise AssertionError(name)
    return td


DATA_SETS = ["image", "image-uncompressed", "large-manifest", "index", "nested-index", "empty-index", "artifact",
             "artifact-index", "artifact-without-layers", "artifacts-with-subject", "index-with-subject",
             "missing-subject", "data-field", "non-distributable-layers", "custom-fields", "no-layers", "sha512",
             "bad-digest-image"]


# -- the suite's operations (api.go), asserting what it expects --------------------------------------
class Run:
    """One conformance run against repositories `repo` and `repo2`; `skips` collects what the suite
    reports as Skip (errRegUnsupported): registry options, not failures."""

    def __init__(self, suite: Suite, repo: str, repo2: str):
        self.suite, self.repo, self.repo2 = suite, repo, repo2
        self.skips: list[str] = []
        self.apis = itertools.cycle(["post+put", "post only", "stream", "chunked"])

    def v2(self, repo: str, rest: str) -> str:
        return f"/v2/{repo}/{rest}"

    # blobs
    def verify_location(self, location: str, body: bytes) -> None:
        fetched = self.suite.do("GET", location)
        assert fetched.status_code == 200 and fetched.content == body, (location, fetched.status_code)

    def post_only(self, repo, dig, body, *, bad=False):
        response = self.suite.do("POST", self.v2(repo, "blobs/uploads/"), params={"digest": dig}, body=body,
                                 headers={"Content-Type": MT_OCTET})
        if bad:
            assert response.status_code in (400, 202), response.text
            if response.status_code == 202:
                put = self.suite.do("PUT", response.headers["Location"], params={"digest": dig}, body=body,
                                    headers={"Content-Type": MT_OCTET})
                assert put.status_code == 400, put.text
            return
        assert response.status_code in (201, 202) and response.headers.get("Location"), response.text
        if response.status_code == 202:
            self.skips.append("blob post only: fell back to PUT")
            response = self.suite.do("PUT", response.headers["Location"], params={"digest": dig}, body=body,
                                     headers={"Content-Type": MT_OCTET})
            assert response.status_code == 201, response.text
        check_digest_header(response, dig)
        self.verify_location(response.headers["Location"], body)

    def post_put(self, repo, dig, body, *, bad=False):
        started = self.suite.do("POST", self.v2(repo, "blobs/uploads/"))
        assert started.status_code == 202 and started.headers.get("Location"), started.text
        put = self.suite.do("PUT", started.headers["Location"], params={"digest": dig}, body=body,
                            headers={"Content-Type": MT_OCTET})
        if bad:
            assert put.status_code == 400, put.text
            return
        assert put.status_code == 201, put.text
        check_digest_header(put, dig)
        self.verify_location(put.headers["Location"], body)

    def stream(self, repo, dig, body, *, bad=False):
        started = self.suite.do("POST", self.v2(repo, "blobs/uploads/"), body=b"")
        assert started.status_code == 202 and started.headers.get("Location"), started.text
        patched = self.suite.do("PATCH", started.headers["Location"], headers={"Content-Type": MT_OCTET},
                                body=lambda: iter([c for c in (body[: len(body) // 2], body[len(body) // 2:]) if c]))
        assert patched.status_code == 202 and patched.headers.get("Location"), patched.text
        put = self.suite.do("PUT", patched.headers["Location"], params={"digest": dig}, body=b"",
                            headers={"Content-Type": MT_OCTET})
        if bad:
            assert put.status_code == 400, put.text
            return
        assert put.status_code == 201 and put.headers.get("Location"), put.text
        check_digest_header(put, dig)
        self.verify_location(put.headers["Location"], body)

    def chunked(self, repo, dig, body, *, bad=False, put_last=False, out_of_order=False) -> requests.Response:
        started = self.suite.do("POST", self.v2(repo, "blobs/uploads/"), body=b"")
        assert started.status_code == 202, started.text
        location = started.headers.get("Location", "")
        chunk = len(body) // 3 + 1
        if started.headers.get("OCI-Chunk-Min-Length"):
            chunk = max(chunk, int(started.headers["OCI-Chunk-Min-Length"]))
        chunk = min(max(chunk, CHUNK_MIN), len(body))
        last = -1
        response = started
        while last < len(body) - 1:
            if out_of_order:
                assert location, "blob request did not return a location"
                bad_start = last + 1 + chunk
                if bad_start >= len(body):
                    bad_start = 0
                bad_last = min(bad_start + chunk - 1, len(body) - 1)
                method, params = "PATCH", None
                if put_last and bad_last == len(body) - 1:
                    method, params = "PUT", {"digest": dig}
                refused = self.suite.do(method, location, params=params, body=body[bad_start:bad_last + 1],
                                        headers={"Content-Type": MT_OCTET, "Content-Range": f"{bad_start}-{bad_last}"})
                assert refused.status_code == 416, (method, bad_start, bad_last, refused.status_code, refused.text)
                location = refused.headers.get("Location") or location
                status = self.suite.do("GET", location)
                assert status.status_code == 204, status.text
                location = status.headers.get("Location") or location
                range_header = status.headers.get("Range", "")
                assert range_header.startswith("0-"), f"content-range header is missing the 0- prefix: {range_header!r}"
                assert last < 0 or int(range_header[2:]) == last, (range_header, last)
            assert location, "blob request did not return a location"
            start, last = last + 1, min(last + chunk, len(body) - 1)
            final = put_last and last == len(body) - 1
            response = self.suite.do("PUT" if final else "PATCH", location,
                                     params={"digest": dig} if final else None, body=body[start:last + 1],
                                     headers={"Content-Type": MT_OCTET, "Content-Range": f"{start}-{last}"})
            if final:
                assert response.status_code == (400 if bad else 201), response.text
            else:
                assert response.status_code == 202, response.text
                location = response.headers.get("Location", "")
        if not put_last:
            assert location, "blob patch did not return a location"
            response = self.suite.do("PUT", location, params={"digest": dig}, body=b"",
                                     headers={"Content-Type": MT_OCTET})
            assert response.status_code == (400 if bad else 201), response.text
        if not bad:
            check_digest_header(response, dig)
            self.verify_location(response.headers["Location"], body)
        return started

    def push_blob_any(self, repo, dig, body, *, bad=False):
        api = next(self.apis)
        {"post+put": self.post_put, "post only": self.post_only, "stream": self.stream,
         "chunked": self.chunked}[api](repo, dig, body, bad=bad)

    def mount(self, repo, source, dig, body):
        params = {"mount": dig} | ({"from": source} if source else {})
        response = self.suite.do("POST", self.v2(repo, "blobs/uploads/"), params=params)
        assert response.status_code in (201, 202) and response.headers.get("Location"), response.text
        if response.status_code == 202:
            put = self.suite.do("PUT", response.headers["Location"], params={"digest": dig}, body=body,
                                headers={"Content-Type": MT_OCTET})
            assert put.status_code == 201, put.text
            self.verify_location(put.headers["Location"], body)
            return 202
        check_digest_header(response, dig)
        self.verify_location(response.headers["Location"], body)
        return 201

    def head_blob(self, repo, dig, body: bytes | None):
        head = self.suite.do("HEAD", self.v2(repo, f"blobs/{dig}"))
        assert head.status_code == 200 and head.content == b"", (dig, head.status_code)
        if body is not None and (body or dig == EMPTY_DIGEST):
            assert head.headers.get("Content-Length") == str(len(body)), head.headers
        check_digest_header(head, dig)

    def get_blob(self, repo, dig, body: bytes | None):
        got = self.suite.do("GET", self.v2(repo, f"blobs/{dig}"))
        assert got.status_code == 200, (dig, got.status_code, got.text)
        if body is not None and (body or dig == EMPTY_DIGEST):
            assert got.content == body and got.headers.get("Content-Length") == str(len(body)), got.headers
        check_digest_header(got, dig)

    def delete_blob(self, repo, dig):
        deleted = self.suite.do("DELETE", self.v2(repo, f"blobs/{dig}"), body=b"")
        assert deleted.status_code in (202, 404, 405), deleted.text
        if deleted.status_code == 405:
            self.skips.append(f"blob delete {dig}: 405")
            return
        assert self.suite.do("HEAD", self.v2(repo, f"blobs/{dig}")).status_code == 404, dig

    # manifests
    def put_manifest(self, td: TestData, ref: str, dig: str, *, params=None) -> requests.Response:
        body = td.manifests[dig]
        parsed = json.loads(body)
        media_type = parsed.get("mediaType") or MT_IMAGE
        response = self.suite.do("PUT", self.v2(self.repo, f"manifests/{ref}"), params=params, body=body,
                                 headers={"Content-Type": media_type})
        if dig in td.bad_digest:
            assert response.status_code == 400, response.text
            return response
        assert response.status_code == 201, (ref, response.status_code, response.text)
        if parsed.get("subject"):
            assert response.headers.get("OCI-Subject") == parsed["subject"]["digest"], response.headers
        check_digest_header(response, dig)
        location = response.headers.get("Location")
        assert location, "manifest put did not return a location"
        fetched = self.suite.do("GET", location, headers={"Accept": f"{MT_INDEX}, {MT_IMAGE}"})
        assert fetched.status_code == 200 and fetched.content == body, (location, fetched.status_code)
        assert fetched.headers.get("Content-Type") == media_type
        assert fetched.headers.get("Content-Length") == str(len(body))
        return response

    def manifest_exists(self, td: TestData, method: str, ref: str, dig: str):
        response = self.suite.do(method, self.v2(self.repo, f"manifests/{ref}"),
                                 headers={"Accept": f"{MT_INDEX}, {MT_IMAGE}"})
        body = td.manifests[dig]
        assert response.status_code == 200, (method, ref, response.status_code, response.text)
        assert response.content == (body if method == "GET" else b"")
        assert response.headers.get("Content-Type") == (json.loads(body).get("mediaType") or MT_IMAGE)
        assert response.headers.get("Content-Length") == str(len(body))
        check_digest_header(response, dig)

    def referrers(self, subject: str, **params) -> requests.Response:
        response = self.suite.do("GET", self.v2(self.repo, f"referrers/{subject}"), params=params)
        assert response.status_code == 200 and response.headers.get("Content-Type") == MT_INDEX, response.text
        body = response.json()
        assert body["mediaType"] == MT_INDEX and body["schemaVersion"] == 2, body
        return response

    def tag_list(self, **params) -> list[str] | None:
        response = self.suite.do("GET", self.v2(self.repo, "tags/list"), params=params)
        assert response.status_code in (200, 404), response.text
        return response.json()["tags"] if response.status_code == 200 else None


def contains(listed: list[dict], goal: dict) -> bool:
    return any(d["digest"] == goal["digest"] and d["mediaType"] == goal["mediaType"] and d["size"] == goal["size"]
               and d.get("artifactType", "") == goal["artifactType"]
               and all((d.get("annotations") or {}).get(k) == v for k, v in (goal["annotations"] or {}).items())
               for d in listed)


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(registry, sandbox) -> Run:
    """OCI_REPO1/OCI_REPO2 of one conformance run, with its client (and auth cache)."""
    suite = Suite(sandbox, registry.host, registry.admin.name, registry.admin.password)
    return Run(suite, unique("conformance/repo1"), unique("conformance/repo2"))


def fresh_run(registry, sandbox) -> Run:
    suite = Suite(sandbox, registry.host, registry.admin.name, registry.admin.password)
    return Run(suite, unique("conformance/repo1"), unique("conformance/repo2"))


# -- the default run, in order -------------------------------------------------------------------------
def test_ping_follows_a_challenge_without_scope(run):
    response = run.suite.do("GET", "/v2/")
    assert response.status_code == 200, response.text
    assert run.suite.token_requests[-1] == {"service": run.suite.token_requests[-1]["service"]}  # no scope


def test_empty_tag_list_and_referrers(run):
    assert run.tag_list() in (None, [])
    run.referrers(digest_of(secrets.token_bytes(16)))


@pytest.mark.parametrize("algo", ["sha256", "sha512"])
def test_blob_apis(run, algo):
    """run.go TestBlobAPIs: every push API, HEAD/GET/DELETE after each, ranges, well known blobs, bad digests."""
    repo, repo2 = run.repo, run.repo2
    blobs = {name: os.urandom(512) for name in ("post only", "post+put", "chunked single", "stream", "mount",
                                                 "mount anonymous", "mount missing", "post cancel")}
    dig = {name: digest_of(body, algo) for name, body in blobs.items()}
    missing = run.suite.do("GET", run.v2(repo, f"blobs/{dig['post cancel']}"))
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "BLOB_UNKNOWN"

    run.post_only(repo, dig["post only"], blobs["post only"])
    run.post_put(repo, dig["post+put"], blobs["post+put"])
    run.chunked(repo, dig["chunked single"], blobs["chunked single"])
    run.stream(repo, dig["stream"], blobs["stream"])
    run.post_put(repo2, dig["mount"], blobs["mount"])
    assert run.mount(repo, repo2, dig["mount"], blobs["mount"]) == 201
    run.post_put(repo2, dig["mount anonymous"], blobs["mount anonymous"])
    if run.mount(repo, None, dig["mount anonymous"], blobs["mount anonymous"]) == 202:
        run.skips.append("anonymous mount: 202, fell back to POST+PUT")
    assert run.mount(repo, repo2, dig["mount missing"], blobs["mount missing"]) == 202  # errRegUnsupported: a pass
    # post cancel (UploadCancel, on in the 1.1+dev configuration)
    started = run.suite.do("POST", run.v2(repo, "blobs/uploads/"))
    assert run.suite.do("DELETE", started.headers["Location"], body=b"").status_code == 204

    size = CHUNK_MIN * 3 - 5
    for name, flags in (("chunked multi", {}), ("chunked multi and put chunk", {"put_last": True}),
                        ("chunked out-of-order", {"out_of_order": True}),
                        ("chunked out-of-order and put chunk", {"put_last": True, "out_of_order": True})):
        blobs[name] = os.urandom(size)
        dig[name] = digest_of(blobs[name], algo)
        run.chunked(repo, dig[name], blobs[name], **flags)
    for name in blobs:
        if name not in ("post cancel", "mount anonymous"):
            run.head_blob(repo, dig[name], blobs[name])
            run.get_blob(repo, dig[name], blobs[name])
        run.delete_blob(repo, dig[name])
        if name.startswith("mount") and name != "mount missing":
            run.delete_blob(repo2, dig[name])

    # range requests
    body = os.urandom(2048)
    ranged = digest_of(body, algo)
    run.push_blob_any(repo, ranged, body)
    for spec, start, end in (("500-1499", 500, 1500), ("500-", 500, 2048), ("-500", 1548, 2048),
                             ("2000-5000", 2000, 2048)):
        got = run.suite.do("GET", run.v2(repo, f"blobs/{ranged}"), headers={"Range": f"bytes={spec}"})
        assert got.status_code == 206 and got.content == body[start:end], (spec, got.status_code)
        assert got.headers["Content-Length"] == str(end - start)
        assert got.headers["Content-Range"] in (f"bytes {start}-{end - 1}/2048", f"bytes {start}-{end - 1}/*")
    for spec in ("500-0", "5000-10000"):
        got = run.suite.do("GET", run.v2(repo, f"blobs/{ranged}"), headers={"Range": f"bytes={spec}"})
        assert got.status_code == 416, (spec, got.status_code)
    run.delete_blob(repo, ranged)

    # well known contents: empty (EmptyBlob) and emptyJSON
    for known in (b"", b"{}"):
        known_digest = digest_of(known, algo)
        for _ in range(4):  # every push API
            run.push_blob_any(repo, known_digest, known)
        run.head_blob(repo, known_digest, known)
        run.get_blob(repo, known_digest, known)
        run.delete_blob(repo, known_digest)

    # bad digests: the body does not match
    for push in (run.post_only, run.post_put, run.stream):
        good = os.urandom(size)
        push(repo, digest_of(good, algo), good + b"oh no", bad=True)
    good = os.urandom(size)
    run.chunked(repo, digest_of(good, algo), good + b"oh no", bad=True)
    run.chunked(repo, digest_of(good, algo), good + b"oh no", bad=True, put_last=True)


@pytest.mark.parametrize("name", DATA_SETS)
def test_data_set(run, name):
    """run.go TestAll's per-data-set run: push, tag list (with `last`), HEAD, GET, referrers, delete."""
    td = generate(name)
    repo = run.repo
    # push
    for dig, body in td.blobs.items():
        run.push_blob_any(repo, dig, body)
    for dig in td.man_order:
        run.put_manifest(td, dig, dig)
    for tag, dig in td.tags.items():
        if tag not in td.tag_pushed:
            run.put_manifest(td, tag, dig)
            td.tag_pushed.add(tag)
    # tag list, with `last` at the middle
    listed = run.tag_list() or []
    assert set(td.tags) <= set(listed), (td.tags, listed)
    if len(listed) >= 2:
        ordered = sorted(listed)
        end = len(ordered) // 2
        partial = run.tag_list(last=ordered[end - 1]) or []
        assert not set(ordered[:end]) & set(partial) and set(ordered[end:]) <= set(partial), (ordered, partial)
    # head and pull
    for method in ("HEAD", "GET"):
        for tag, dig in td.tags.items():
            if dig not in td.skip_pull:
                run.manifest_exists(td, method, tag, dig)
        for dig in td.man_order:
            if dig not in td.skip_pull:
                run.manifest_exists(td, method, dig, dig)
    for dig, body in td.blobs.items():
        run.head_blob(repo, dig, body)
        run.get_blob(repo, dig, body)
    # referrers, unfiltered and by each artifactType
    for subject, goals in td.referrers.items():
        listed = run.referrers(subject).json()["manifests"]
        assert all(contains(listed, goal) for goal in goals), (goals, listed)
        for artifact_type in {goal["artifactType"] for goal in goals}:
            filtered = run.referrers(subject, artifactType=artifact_type)
            applied = [f.strip() for f in filtered.headers.get("OCI-Filters-Applied", "").split(",")]
            assert "artifactType" in applied, filtered.headers
            manifests = filtered.json()["manifests"]
            assert all(contains(manifests, g) for g in goals if g["artifactType"] == artifact_type)
            assert all(d.get("artifactType", "") == artifact_type for d in manifests), manifests
    # delete: tags, manifests newest first, blobs; each checked gone at once
    for tag in td.tags:
        if tag in td.tag_pushed:
            deleted = run.suite.do("DELETE", run.v2(repo, f"manifests/{tag}"), body=b"")
            assert deleted.status_code in (202, 404, 400, 405), deleted.text
            assert deleted.status_code in (202, 404), f"tag delete unsupported: {deleted.status_code}"
            assert run.suite.do("HEAD", run.v2(repo, f"manifests/{tag}")).status_code == 404, tag
    for dig in reversed(td.man_order):
        deleted = run.suite.do("DELETE", run.v2(repo, f"manifests/{dig}"), body=b"")
        assert deleted.status_code in (202, 404), deleted.text
        assert run.suite.do("HEAD", run.v2(repo, f"manifests/{dig}")).status_code == 404, dig
    for dig in td.blobs:
        run.delete_blob(repo, dig)


def test_manifest_errors(run):
    """run.go TestManifestErrors: missing manifests by digest and tag, the digest "sha256:baddigeststring"."""
    for ref in (digest_of(os.urandom(1024)), f"missing-{secrets.token_hex(10)}"):
        response = run.suite.do("GET", run.v2(run.repo, f"manifests/{ref}"), headers={"Accept": MT_IMAGE})
        assert response.status_code == 404 and response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    td = TestData("invalid-manifest-digest")
    dig = td.gen_manifest_full(layer_count=1)
    for blob, body in td.blobs.items():
        run.push_blob_any(run.repo, blob, body)
    td.bad_digest.add(dig)
    run.put_manifest(td, "sha256:baddigeststring", dig)
    got = run.suite.do("GET", run.v2(run.repo, "manifests/sha256:baddigeststring"))
    assert got.status_code in (404, 400)
    assert run.suite.do("DELETE", run.v2(run.repo, f"manifests/{dig}")).status_code in (202, 404)
    for blob in td.blobs:
        run.delete_blob(run.repo, blob)


def test_the_default_run_only_skipped_the_anonymous_mount(run):
    """Everything above passed; what the suite would report as Skip (not failures)."""
    assert set(run.skips) <= {"anonymous mount: 202, fell back to POST+PUT"}, run.skips


# -- the default run's blob reads through a data endpoint (307, followed) ---------------------------------
@pytest.fixture(scope="module")
def split_registry(acr, arm) -> SimpleNamespace:
    group = new_group(arm)
    reg = create_registry(acr, group, data_endpoint=True)
    return SimpleNamespace(group=group, registry=reg, host=reg.login_server, admin=new_token(acr, group, reg))


def test_blob_reads_follow_the_data_endpoint_redirect(split_registry, sandbox):
    run = fresh_run(split_registry, sandbox)
    body = os.urandom(2048)
    dig = digest_of(body)
    run.post_put(run.repo, dig, body)  # BlobVerifyLocation GETs through the redirect
    got = run.suite.do("GET", run.v2(run.repo, f"blobs/{dig}"))
    assert got.status_code == 200 and got.content == body and got.history and got.history[0].status_code == 307
    ranged = run.suite.do("GET", run.v2(run.repo, f"blobs/{dig}"), headers={"Range": "bytes=500-1499"})
    assert ranged.status_code == 206 and ranged.content == body[500:1500]
    assert ranged.headers["Content-Range"] == "bytes 500-1499/2048"
    run.head_blob(run.repo, dig, body)
    missing = run.suite.do("GET", run.v2(run.repo, f"blobs/{digest_of(b'never pushed')}"))
    assert missing.status_code == 404


# == divergences: each of these FAILS against the sandbox today =========================================
def test_tag_param_sha512_data_set(registry, sandbox):
    """run.go "tag-param-sha512" (APIs.Manifests.TagParam, on with OCI_VERSION=dev): every manifest is
    pushed by its sha512 digest with `?tag=` parameters, and the tags must come back in OCI-Tag.
    Where they do not, the suite pushes each tag by name and then expects Docker-Content-Digest to be
    the sha512 digest on that PUT and on HEAD/GET by tag: a failure, not a skip."""
    run = fresh_run(registry, sandbox)
    td = generate("tag-param-sha512")
    for dig, body in td.blobs.items():
        run.push_blob_any(run.repo, dig, body)
    missing_oci_tag = []
    for dig in td.man_order:
        tags = [t for t, d in td.tags.items() if d == dig]
        response = run.put_manifest(td, dig, dig, params=[("tag", t) for t in tags])
        announced = {t.strip() for v in response.raw.headers.getlist("OCI-Tag") for t in v.split(",")}
        missing_oci_tag += [t for t in tags if t not in announced]
        td.tag_pushed |= set(tags) & announced
    failures = []
    for tag, dig in td.tags.items():
        try:
            if tag not in td.tag_pushed:
                run.put_manifest(td, tag, dig)  # the suite's fallback
            run.manifest_exists(td, "HEAD", tag, dig)
        except AssertionError as exc:
            failures.append(f"{tag}: {str(exc).splitlines()[0][:150]}")
    assert not missing_oci_tag and not failures, "\n".join([f"OCI-Tag lacks {missing_oci_tag}", *failures])


def test_put_by_digest_with_tag_params_tags_it_and_answers_oci_tag(registry, sandbox):
    """distribution-spec 1.1 "Pushing Manifests" (`?tag=`, 1.1+dev): each tag points at the digest;
    OCI-Tag lists them."""
    run = fresh_run(registry, sandbox)
    td = TestData("tag-param")
    dig = td.gen_manifest_full(algo="sha512")
    for blob, body in td.blobs.items():
        run.push_blob_any(run.repo, blob, body)
    response = run.put_manifest(td, dig, dig, params=[("tag", "one"), ("tag", "two")])
    announced = {t.strip() for v in response.raw.headers.getlist("OCI-Tag") for t in v.split(",")}
    assert announced == {"one", "two"}, response.headers
    head = run.suite.do("HEAD", run.v2(run.repo, "manifests/two"))
    assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == dig


def test_tags_list_with_n_zero_is_an_empty_page(run):
    """distribution-spec "Listing Tags": `n` limits the page; n=0 asks for none (the sandbox answers 500:
    responses._page takes items[-1] of an empty page)."""
    td = TestData("n-zero")
    dig = td.gen_manifest_full(tag="v1")
    for blob, body in td.blobs.items():
        run.push_blob_any(run.repo, blob, body)
    run.put_manifest(td, "v1", dig)
    response = run.suite.do("GET", run.v2(run.repo, "tags/list"), params={"n": "0"})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == [] and "Link" not in response.headers


def test_tags_list_with_a_non_integer_n_is_a_400(run):
    response = run.suite.do("GET", run.v2(run.repo, "tags/list"), params={"n": "ten"})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


def test_blob_get_through_the_data_endpoint_carries_docker_content_digest(split_registry, sandbox):
    """OCI_VERSION=dev sets APIs.Blobs.DigestHeader: BlobGetExistsFull and BlobVerifyLocation then
    require Docker-Content-Digest on the final (redirected) response, which get_signed_blob omits."""
    run = fresh_run(split_registry, sandbox)
    body = os.urandom(1024)
    dig = digest_of(body)
    run.post_put(run.repo, dig, body)
    got = run.suite.do("GET", run.v2(run.repo, f"blobs/{dig}"))
    assert got.status_code == 200 and got.history
    check_digest_header(got, dig, required=True)


def test_a_mount_without_from_opens_an_upload_session(registry, sandbox):
    """run.go "mount anonymous" (APIs.Blobs.MountAnonymous): POST ?mount=<digest> without `from`.
    The spec lets a registry find the blob itself ("automatic content discovery", a MAY) or open an
    upload session (202), which the suite reports as a Skip, not a failure. The sandbox opens the
    session: ACR documents no discovery, and finding the blob would mean searching repositories the
    caller's access token was never issued for."""
    run = fresh_run(registry, sandbox)
    body = os.urandom(512)
    dig = digest_of(body, "sha512")
    run.post_put(run.repo2, dig, body)
    assert run.mount(run.repo, None, dig, body) == 202
