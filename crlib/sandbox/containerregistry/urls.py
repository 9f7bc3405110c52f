"""Routes for Microsoft.ContainerRegistry, the finalizers of its long-running operations, and the
restart hook that reopens registry endpoints."""

from . import connected, imports, models, responses
from .common import (
    CONNECTED_REGISTRY_TYPE,
    REGISTRY_TYPE,
    SCOPE_MAP_TYPE,
    TOKEN_TYPE,
    finish_deletion,
    finish_provisioning,
)

_SUB = "/subscriptions/{subscriptionId}"
_REGISTRIES = _SUB + "/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries"
_REGISTRY = _REGISTRIES + "/{registryName}"
_SCOPE_MAP = _REGISTRY + "/scopeMaps/{scopeMapName}"
_TOKEN = _REGISTRY + "/tokens/{tokenName}"
_CONNECTED = _REGISTRY + "/connectedRegistries/{connectedRegistryName}"

URLS = [
    ("POST", _SUB + "/providers/Microsoft.ContainerRegistry/checkNameAvailability", responses.check_name_availability,
     False),
    ("GET", _SUB + "/providers/Microsoft.ContainerRegistry/registries", responses.list_registries),
    ("GET", _REGISTRIES, responses.list_registries),
    ("PUT", _REGISTRY, responses.put_registry),
    ("GET", _REGISTRY, responses.get_registry_handler),
    ("PATCH", _REGISTRY, responses.patch_registry),
    ("DELETE", _REGISTRY, responses.delete_registry),
    ("POST", _REGISTRY + "/importImage", responses.import_image),
    ("POST", _REGISTRY + "/generateCredentials", responses.generate_credentials),
    ("POST", _REGISTRY + "/listCredentials", responses.list_credentials, False),
    ("POST", _REGISTRY + "/regenerateCredential", responses.regenerate_credential),
    ("GET", _REGISTRY + "/listUsages", responses.list_usages),
    ("GET", _REGISTRY + "/scopeMaps", responses.list_scope_maps),
    ("PUT", _SCOPE_MAP, responses.put_scope_map),
    ("GET", _SCOPE_MAP, responses.get_scope_map),
    ("PATCH", _SCOPE_MAP, responses.patch_scope_map),
    ("DELETE", _SCOPE_MAP, responses.delete_scope_map),
    ("GET", _REGISTRY + "/tokens", responses.list_tokens),
    ("PUT", _TOKEN, responses.put_token),
    ("GET", _TOKEN, responses.get_token),
    ("PATCH", _TOKEN, responses.patch_token),
    ("DELETE", _TOKEN, responses.delete_token),
    ("GET", _REGISTRY + "/connectedRegistries", responses.list_connected_registries),
    ("PUT", _CONNECTED, responses.put_connected_registry),
    ("GET", _CONNECTED, responses.get_connected_registry),
    ("PATCH", _CONNECTED, responses.patch_connected_registry),
    ("DELETE", _CONNECTED, responses.delete_connected_registry),
    ("POST", _CONNECTED + "/deactivate", responses.deactivate_connected_registry),
]

# Operation kinds (the latency profiles in config.py time them) and what completes each.
_FINALIZERS = {
    "registry.create": finish_provisioning(REGISTRY_TYPE),
    "registry.update": finish_provisioning(REGISTRY_TYPE),
    "registry.delete": finish_deletion,
    "registry.import": imports.finish_import,
    "scopemap.create": finish_provisioning(SCOPE_MAP_TYPE),
    "scopemap.update": finish_provisioning(SCOPE_MAP_TYPE),
    "scopemap.delete": finish_deletion,
    "token.create": finish_provisioning(TOKEN_TYPE),
    "token.update": finish_provisioning(TOKEN_TYPE),
    "token.delete": finish_deletion,
    "connectedregistry.create": finish_provisioning(CONNECTED_REGISTRY_TYPE),
    "connectedregistry.update": finish_provisioning(CONNECTED_REGISTRY_TYPE),
    "connectedregistry.delete": finish_deletion,
    "connectedregistry.deactivate": connected.finish_deactivation,
}


def register(sandbox) -> None:
    for kind, finalizer in _FINALIZERS.items():
        sandbox.operations.register(kind, finalizer)


def restore(sandbox) -> None:
    models.restore_endpoints(sandbox)
