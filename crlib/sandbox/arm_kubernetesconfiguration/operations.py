"""The long-running operations of Microsoft.KubernetesConfiguration/extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import SandboxError
from ..core.service import OperationKind
from . import models

if TYPE_CHECKING:
    from ..runtime import Sandbox


def finish_install(sandbox: Sandbox, op: dict) -> None:
    doc = sandbox.store.get(op["resourceId"])
    if doc is None or doc["properties"].get("provisioningState") not in ("Creating", "Updating"):
        return  # a delete that started meanwhile wins
    models.settle_installation(sandbox, doc)
    models.save(sandbox.store, doc, doc["id"].split("/providers/Microsoft.KubernetesConfiguration/", 1)[0])
    if doc["properties"]["provisioningState"] == "Failed":
        error = doc["properties"]["errorInfo"]
        raise SandboxError(400, error["code"], error["message"])


def finish_delete(sandbox: Sandbox, op: dict) -> None:
    sandbox.store.delete_tree(op["resourceId"])


EXTENSION_CREATE = OperationKind("extension.create", finish_install)
EXTENSION_UPDATE = OperationKind("extension.update", finish_install)
EXTENSION_DELETE = OperationKind("extension.delete", finish_delete)
KINDS = [EXTENSION_CREATE, EXTENSION_UPDATE, EXTENSION_DELETE]
