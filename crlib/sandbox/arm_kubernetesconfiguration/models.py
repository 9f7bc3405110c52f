"""Cluster extensions (Microsoft.KubernetesConfiguration/extensions, api-version 2025-03-01) as ARM
resources, nested under a connected cluster.

Where things are kept:
- the extension document (store key = its ARM id, type EXTENSION_TYPE, parent = the cluster id) is
  exactly what ARM shows, minus nothing: it never holds `configurationProtectedSettings`;
- the protected settings live in a record of their own (key `protected_key(extension_id)`, type
  PROTECTED_TYPE, parent = the extension id, so they go with it). No ARM response reads it;
  `protected_settings(store, extension_id)` is how a cluster agent gets them.

The seam for the cluster agent: `settle_installation(sandbox, doc)` decides how a create or update
ends (Succeeded or Failed, `statuses`, `errorInfo`, `currentVersion`), or leaves it Creating/Updating
(an installer raising InstallPending) for the agent to settle later; the operation lasts as long
(operations.py). It looks at the cluster's connectivity and runs the installers registered in
`INSTALLERS`; a cluster agent also registers in `RUNNING`, which a delete operation waits on.

Documented behaviour modelled (MicrosoftDocs/azure-management-docs, articles/azure-arc/kubernetes/
extensions.md): protected settings are "not retrievable using GET API calls or az k8s-extension
show"; on update "all of the protected settings are expected to be specified. If any of these
settings are omitted, those settings will be considered obsolete and deleted"; `version` "must not
be supplied if auto-upgrade-minor-version is set to true" (the 2025-03-01 spec: "To use 'version',
autoUpgradeMinorVersion must be 'false'"); autoUpgradeMinorVersion defaults to true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..clock import iso
from ..core.errors import SandboxError

if TYPE_CHECKING:
    from ..runtime import Sandbox

EXTENSION_TYPE = "microsoft.kubernetesconfiguration/extensions"
PROTECTED_TYPE = "microsoft.kubernetesconfiguration/extensions.protectedsettings"
NAMESPACE = "Microsoft.KubernetesConfiguration"
API_VERSIONS = ["2025-03-01"]
CLUSTER_TYPE = "microsoft.kubernetes/connectedclusters"
SUPPORTED_PARENTS = {("microsoft.kubernetes", "connectedclusters")}
PATCHABLE = ("autoUpgradeMinorVersion", "releaseTrain", "version", "configurationSettings")
CREATABLE = ("extensionType", "autoUpgradeMode", "autoUpgradeMinorVersion", "releaseTrain", "version", "scope",
             "configurationSettings")


def protected_key(extension_id: str) -> str:
    return f"{extension_id.lower()}/configurationprotectedsettings"


def extension_id(cluster_id: str, name: str) -> str:
    return f"{cluster_id}/providers/Microsoft.KubernetesConfiguration/extensions/{name}"


def cluster_of(ext_id: str) -> str:
    """The id of the cluster an extension id lies under."""
    return ext_id.split("/providers/Microsoft.KubernetesConfiguration/", 1)[0]


def _bad(code: str, message: str) -> SandboxError:
    return SandboxError(400, code, message)


def _settings(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad("InvalidConfigurationSettings", f"properties.{key} must be an object of string values.")
    return dict(value)


def _check_version(props: dict) -> None:
    """`version` pins the extension, which only a resource with automatic minor upgrades off may do."""
    if props.get("version") and props.get("autoUpgradeMinorVersion", True):
        raise _bad("InvalidExtensionVersion",
                   "'version' can be specified only when 'autoUpgradeMinorVersion' is false: to use 'version', "
                   "autoUpgradeMinorVersion must be 'false'.")


def _identity(given: Any, tenant_id: str) -> dict | None:
    """Identity is common-types v2 Identity, whose type enum is SystemAssigned only."""
    if given is None:
        return None
    if not isinstance(given, dict) or given.get("type") != "SystemAssigned":
        raise _bad("InvalidIdentity", "identity.type must be 'SystemAssigned'.")
    import uuid

    return {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": tenant_id}


def new_extension(ext_id: str, name: str, body: dict, *, now: float, tenant_id: str,
                  current: dict | None = None) -> tuple[dict, dict[str, str]]:
    """(document, protected settings) for a PUT."""
    props = body.get("properties")
    if not isinstance(props, dict):
        raise _bad("InvalidRequestContent", "properties is required.")
    props = {k: v for k, v in props.items() if v is not None}
    if not isinstance(props.get("extensionType"), str) or not props["extensionType"]:
        raise _bad("InvalidExtensionType", "properties.extensionType is required.")
    if current is not None and current["properties"]["extensionType"].lower() != props["extensionType"].lower():
        raise _bad("InvalidExtensionType", "The extensionType of an existing extension cannot be changed.")
    if not isinstance(props.get("autoUpgradeMinorVersion", True), bool):
        raise _bad("InvalidRequestContent", "properties.autoUpgradeMinorVersion must be true or false.")
    _check_version(props)
    visible: dict[str, Any] = {k: props[k] for k in CREATABLE if k in props}
    visible["configurationSettings"] = _settings(props.get("configurationSettings"), "configurationSettings")
    protected = _settings(props.get("configurationProtectedSettings"), "configurationProtectedSettings")
    visible.setdefault("autoUpgradeMinorVersion", True)
    visible.setdefault("autoUpgradeMode", "compatible")
    if visible["autoUpgradeMinorVersion"]:
        visible.setdefault("releaseTrain", "Stable")
    visible.update(provisioningState="Creating" if current is None else "Updating", statuses=[],
                   isSystemExtension=False)
    doc: dict[str, Any] = {
        "id": ext_id, "name": name, "type": "Microsoft.KubernetesConfiguration/extensions",
        "properties": visible,
        "systemData": ((current or {}).get("systemData") or {"createdAt": iso(now), "createdByType": "User"})
        | {"lastModifiedAt": iso(now), "lastModifiedByType": "User"},
    }
    identity = _identity(body.get("identity"), tenant_id)
    if identity is not None:
        doc["identity"] = (current or {}).get("identity") or identity
    if isinstance(body.get("plan"), dict):
        doc["plan"] = {k: v for k, v in body["plan"].items() if v is not None}
    return doc, protected


def patch_extension(doc: dict, body: dict, *, now: float) -> dict[str, str]:
    """Apply a PATCH; returns the protected settings the extension keeps afterwards (those sent, or
    none: a PATCH that omits them deletes them, as extensions.md documents)."""
    props = body.get("properties") if isinstance(body, dict) else None
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise _bad("InvalidRequestContent", "properties must be an object.")
    current = doc["properties"]
    merged = dict(current)
    for key in ("autoUpgradeMinorVersion", "releaseTrain", "version"):
        if key in props:
            if props[key] is None:
                merged.pop(key, None)
            else:
                merged[key] = props[key]
    if not isinstance(merged.get("autoUpgradeMinorVersion", True), bool):
        raise _bad("InvalidRequestContent", "properties.autoUpgradeMinorVersion must be true or false.")
    _check_version(merged)
    if props.get("configurationSettings") is not None:
        given = props["configurationSettings"]
        if not isinstance(given, dict):
            raise _bad("InvalidConfigurationSettings", "properties.configurationSettings must be an object.")
        settings = dict(current.get("configurationSettings") or {})
        for key, value in given.items():
            if value is None:
                settings.pop(key, None)
            elif isinstance(value, str):
                settings[key] = value
            else:
                raise _bad("InvalidConfigurationSettings", "configuration settings values must be strings.")
        merged["configurationSettings"] = settings
    protected = _settings(props.get("configurationProtectedSettings"), "configurationProtectedSettings")
    merged.update(provisioningState="Updating")
    merged.pop("errorInfo", None)
    doc["properties"] = merged
    doc["systemData"]["lastModifiedAt"] = iso(now)
    return protected


def save(store, doc: dict, cluster_id: str) -> None:
    store.put(doc["id"], EXTENSION_TYPE, doc, parent=cluster_id)


def save_protected(store, ext_id: str, settings: dict[str, str]) -> None:
    store.put(protected_key(ext_id), PROTECTED_TYPE, {"extensionId": ext_id, "settings": settings}, parent=ext_id)


def protected_settings(store, ext_id: str) -> dict[str, str]:
    """The extension's configurationProtectedSettings, which no ARM response shows. For the cluster agent."""
    record = store.get(protected_key(ext_id))
    return dict(record["settings"]) if record else {}


def busy(doc: dict) -> bool:
    return doc["properties"].get("provisioningState") in ("Creating", "Updating", "Deleting")


# -- the seam for a cluster agent ---------------------------------------------------------------

# (sandbox, extension doc, cluster doc) -> None; may set properties.statuses / currentVersion and
# raise InstallFailed. A later cluster agent appends itself here.
Installer = Callable[["Sandbox", dict, dict], None]
INSTALLERS: list[Installer] = []

# (sandbox, extension id) -> whether a cluster agent still runs the extension's workload; a delete
# operation ends once the extension is gone and none does (operations.delete_outcome).
Running = Callable[["Sandbox", str], bool]
RUNNING: list[Running] = []


def running(sandbox: Sandbox, ext_id: str) -> bool:
    return any(check(sandbox, ext_id) for check in RUNNING)


class InstallPending(Exception):
    """Raised by an installer whose workload is not ready yet (a Helm release waiting for its pods):
    the extension keeps its Creating/Updating state, and the installer settles it later."""


class InstallFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def settle_installation(sandbox: Sandbox, doc: dict) -> dict:
    """Decide how an extension's create or update ends, when its operation's duration has passed
    (the operation then follows the extension until it is terminal: operations.install_outcome).

    A cluster whose agents are not Connected cannot pull the extension's configuration (conceptual-
    extensions.md: the config agent on the cluster pulls it from Azure), so the extension fails.
    Otherwise each registered installer runs (none yet: a pinned version becomes currentVersion);
    one raising InstallFailed fails the extension. Returns the document, updated (not saved)."""
    from ..arm_kubernetes import models as clusters

    cluster = sandbox.store.get(cluster_of(doc["id"]))
    props = doc["properties"]
    try:
        if cluster is None:
            raise InstallFailed("ParentResourceNotFound", "The connected cluster no longer exists.")
        status = clusters.connectivity(cluster, sandbox.clock.time())
        if status != "Connected":
            raise InstallFailed(
                "ExtensionOperationFailed",
                f"The extension operation failed: the connected cluster '{cluster['name']}' is {status}: "
                "its agents could not pull the extension's configuration from Azure.")
        for installer in INSTALLERS:
            installer(sandbox, doc, cluster)
        if props.get("version") and "currentVersion" not in props:
            props["currentVersion"] = props["version"]
        props["provisioningState"] = "Succeeded"
        props.pop("errorInfo", None)
    except InstallPending:
        props.pop("errorInfo", None)
    except InstallFailed as failure:
        props["provisioningState"] = "Failed"
        props["errorInfo"] = {"code": failure.code, "message": failure.message}
    return doc
