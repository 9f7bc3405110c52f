"""The long-running operations of Microsoft.Devices/IotHubs, and what completes each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import OperationKind
from . import models

if TYPE_CHECKING:
    from ..runtime import Sandbox


def finish_provisioning(sandbox: Sandbox, op: dict) -> None:
    """A create or update has run its course: the hub is active."""
    doc = sandbox.store.get(op["resourceId"])
    # A delete that started meanwhile wins.
    if doc is not None and doc["properties"]["provisioningState"] == "Accepted":
        doc["properties"].update(provisioningState="Succeeded", state="Active")
        models.save(sandbox.store, doc)


def finish_delete(sandbox: Sandbox, op: dict) -> None:
    """The hub goes, with every device, module and configuration under it, and so does its port."""
    sandbox.store.delete_tree(op["resourceId"])
    sandbox.prune_listeners()


HUB_CREATE = OperationKind("iothub.create", finish_provisioning)
HUB_UPDATE = OperationKind("iothub.update", finish_provisioning)
HUB_DELETE = OperationKind("iothub.delete", finish_delete)
KINDS = [HUB_CREATE, HUB_UPDATE, HUB_DELETE]
