"""The long-running operations of Microsoft.ContainerRegistry, and what completes each.

Their names are the keys of the latency profiles (config.LATENCY_PROFILES).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.service import OperationKind
from .common import (
    CONNECTED_REGISTRY_TYPE,
    REGISTRY_TYPE,
    SCOPE_MAP_TYPE,
    TOKEN_TYPE,
    finish_deletion,
    finish_provisioning,
)
from .connected import finish_deactivation
from .imports import finish_import


@dataclass(frozen=True)
class Lifecycle:
    """The create, update and delete operations of one resource type."""

    create: OperationKind
    update: OperationKind
    delete: OperationKind

    @classmethod
    def of(cls, prefix: str, doc_type: str) -> Lifecycle:
        """Create and update end with the resource Succeeded; delete removes it and what is under it."""
        done = finish_provisioning(doc_type)
        return cls(OperationKind(f"{prefix}.create", done), OperationKind(f"{prefix}.update", done),
                   OperationKind(f"{prefix}.delete", finish_deletion))

    def __iter__(self):
        return iter((self.create, self.update, self.delete))


REGISTRY = Lifecycle.of("registry", REGISTRY_TYPE)
SCOPE_MAP = Lifecycle.of("scopemap", SCOPE_MAP_TYPE)
TOKEN = Lifecycle.of("token", TOKEN_TYPE)
CONNECTED_REGISTRY = Lifecycle.of("connectedregistry", CONNECTED_REGISTRY_TYPE)
REGISTRY_IMPORT = OperationKind("registry.import", finish_import)
# The new password is the operation's result, which the request already computed.
REGISTRY_GENERATE_CREDENTIALS = OperationKind("registry.generatecredentials")
CONNECTED_REGISTRY_DEACTIVATE = OperationKind("connectedregistry.deactivate", finish_deactivation)

KINDS = [*REGISTRY, *SCOPE_MAP, *TOKEN, *CONNECTED_REGISTRY, REGISTRY_IMPORT, REGISTRY_GENERATE_CREDENTIALS,
         CONNECTED_REGISTRY_DEACTIVATE]
