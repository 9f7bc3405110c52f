"""The authority behind a cloud registry's login server and data endpoint: its ACR tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..arm_containerregistry.tokens import verify_token_password
from ..core.errors import SandboxError
from .auth import REFUSALS, Principal, permitted_by_rules, rules_from_actions

if TYPE_CHECKING:
    from ..runtime import Sandbox

EVERYTHING = [("*", {"pull", "push", "delete", "metadata_read", "metadata_write"})]


class CloudRegistryAuthority:
    def __init__(self, sandbox: Sandbox, registry: dict):
        self.sandbox = sandbox
        self.registry = registry
        self.namespace = registry["id"].lower()
        # Tokens name the login server as their service, whichever endpoint issued them.
        self.service = registry["properties"]["loginServer"]

    def check_password(self, username: str, password: str) -> Principal:
        ok, reason = verify_token_password(self.sandbox, self.registry["id"], username, password)
        if not ok:
            raise SandboxError(401, "UNAUTHORIZED", REFUSALS[reason or "wrong"])
        return Principal("token", username)

    def repository_rules(self, principal: Principal) -> list[tuple[str, set[str]]]:
        if principal.kind == "entra":
            return EVERYTHING
        return token_rules(self.sandbox, self.namespace, principal.name)

    def permitted(self, principal: Principal, repository: str) -> set[str]:
        return permitted_by_rules(self.repository_rules(principal), repository)


def token_rules(sandbox: Sandbox, registry_id: str, token_name: str) -> list[tuple[str, set[str]]]:
    """What an ACR token may do, read from its scope map now (a disabled token: nothing)."""
    token = sandbox.store.get(f"{registry_id}/tokens/{token_name}")
    if token is None or token["properties"].get("status") == "disabled":
        return []
    scope_map = sandbox.store.get(token["properties"]["scopeMapId"])
    return rules_from_actions(scope_map["properties"]["actions"]) if scope_map else []


def authority_for(sandbox: Sandbox, registry_id: str) -> CloudRegistryAuthority:
    registry = sandbox.store.get(registry_id)
    if registry is None:
        raise SandboxError(404, "NAME_UNKNOWN", "registry not found")
    return CloudRegistryAuthority(sandbox, registry)
