"""Routes for Microsoft.KubernetesConfiguration/extensions (api-version 2025-03-01)."""

from . import responses

_EXTENSIONS = ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{clusterRp}/"
               "{clusterResourceName}/{clusterName}/providers/Microsoft.KubernetesConfiguration/extensions")
_EXTENSION = _EXTENSIONS + "/{extensionName}"

URLS = [
    ("GET", _EXTENSIONS, responses.list_extensions),
    ("PUT", _EXTENSION, responses.put_extension),
    ("GET", _EXTENSION, responses.get_extension),
    ("PATCH", _EXTENSION, responses.patch_extension),
    ("DELETE", _EXTENSION, responses.delete_extension),
    ("GET", _EXTENSION + "/operations/{operationId}", responses.operation_status),
]
