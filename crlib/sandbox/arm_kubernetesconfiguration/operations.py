"""The long-running operations of Microsoft.KubernetesConfiguration/extensions.

A create or update operation is what `az k8s-extension create` / `update` waits on (Azure/
azure-cli-extensions, src/k8s-extension/azext_k8s_extension/custom.py: `sdk_no_wait(no_wait,
client.begin_create, ...)`, the poller run to its end unless --no-wait). In Azure it ends only when
the extension's provisioningState is terminal: Helm's wait for the pods is part of it. So after the
finalizer applies the chart (the seam, `models.settle_installation`), the operation follows the
extension (`OperationKind.outcome`):

- `Creating`/`Updating`: InProgress. A connected registry extension whose pod never becomes ready
  (a bad connection string, UNAUTHORIZED; a PVC pending on a storage class the cluster lacks) stays
  so: "Extension creation stuck in running state" (MicrosoftDocs/azure-management-docs, articles/
  container-registry/troubleshoot-connected-registry-arc.md). The client's own timeout ends the wait.
- `Succeeded`: Succeeded; the poller's final GET shows the extension Succeeded.
- `Failed`: Failed, the extension's `errorInfo` as the operation's ARM error (code, message), which
  azure-core raises as HttpResponseError.
- deleted, or being deleted, before it settled: Canceled.

A delete operation ends once the extension is gone and no cluster agent still runs it (the agent
stops its release: `models.RUNNING`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import OperationKind
from . import models

if TYPE_CHECKING:
    from ..runtime import Sandbox


def finish_install(sandbox: Sandbox, op: dict) -> None:
    doc = sandbox.store.get(op["resourceId"])
    if doc is None or doc["properties"].get("provisioningState") not in ("Creating", "Updating"):
        return  # a delete that started meanwhile wins (the outcome is Canceled)
    models.settle_installation(sandbox, doc)
    models.save(sandbox.store, doc, models.cluster_of(doc["id"]))


def install_outcome(sandbox: Sandbox, op: dict) -> tuple[str, dict | None] | None:
    doc = sandbox.store.get(op["resourceId"])
    state = doc["properties"].get("provisioningState") if doc is not None else None
    if doc is None or state == "Deleting":
        return "Canceled", {"code": "OperationCanceled", "message": "The extension was deleted before its "
                                                                    "operation finished."}
    if state in ("Creating", "Updating"):
        return None
    if state == "Failed":
        info = doc["properties"].get("errorInfo") or {}
        return "Failed", {"code": info.get("code") or "ExtensionOperationFailed",
                          "message": info.get("message") or "The extension operation failed."}
    return "Succeeded", None


def finish_delete(sandbox: Sandbox, op: dict) -> None:
    sandbox.store.delete_tree(op["resourceId"])


def delete_outcome(sandbox: Sandbox, op: dict) -> tuple[str, dict | None] | None:
    if sandbox.store.get(op["resourceId"]) is not None or models.running(sandbox, op["resourceId"]):
        return None
    return "Succeeded", None


EXTENSION_CREATE = OperationKind("extension.create", finish_install, install_outcome)
EXTENSION_UPDATE = OperationKind("extension.update", finish_install, install_outcome)
EXTENSION_DELETE = OperationKind("extension.delete", finish_delete, delete_outcome)
KINDS = [EXTENSION_CREATE, EXTENSION_UPDATE, EXTENSION_DELETE]
