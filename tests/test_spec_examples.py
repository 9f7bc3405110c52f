"""Every vendored x-ms-example for the operations the sandbox emulates, replayed against it.

The status must be one the example lists and the body must validate against the spec's
response schema. Resources an example refers to (its registry, tokens, scope maps, parent
connected registry, hub) are created first through ARM, so each example stands alone.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import spec_replay

from crlib.sandbox import control

ACR = "2025-11-01"
DEVICES = "2023-06-30"
_ARM_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>Microsoft\.\w+)/(?P<type>registries|IotHubs)/"
    r"(?P<name>[^/\"?]+)(?:/(?P<child>tokens|scopeMaps|connectedRegistries)/(?P<child_name>[^/\"?]+))?",
    re.I,
)
_ARC_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Kubernetes/connectedClusters/"
    r"(?P<name>[^/\"?]+)(?:/providers/Microsoft\.KubernetesConfiguration/extensions/(?P<ext>[^/\"?]+))?",
    re.I,
)
EXTENSIONS = "2025-03-01"
EXAMPLES = spec_replay.examples()


def wait(arm, response, timeout: float = 30):
    """Follow a long-running operation to its end, as the SDKs do."""
    url = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
    deadline = time.monotonic() + timeout
    while url and time.monotonic() < deadline:
        poll = arm.session.get(url)
        if poll.status_code == 202 or (poll.status_code == 200 and poll.json().get("status") == "InProgress"):
            time.sleep(float(poll.headers.get("Retry-After", "0.05")))
            continue
        assert poll.status_code in (200, 204), poll.text
        return poll
    assert not url, f"operation at {url} did not finish"
    return response


class Prerequisites:
    """Get-or-create what an example refers to, through plain ARM calls."""

    def __init__(self, arm, status: dict | None = None):
        self.arm = arm
        self.status = status or {}

    def id(self, path: str) -> str:
        return path.replace("{sub}", self.arm.sub)

    def _put(self, path: str, version: str, body: dict):
        response = self.arm.request("PUT", path, version, json=body)
        assert response.status_code in (200, 201), response.text
        wait(self.arm, response)

    def _exists(self, path: str, version: str) -> dict | None:
        response = self.arm.request("GET", path, version)
        return response.json() if response.status_code == 200 else None

    def group(self, rg: str) -> str:
        path = f"/subscriptions/{{sub}}/resourceGroups/{rg}"
        if self._exists(path, "2024-03-01") is None:
            self._put(path, "2024-03-01", {"location": "westus"})
        return path

    def registry(self, rg: str, name: str) -> str:
        path = self.group(rg) + f"/providers/Microsoft.ContainerRegistry/registries/{name}"
        found = self._exists(path, ACR)
        if found is None:
            self._put(path, ACR, {"location": "westus", "sku": {"name": "Premium"}})
            found = self._exists(path, ACR)
        # An earlier example (RegistryUpdate) may have moved it to Standard.
        if found["sku"]["name"] != "Premium" or not found["properties"].get("dataEndpointEnabled"):
            response = self.arm.request("PATCH", path, ACR, json={
                "sku": {"name": "Premium"}, "properties": {"dataEndpointEnabled": True}})
            assert response.status_code in (200, 201), response.text
            wait(self.arm, response)
        return path

    def scope_map(self, registry: str, name: str) -> str:
        path = f"{registry}/scopeMaps/{name}"
        if self._exists(path, ACR) is None:
            self._put(path, ACR, {"properties": {"actions": ["repositories/hello-world/content/read"]}})
        return path

    def token(self, registry: str, name: str) -> str:
        path = f"{registry}/tokens/{name}"
        if self._exists(path, ACR) is None:
            scope_map = self.scope_map(registry, "examplesScopeMap")
            self._put(path, ACR, {"properties": {"scopeMapId": self.id(scope_map), "status": "enabled"}})
        return path

    def connected_registry(self, registry: str, name: str) -> str:
        path = f"{registry}/connectedRegistries/{name}"
        if self._exists(path, ACR) is None:
            token = self.token(registry, f"{name}SyncToken")
            self._put(path, ACR, {"properties": {"mode": "ReadWrite", "parent": {"syncProperties": {
                "tokenId": self.id(token), "messageTtl": "P2D"}}}})
        return path

    def without_premium_features(self, rg: str, name: str) -> None:
        """A registry can leave Premium only once nothing Premium-only is in use."""
        registry = self.registry(rg, name)
        for child in self.arm.request("GET", f"{registry}/connectedRegistries", ACR).json()["value"]:
            wait(self.arm, self.arm.request("DELETE", child["id"], ACR))
        response = self.arm.request("PATCH", registry, ACR, json={"properties": {"dataEndpointEnabled": False}})
        assert response.status_code in (200, 201), response.text
        wait(self.arm, response)

    def source_image(self, registry: str, image: str) -> None:
        """Give a registry the image an import example copies from it: hello-world from the image source."""
        response = self.arm.request("POST", f"{registry}/importImage", ACR, json={
            "source": {"registryUri": "mcr.microsoft.com", "sourceImage": "hello-world:latest"},
            "targetTags": [image], "mode": "Force"})
        assert response.status_code == 202, response.text
        wait(self.arm, response)

    def hub(self, rg: str, name: str) -> str:
        path = self.group(rg) + f"/providers/Microsoft.Devices/IotHubs/{name}"
        if self._exists(path, DEVICES) is None:
            self._put(path, DEVICES, {"location": "westus", "sku": {"name": "S1", "capacity": 1}})
        return path

    def cluster(self, rg: str, name: str) -> str:
        """A cluster connected as `az connectedk8s connect` leaves one (Connected, agents reporting)."""
        path = self.group(rg) + f"/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        if self._exists(path, "2026-05-01") is None:
            # Microsoft's Arc examples all place their clusters in East US.
            control.connect_cluster(self.status, name, rg, location="eastus")
        return path

    def extension(self, rg: str, cluster: str, name: str) -> str:
        path = self.cluster(rg, cluster) + f"/providers/Microsoft.KubernetesConfiguration/extensions/{name}"
        if self._exists(path, EXTENSIONS) is None:
            self._put(path, EXTENSIONS, {"properties": {"extensionType": "azuremonitor-containers"}})
        return path

    def ensure(self, match: re.Match) -> None:
        rg, kind, name = match["rg"], match["type"].lower(), match["name"]
        if kind == "iothubs":
            self.hub(rg, name)
            return
        registry = self.registry(rg, name)
        child, child_name = (match["child"] or "").lower(), match["child_name"]
        if child == "tokens":
            self.token(registry, child_name)
        elif child == "scopemaps":
            self.scope_map(registry, child_name)
        elif child == "connectedregistries":
            self.connected_registry(registry, child_name)


# Microsoft's scope map examples use action names ACR does not have ('contentWrite', 'delete'); the
# SDK's own docs give the grammar 'repositories/<name>/content/read'. The literal example must be
# refused, and the example with the documented names must replay.
ERRATA = {
    "ScopeMapCreate.json": {"contentWrite": "content/write", "contentRead": "content/read", "/delete": "/content/delete"},
    "ScopeMapUpdate.json": {"contentWrite": "content/write", "contentRead": "content/read", "/delete": "/content/delete"},
}


# An image whose digest is all zeros exists nowhere: the import is accepted, then its operation fails.
MISSING_SOURCE_IMAGES = {"ImportImageByManifestDigest.json"}


def _corrected(body, fixes: dict[str, str]):
    text = json.dumps(body)
    for wrong, right in fixes.items():
        text = text.replace(wrong, right)
    return json.loads(text)


# Arc examples the sandbox refuses on purpose, each with the error it answers (tests/specs/README.md):
# listClusterUserCredential needs the Cluster Connect relay, which the sandbox does not emulate;
# CreateExtensionWithIdentity sends identity type UserAssigned, which the spec's Identity (common-types
# v2, enum SystemAssigned only) does not allow; GetExtensionWithManagedBy and ...WithManagementDetails
# read extensions on an AKS cluster (Microsoft.ContainerService/managedClusters), which the sandbox
# does not emulate, so ARM answers that the parent does not exist.
REFUSED = {
    "ConnectedClustersListClusterCredentialResultCSPAAD.json": (400, "NotSupported"),
    "ConnectedClustersListClusterCredentialResultCSPToken.json": (400, "NotSupported"),
    "ConnectedClustersListClusterCredentialResultHPAAD.json": (400, "NotSupported"),
    "ConnectedClustersListClusterCredentialResultHPToken.json": (400, "NotSupported"),
    "CreateExtensionWithIdentity.json": (400, "InvalidIdentity"),
    "GetExtensionWithManagedBy.json": (404, "ParentResourceNotFound"),
    "GetExtensionWithManagementDetails.json": (404, "ParentResourceNotFound"),
}


def _prepare_arc(example, path: str, prerequisites: Prerequisites) -> str:
    """Create the cluster (and extension) an Arc example acts on; returns the path to call."""
    target = _ARC_ID.search(path)
    if target is None:
        return path
    extension = target["ext"] or example.parameters.get("extensionName")
    is_extension = "Microsoft.KubernetesConfiguration" in example.template
    if example.method == "PUT" and not is_extension:
        prerequisites.group(target["rg"])
    elif is_extension and (example.method == "PUT" or not extension):
        prerequisites.cluster(target["rg"], target["name"])
    elif is_extension:
        prerequisites.extension(target["rg"], target["name"], extension)
    else:
        prerequisites.cluster(target["rg"], target["name"])
    if example.operation_id == "OperationStatus_Get":
        # The example's operation id is Azure's; use one of the sandbox's, from a real update.
        ext_path = path.split("/operations/")[0]
        patched = prerequisites.arm.session.patch(prerequisites.arm.base + ext_path,
                                                  params={"api-version": EXTENSIONS}, json={"properties": {}})
        assert patched.status_code == 202, patched.text
        op_id = patched.headers["Azure-AsyncOperation"].split("/operations/")[1].split("?")[0]
        wait(prerequisites.arm, patched)
        path = f"{ext_path}/operations/{op_id}"
    return path


def _prepare(example, path: str, body, prerequisites: Prerequisites) -> None:
    """Create what the body refers to, and the target itself unless the example creates it."""
    creates = example.method == "PUT"
    for match in _ARM_ID.finditer(json.dumps(body)):
        prerequisites.ensure(match)
    target = _ARM_ID.search(path)
    if target is None:
        return
    if creates:
        # Only the parent must exist: the registry for a child, the group for a top-level resource.
        if target["child"]:
            prerequisites.registry(target["rg"], target["name"])
        else:
            prerequisites.group(target["rg"])
    else:
        prerequisites.ensure(target)
    source = (body or {}).get("source", {}) if example.operation_id == "Registries_ImportImage" else {}
    if "resourceId" in source and example.path.name not in MISSING_SOURCE_IMAGES:
        # Microsoft's source registry holds the image; the sandbox's starts empty.
        found = _ARM_ID.search(source["resourceId"])
        prerequisites.source_image(prerequisites.registry(found["rg"], found["name"]), source["sourceImage"])
    if example.operation_id == "Registries_Update" and example.parameters["registryUpdateParameters"].get(
            "sku", {}).get("name") != "Premium":
        prerequisites.without_premium_features(target["rg"], target["name"])


# Key Vault's data plane (keys.json): the vault is its own host, with a vault token. Microsoft's key
# examples are RSA keys; the replay makes the key an example acts on (its version is the sandbox's,
# swapped into the path) and, for recover and purge, deletes it first.
KEYVAULT_EXAMPLES_FOR_DELETED = {"RecoverDeletedKey-example.json", "PurgeDeletedKey-example.json"}
# verify-example sends the signature as `digest` and the digest as `value`, the reverse of
# KeyVerifyParameters; the literal example is refused (a 256-byte digest for RS512) and the swapped one replays.
KEYVAULT_SWAPPED = {"verify-example.json"}
# Key Vault sends `"nextLink": null` on a last page, which the spec's string type does not allow.
KEYVAULT_TOLERATED = {"nextLink: None is not of type 'string'", "/nextLink: null"}


def _vault(sandbox, credential) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox["ca_bundle"]
    session.headers["Authorization"] = "Bearer " + credential.get_token("https://vault.azure.net/.default").token
    return session


def _replay_keyvault(example, sandbox, credential) -> None:
    vault = _vault(sandbox, credential)
    base = sandbox["key_vault_url"].rstrip("/")
    method, path, query, body = spec_replay.build_request(example, sandbox["subscription_id"])
    name = example.parameters["key-name"]
    if example.operation_id != "CreateKey":
        deleted = vault.get(f"{base}/deletedkeys/{name}", params=query)
        if deleted.status_code == 200:
            assert vault.delete(f"{base}/deletedkeys/{name}", params=query).status_code == 204
        created = vault.post(f"{base}/keys/{name}/create", params=query, json={"kty": "RSA", "key_size": 2048})
        assert created.status_code == 200, created.text
        version = example.parameters.get("key-version")
        if version:
            path = path.replace(version, created.json()["key"]["kid"].rsplit("/", 1)[1])
        if example.path.name in KEYVAULT_EXAMPLES_FOR_DELETED:
            assert vault.delete(f"{base}/keys/{name}", params=query).status_code == 200
    if example.path.name in KEYVAULT_SWAPPED:
        refused = vault.request(method, base + path, params=query, json=body)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadParameter", refused.text
        body = body | {"digest": body["value"], "value": body["digest"]}
    response = vault.request(method, base + path, params=query, json=body)
    allowed = sorted(example.responses)
    assert str(response.status_code) in allowed, f"{response.status_code} not in {allowed}: {response.text}"
    payload = response.json() if response.content else None
    problems = [p for p in spec_replay.validate_response(example, response.status_code, payload)
                if p not in KEYVAULT_TOLERATED]
    assert not problems, problems


@pytest.mark.parametrize("example", EXAMPLES, ids=[spec_replay.example_id(e, EXAMPLES) for e in EXAMPLES])
def test_example_replays(example, arm, sandbox, credential):
    if "keyvault" in example.spec.relative_to(spec_replay.SPECS).parts[:1]:
        _replay_keyvault(example, sandbox, credential)
        return
    method, path, query, body = spec_replay.build_request(example, sandbox["subscription_id"])
    prerequisites = Prerequisites(arm, sandbox)
    path = _prepare_arc(example, path, prerequisites)
    _prepare(example, path, body, prerequisites)
    if example.path.name in REFUSED:
        status, code = REFUSED[example.path.name]
        refused = arm.session.request(method, arm.base + path, params=query, json=body)
        assert refused.status_code == status and refused.json()["error"]["code"] == code, refused.text
        return
    fixes = ERRATA.get(example.path.name)
    if fixes:
        refused = arm.session.request(method, arm.base + path, params=query, json=body)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidScopeMapAction"
        body = _corrected(body, fixes)
    response = arm.session.request(method, arm.base + path, params=query, json=body)
    allowed = sorted(example.responses)
    assert str(response.status_code) in allowed, f"{response.status_code} not in {allowed}: {response.text}"
    payload = response.json() if response.content else None
    problems = spec_replay.validate_response(example, response.status_code, payload)
    assert not problems, problems
    if example.path.name in MISSING_SOURCE_IMAGES:
        failed = arm.session.get(response.headers["Location"])
        while failed.status_code == 202:
            time.sleep(float(failed.headers.get("Retry-After", "0.05")))
            failed = arm.session.get(response.headers["Location"])
        assert failed.status_code == 400 and failed.json()["error"]["code"] == "InvalidParameters", failed.text
        return
    final = wait(arm, response)
    if final is not response and final.content and example.method == "POST":
        # A POST action's final result (e.g. generated credentials) is the 200 body.
        problems = spec_replay.validate_response(example, 200, final.json())
        assert not problems, problems


def test_every_vendored_example_is_replayed():
    """An example the harness cannot place would silently shrink the suite."""
    vendored = {p.name for p in spec_replay.SPECS.rglob("examples/*.json")}
    assert vendored == {e.path.name for e in EXAMPLES}
