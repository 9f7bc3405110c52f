"""The hook the extension seam calls (`arm_kubernetesconfiguration.models.INSTALLERS`) for the
connected registry extension: what Helm and the Kubernetes API server check when the chart is
applied, before any pod runs.

Documented (MicrosoftDocs/azure-management-docs, articles/container-registry/):
- quickstart-connected-registry-arc-cli.md: `service.clusterIP` must be within the cluster's service
  IP range and "not currently in use by another service"; the connection string is the protected
  setting `connectionString`; `az k8s-extension show` of a good install shows `currentVersion`
  0.11.0, `pvc.storageClassName` "standard" and `statuses: []`.
- troubleshoot-connected-registry-arc.md: "An incorrect IP not within the range results in a failed
  extension deployment" (glossary, Service.ClusterIP); a PVC whose storage class the cluster lacks
  stays `pending` and the "Extension creation [is] stuck in running state"; so is it with a bad
  connection string (the pod logs UNAUTHORIZED).
- tutorial-connected-registry-arc.md: `cert-manager.enabled` (default true); with it false, the
  certificate comes from the protected settings `tls.crt`, `tls.key` (base64) and `tls.cacrt`.

Not documented, so the harsher choice: a missing or malformed clusterIP, a cluster with no
linux/amd64 node, a missing connection string, and cert-manager off without a usable certificate
fail the extension at once.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import TYPE_CHECKING

from ..arm_kubernetesconfiguration import models as extensions
from ..clock import iso
from . import certs, releases

if TYPE_CHECKING:
    from ..runtime import Sandbox

EXTENSION_TYPE = "microsoft.containerregistry.connectedregistry"
CHART_VERSION = "0.11.0"  # what the quickstart's `az k8s-extension show` reports as currentVersion
DEFAULT_STORAGE_CLASS = "standard"
FAILED = "ExtensionOperationFailed"


def _fail(message: str) -> extensions.InstallFailed:
    return extensions.InstallFailed(FAILED, f"The extension operation failed: helm install of the connected "
                                            f"registry chart failed: {message}")


def status(code: str, message: str, *, level: str = "Error", display: str | None = None,
           now: float | None = None) -> dict:
    entry = {"code": code, "displayStatus": display or code, "level": level, "message": message}
    if now is not None:
        entry["time"] = iso(now)
    return entry


def _cluster_ip(sandbox: Sandbox, doc: dict, cluster: dict, settings: dict[str, str]) -> str:
    raw = settings.get("service.clusterIP")
    if not raw:
        raise _fail('Service "connected-registry" is invalid: spec.clusterIP: Required value: '
                    "service.clusterIP must be set to an address within the cluster's service IP range.")
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        raise _fail(f'Service "connected-registry" is invalid: spec.clusterIPs[0]: Invalid value: "{raw}": '
                    "must be a valid IP address") from None
    cidr = (cluster.get("_sandbox") or {}).get("serviceCidr") or "10.0.0.0/16"
    network = ipaddress.ip_network(cidr)
    if address not in network:
        raise _fail(f'Service "connected-registry" is invalid: spec.clusterIPs: Invalid value: ["{address}"]: '
                    f"failed to allocate IP {address}: the provided IP ({address}) is not in the valid range. "
                    f"The range of valid IPs is {network}")
    taken_by = None
    if address == next(network.hosts()):
        taken_by = "default/kubernetes"  # the API server's own service holds the range's first address
    for other in sandbox.store.by_type(extensions.EXTENSION_TYPE, under=cluster["id"]):
        if other["id"].lower() == doc["id"].lower() or other["properties"].get("provisioningState") == "Failed":
            continue
        if (other["properties"].get("configurationSettings") or {}).get("service.clusterIP", "").strip() \
                == str(address) and sandbox.store.get(releases.release_key(other["id"])) is not None:
            taken_by = f"connected-registry (extension '{other['name']}')"
    if taken_by:
        raise _fail(f'Service "connected-registry" is invalid: spec.clusterIPs: Invalid value: ["{address}"]: '
                    f"failed to allocate IP {address}: provided IP is already allocated (to {taken_by})")
    return str(address)


def _certificate(sandbox: Sandbox, doc: dict, cluster: dict, settings: dict[str, str], protected: dict[str, str],
                 cluster_ip: str) -> dict:
    enabled = settings.get("cert-manager.enabled", "true").strip().lower() != "false"
    if enabled:
        chain, key, ca = certs.issue_for_extension(sandbox.state_dir, cluster["id"], doc["id"], cluster_ip)
        return {"tls": "cert-manager", "chain": str(chain), "key": str(key), "caCert": str(ca)}
    merged = settings | protected
    if merged.get("tls.secret") and not merged.get("tls.crt"):
        raise _fail("tls.secret names a Kubernetes secret; the sandbox keeps no Kubernetes secrets: give "
                    "tls.crt and tls.key instead.")
    if not merged.get("tls.crt") or not merged.get("tls.key"):
        raise _fail("cert-manager.enabled is false but no certificate was given: set the protected settings "
                    "tls.crt and tls.key (base64), or tls.secret.")
    try:
        chain, key, ca = certs.store_user_certificate(sandbox.state_dir, cluster["id"], doc["id"], merged["tls.crt"],
                                                      merged["tls.key"], merged.get("tls.cacrt"))
    except certs.CertificateError as exc:
        raise _fail(str(exc)) from exc
    return {"tls": "byoc", "chain": str(chain), "key": str(key), "caCert": str(ca)}


def install(sandbox: Sandbox, doc: dict, cluster: dict) -> None:
    """Apply the chart: validate, record the release for the cluster agent, and leave the extension
    Creating/Updating until its pod is ready (the agent settles it)."""
    props = doc["properties"]
    if (props.get("extensionType") or "").lower() != EXTENSION_TYPE:
        return
    settings = dict(props.get("configurationSettings") or {})
    protected = extensions.protected_settings(sandbox.store, doc["id"])
    private = cluster.get("_sandbox") or {}
    if "amd64" not in (private.get("nodeArchitectures") or []):
        raise _fail("0/{0} nodes are available: {0} node(s) didn't match Pod's node affinity/selector: the "
                    "connected registry images are built for linux/amd64 only.".format(
                        cluster["properties"].get("totalNodeCount", 1)))
    if not protected.get("connectionString"):
        raise _fail("the protected setting 'connectionString' is required (az acr connected-registry "
                    "get-settings --query ACR_REGISTRY_CONNECTION_STRING, passed with --config-protected-file).")
    cluster_ip = _cluster_ip(sandbox, doc, cluster, settings)
    tls_files = _certificate(sandbox, doc, cluster, settings, protected, cluster_ip)
    props["currentVersion"] = props.get("version") or CHART_VERSION
    storage_class = settings.get("pvc.storageClassName", DEFAULT_STORAGE_CLASS)
    now = sandbox.clock.time()
    record = sandbox.store.get(releases.release_key(doc["id"])) or {
        "extensionId": doc["id"], "clusterId": cluster["id"], "instance": str(uuid.uuid4()),
        "forwardPort": releases.reserve_port(sandbox), "generation": 0}
    record.update(clusterIP=cluster_ip, generation=record["generation"] + 1, phase="Pending", **tls_files)
    if storage_class not in (private.get("storageClasses") or []):
        record["phase"] = "PvcPending"
        props["statuses"] = [status(
            "PersistentVolumeClaimPending",
            f'persistentvolumeclaim "connected-registry-pvc" is Pending: storageclass.storage.k8s.io '
            f'"{storage_class}" not found. The connected registry pod cannot start until the claim is bound; '
            "delete the extension and recreate it with --config pvc.storageClassName=<a class of the cluster>.",
            display="Pending", now=now)]
    else:
        props["statuses"] = [status("ContainerCreating", "Waiting for the connected-registry pod to become "
                                                         "ready.", level="Information", display="Pending", now=now)]
    releases.save(sandbox, record)
    raise extensions.InstallPending()
