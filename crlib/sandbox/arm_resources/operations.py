"""The long-running operations of ARM's own resources, and what completes each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import OperationKind

if TYPE_CHECKING:
    from ..runtime import Sandbox


def finish_group_delete(sandbox: Sandbox, op: dict) -> None:
    """The group goes with everything in it, and so do the ports of what it held."""
    sandbox.store.delete_tree(op["resourceId"])
    sandbox.prune_listeners()


GROUP_DELETE = OperationKind("resourcegroup.delete", finish_group_delete)
KINDS = [GROUP_DELETE]
