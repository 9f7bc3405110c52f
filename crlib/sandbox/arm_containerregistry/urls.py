"""Routes for Microsoft.ContainerRegistry: registries, image import, credentials, scope maps, tokens and
connected registries."""

from . import responses

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
