"""The long-running operations of Microsoft.Kubernetes/connectedClusters, and what completes each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import OperationKind
from . import models

if TYPE_CHECKING:
    from ..runtime import Sandbox


def finish_put(sandbox: Sandbox, op: dict) -> None:
    doc = sandbox.store.get(op["resourceId"])
    if doc is not None and doc["properties"].get("provisioningState") == "Accepted":
        doc["properties"]["provisioningState"] = "Succeeded"
        models.save(sandbox.store, doc)


def finish_delete(sandbox: Sandbox, op: dict) -> None:
    """The cluster goes, and with it every extension installed on it."""
    sandbox.store.delete_tree(op["resourceId"])


CLUSTER_PUT = OperationKind("connectedcluster.put", finish_put)
CLUSTER_DELETE = OperationKind("connectedcluster.delete", finish_delete)
KINDS = [CLUSTER_PUT, CLUSTER_DELETE]
