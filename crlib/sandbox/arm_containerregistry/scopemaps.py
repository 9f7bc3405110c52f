"""Scope maps: the repository and connected-registry gateway permissions a token carries.

Every registry has ACR's built-in scope maps (type SystemDefined), which can be read but not
changed; user scope maps are validated action by action the way ACR does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import iso
from ..core.errors import SandboxError
from .common import NAMESPACE, SCOPE_MAP_TYPE, TOKEN_TYPE, save
from .validation import (
    CONNECTED_REGISTRY_NAME,
    REPOSITORY,
    SCOPE_MAP_NAME,
    check_name,
    invalid,
    obj,
    required,
    string_list,
)

if TYPE_CHECKING:
    from ..runtime import Sandbox

USER_DEFINED = "UserDefined"
SYSTEM_DEFINED = "SystemDefined"
REPOSITORY_ACTIONS = ("content/read", "content/write", "content/delete", "metadata/read", "metadata/write")
GATEWAY_ACTIONS = ("config/read", "config/write", "message/read", "message/write")
NAME_RULE = ("Scope map names may contain only alphanumeric characters, '-' and '_' and must be 5 to 50 "
             "characters long.")
_DESCRIPTION_MAX = 256

# ACR's built-in scope maps: name -> (description, actions on every repository).
SYSTEM_SCOPE_MAPS = {
    "_repositories_admin": ("Can perform all read, write and delete operations on the registry",
                            ["metadata/read", "metadata/write", "content/read", "content/write", "content/delete"]),
    "_repositories_pull": ("Can pull any repository of the registry", ["content/read"]),
    "_repositories_pull_metadata_read": ("Can perform all read operations on the registry",
                                         ["content/read", "metadata/read"]),
    "_repositories_push": ("Can push to any repository of the registry", ["content/read", "content/write"]),
    "_repositories_push_metadata_write": ("Can perform all read and write operations on the registry",
                                          ["content/read", "content/write", "metadata/read", "metadata/write"]),
}


def _doc(registry: dict, name: str, *, kind: str, actions: list[str], description: str | None,
         created: str) -> dict:
    props: dict = {"description": description} if description is not None else {}
    props |= {"type": kind, "creationDate": created, "provisioningState": "Succeeded", "actions": actions}
    return {"id": f"{registry['id']}/scopeMaps/{name}", "name": name,
            "type": f"{NAMESPACE}/registries/scopeMaps", "properties": props}


def create_system_scope_maps(sandbox: Sandbox, registry: dict) -> None:
    for name, (description, verbs) in SYSTEM_SCOPE_MAPS.items():
        doc = _doc(registry, name, kind=SYSTEM_DEFINED, description=description,
                   actions=[f"repositories/*/{verb}" for verb in verbs],
                   created=registry["properties"]["creationDate"])
        save(sandbox, SCOPE_MAP_TYPE, doc)


# -- actions -------------------------------------------------------------------------------------
def _action_error(action: str, reason: str) -> SandboxError:
    return SandboxError(
        400, "InvalidScopeMapAction",
        f"The scope map action '{action}' is invalid: {reason} Repository actions look like "
        f"repositories/<repository>/<action> with <action> one of {', '.join(REPOSITORY_ACTIONS)}; the repository "
        "may be '*' or end in '/*'. Gateway actions look like gateway/<connected registry>/<action> with "
        f"<action> one of {', '.join(GATEWAY_ACTIONS)}.",
    )


def check_action(action: str) -> None:
    kind, _, rest = action.partition("/")
    if kind == "repositories":
        verb = next((v for v in REPOSITORY_ACTIONS if rest.endswith("/" + v)), None)
        if verb is None:
            raise _action_error(action, "it does not end in a repository action.")
        repo = rest[: -len(verb) - 1]
        prefix = repo[:-2] if repo.endswith("/*") else repo
        if repo != "*" and not REPOSITORY.match(prefix):
            raise _action_error(action, f"'{repo}' is not a valid repository name (lowercase letters, digits, "
                                        "'.', '_', '-' and '/').")
    elif kind == "gateway":
        gateway, _, verb = rest.partition("/")
        if verb not in GATEWAY_ACTIONS:
            raise _action_error(action, f"'{verb}' is not a gateway action.")
        if not CONNECTED_REGISTRY_NAME.match(gateway):
            raise _action_error(action, f"'{gateway}' is not a valid connected registry name.")
    else:
        raise _action_error(action, "it must start with 'repositories/' or 'gateway/'.")


def _actions(value: object) -> list[str]:
    actions = string_list(value, "properties.actions")
    if not actions:
        raise invalid("properties.actions", "at least one action is required.")
    for action in actions:
        check_action(action)
    return list(dict.fromkeys(actions))


def _description(value: object) -> str:
    if not isinstance(value, str) or len(value) > _DESCRIPTION_MAX:
        raise invalid("properties.description", f"expected a string of at most {_DESCRIPTION_MAX} characters.")
    return value


# -- create, update, delete --------------------------------------------------------------------
def refuse_system(doc: dict | None) -> None:
    if doc is not None and doc["properties"]["type"] == SYSTEM_DEFINED:
        raise SandboxError(400, "OperationNotAllowed", f"The scope map '{doc['name']}' is defined by the system "
                                                       "and cannot be changed or deleted.")


def put_scope_map(sandbox: Sandbox, registry: dict, name: str, body: object) -> tuple[dict, bool]:
    check_name("scope map", name, SCOPE_MAP_NAME, NAME_RULE)
    existing = sandbox.store.get(f"{registry['id']}/scopeMaps/{name}")
    refuse_system(existing)
    props = obj(obj(body, "body").get("properties"), "properties")
    if props.get("actions") is None:
        raise required("properties.actions")
    actions = _actions(props["actions"])
    description = _description(props["description"]) if props.get("description") is not None else None
    if existing is not None:
        return _doc(registry, existing["name"], kind=USER_DEFINED, actions=actions, description=description,
                    created=existing["properties"]["creationDate"]), False
    return _doc(registry, name, kind=USER_DEFINED, actions=actions, description=description,
                created=iso(sandbox.clock.now())), True


def patch_scope_map(doc: dict, body: object) -> dict:
    refuse_system(doc)
    given = obj(obj(body, "body").get("properties"), "properties")
    if given.get("actions") is not None:
        doc["properties"]["actions"] = _actions(given["actions"])
    if given.get("description") is not None:
        doc["properties"]["description"] = _description(given["description"])
    return doc


def check_deletable(sandbox: Sandbox, registry: dict, doc: dict) -> None:
    refuse_system(doc)
    users = [t["name"] for t in sandbox.store.children(registry["id"], TOKEN_TYPE)
             if t["properties"]["scopeMapId"].lower() == doc["id"].lower()]
    if users:
        raise SandboxError(409, "ScopeMapInUse", f"The scope map '{doc['name']}' is used by the tokens "
                                                 f"{', '.join(users)}; delete them or change their scope map first.")
