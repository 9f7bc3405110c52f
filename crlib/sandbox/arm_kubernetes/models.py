"""Connected clusters as ARM resources, and the facts about each cluster that ARM never shows.

A cluster document keeps its ARM representation plus "_sandbox": what `az connectedk8s connect`
learns from the cluster itself but the resource does not carry (the service CIDR, the storage
classes, the node architectures), whether agents run on it (`agents`: only a cluster made through
the admin route `POST /_sandbox/arc/clusters`, as connectedk8s would, has them; one created by a
bare ARM PUT stays `Connecting`, as a resource without agents does) and `offlineUntil`
(simulated time, see `cluster offline`). `view()` computes connectivityStatus from those.

Specs: hybridkubernetes 2024-01-01 and 2026-05-01 (tests/specs/arc); azure-mgmt-hybridkubernetes
2.0.0 pins 2026-05-01.
"""

from __future__ import annotations

import base64
import re
import uuid

from ..clock import iso
from ..core.arm import without_nulls
from ..core.errors import SandboxError

CLUSTER_TYPE = "microsoft.kubernetes/connectedclusters"
NAMESPACE = "Microsoft.Kubernetes"
API_VERSIONS = ["2024-01-01", "2026-05-01"]
# A Kubernetes resource name, as the RP's clusterName parameter pattern allows (1-63, letters,
# digits, hyphens, underscores, dots; starting and ending with a letter or digit).
_NAME = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9.]{0,61}[a-zA-Z0-9]$")
# ConnectedClusterProperties a client may write; the read-only ones belong to the service.
WRITABLE = ("agentPublicKeyCertificate", "distribution", "distributionVersion", "infrastructure",
            "privateLinkState", "privateLinkScopeResourceId", "azureHybridBenefit", "aadProfile",
            "arcAgentProfile")
# Only in 2026-05-01.
WRITABLE_2026 = ("securityProfile", "oidcIssuerProfile", "gateway", "arcAgentryConfigurations")
PATCHABLE = ("distribution", "distributionVersion", "azureHybridBenefit", "privateLinkState",
             "privateLinkScopeResourceId", "aadProfile", "arcAgentProfile", "securityProfile",
             "oidcIssuerProfile", "gateway", "arcAgentryConfigurations")
AGENT_VERSION = "1.21.10"
ARCHITECTURES = ("amd64", "arm64")


def cluster_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{name}"


def group_of(resource_id: str) -> str:
    return resource_id.split("/providers/", 1)[0]


def not_found(name: str) -> SandboxError:
    return SandboxError(404, "ResourceNotFound",
                        f"The Resource 'Microsoft.Kubernetes/connectedClusters/{name}' under resource group "
                        "was not found.")


def _bad(message: str) -> SandboxError:
    return SandboxError(400, "InvalidRequestContent", message)




def _identity(given, tenant_id: str, current: dict | None = None) -> dict:
    if not isinstance(given, dict) or given.get("type") not in ("SystemAssigned", "None"):
        raise _bad("identity is required and its type must be 'SystemAssigned' or 'None'.")
    if given["type"] == "None":
        return {"type": "None"}
    if current and current.get("type") == "SystemAssigned":
        return dict(current)
    return {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": tenant_id}


def _writable(props: dict, api_version: str) -> dict:
    allowed = WRITABLE + (WRITABLE_2026 if api_version >= "2026-05-01" else ())
    return {k: props[k] for k in allowed if k in props}


def new_cluster(resource_id: str, name: str, body: dict, *, api_version: str, tenant_id: str,
                now: float, current: dict | None = None) -> dict:
    """A cluster as a PUT leaves it (a create, or a replace of `current`)."""
    if not _NAME.match(name):
        raise SandboxError(400, "InvalidResourceName", f"The resource name '{name}' is invalid.")
    if not isinstance(body, dict) or not body.get("location"):
        raise SandboxError(400, "LocationRequired", "The location property is required for this definition.")
    props = without_nulls(body.get("properties"))
    if not isinstance(props, dict):
        raise _bad("properties is required.")
    if not isinstance(props.get("agentPublicKeyCertificate"), str):
        raise _bad("properties.agentPublicKeyCertificate is required.")
    if current is not None and body["location"].replace(" ", "").lower() != \
            current["location"].replace(" ", "").lower():
        raise SandboxError(400, "InvalidResourceLocation",
                           f"The resource '{name}' already exists in location '{current['location']}'.")
    kept = {k: current["properties"][k] for k in ("kubernetesVersion", "totalNodeCount", "totalCoreCount",
                                                  "agentVersion", "lastConnectivityTime", "offering")
            if current and k in current["properties"]}
    doc = {
        "id": resource_id, "name": name, "type": "Microsoft.Kubernetes/connectedClusters",
        "location": body["location"], "tags": without_nulls(body.get("tags") or {}),
        "identity": _identity(body.get("identity"), tenant_id, (current or {}).get("identity")),
        "properties": _writable(props, api_version) | kept | {"provisioningState": "Accepted"},
        "systemData": (current or {}).get("systemData") or {"createdAt": iso(now), "createdByType": "User"},
        "_sandbox": (current or {}).get("_sandbox") or {"agents": False},
    }
    if body.get("kind") is not None:
        if body["kind"] not in ("ProvisionedCluster", "AWS"):
            raise _bad("kind must be 'ProvisionedCluster' or 'AWS'.")
        doc["kind"] = body["kind"]
    doc["systemData"] = doc["systemData"] | {"lastModifiedAt": iso(now), "lastModifiedByType": "User"}
    return doc


def patch_cluster(doc: dict, body: dict, *, now: float) -> dict:
    if not isinstance(body, dict):
        raise _bad("The request content must be a JSON object.")
    if "tags" in body:
        tags = body["tags"] or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise _bad("tags must be an object of strings.")
        doc["tags"] = tags
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise _bad("properties must be an object.")
    for key in PATCHABLE:
        if key in props:
            if props[key] is None:
                doc["properties"].pop(key, None)
            else:
                doc["properties"][key] = without_nulls(props[key])
    doc["systemData"]["lastModifiedAt"] = iso(now)
    return doc


def public_key_certificate() -> str:
    """What connectedk8s sends as agentPublicKeyCertificate: the base64 DER of the agent's RSA public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return base64.b64encode(der).decode()


def connected_cluster(resource_id: str, name: str, location: str, *, tenant_id: str, now: float,
                      kubernetes_version: str, service_cidr: str, storage_classes: list[str],
                      architectures: list[str], node_count: int = 1, cores_per_node: int = 4) -> dict:
    """A cluster as `az connectedk8s connect` leaves it: agents installed and reporting."""
    doc = new_cluster(resource_id, name, {
        "location": location, "identity": {"type": "SystemAssigned"},
        "properties": {"agentPublicKeyCertificate": public_key_certificate(), "distribution": "generic",
                       "infrastructure": "generic"}}, api_version=API_VERSIONS[-1], tenant_id=tenant_id, now=now)
    doc["properties"].update(provisioningState="Succeeded", kubernetesVersion=kubernetes_version,
                             totalNodeCount=node_count, totalCoreCount=node_count * cores_per_node,
                             agentVersion=AGENT_VERSION, offering="", lastConnectivityTime=iso(now))
    doc["_sandbox"] = {"agents": True, "serviceCidr": service_cidr, "storageClasses": storage_classes,
                       "nodeArchitectures": architectures, "offlineUntil": None}
    return doc


def connectivity(doc: dict, sim_now: float) -> str:
    """Connected while its agents report, Offline while cut off, Connecting when it has none."""
    private = doc.get("_sandbox") or {}
    if not private.get("agents"):
        return "Connecting"
    until = private.get("offlineUntil")
    if until is not None and sim_now < until:
        return "Offline"
    return "Connected"


def view(doc: dict, sim_now: float, api_version: str | None = None) -> dict:
    """What ARM shows: the document without its private part, with its connectivity as of now."""
    out = {k: v for k, v in doc.items() if k != "_sandbox"}
    props = dict(out["properties"])
    status = connectivity(doc, sim_now)
    props["connectivityStatus"] = status
    private = doc.get("_sandbox") or {}
    if status == "Connected" and private.get("agents"):
        props["lastConnectivityTime"] = iso(sim_now)
    elif status == "Offline" and private.get("offlineSince"):
        props["lastConnectivityTime"] = iso(private["offlineSince"])
    if api_version and api_version < "2026-05-01":
        for key in WRITABLE_2026:
            props.pop(key, None)
    out["properties"] = props
    return out


def save(store, doc: dict) -> None:
    store.put(doc["id"], CLUSTER_TYPE, doc, parent=group_of(doc["id"]))


def busy(doc: dict) -> bool:
    return doc["properties"].get("provisioningState") not in ("Succeeded", "Failed", "Canceled")


def find(store, resource_id: str) -> dict | None:
    return store.get(resource_id)


OPERATIONS = [
    ("Microsoft.Kubernetes/connectedClusters/read", "connectedClusters", "Read connectedClusters",
     "Read any connectedCluster"),
    ("Microsoft.Kubernetes/connectedClusters/write", "connectedClusters", "Write connectedClusters",
     "Writes connectedClusters"),
    ("Microsoft.Kubernetes/connectedClusters/delete", "connectedClusters", "Delete connectedClusters",
     "Deletes connectedClusters"),
    ("Microsoft.Kubernetes/connectedClusters/listClusterUserCredential/action", "connectedClusters",
     "List clusterUser credential", "List clusterUser credential(preview)"),
    ("Microsoft.Kubernetes/register/action", "Microsoft.Kubernetes", "Register Microsoft.Kubernetes",
     "Registers Subscription with Microsoft.Kubernetes resource provider"),
]


def operations_list() -> dict:
    return {"value": [{"name": n, "display": {"provider": "Microsoft.Kubernetes", "resource": r, "operation": o,
                                              "description": d}} for n, r, o, d in OPERATIONS]}
