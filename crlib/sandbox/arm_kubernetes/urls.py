"""Routes for Microsoft.Kubernetes/connectedClusters (api-versions 2024-01-01 and 2026-05-01), and
the admin routes for simulated Arc-enabled clusters."""

from . import responses

_SUB = "/subscriptions/{subscriptionId}"
_CLUSTERS = _SUB + "/resourceGroups/{resourceGroupName}/providers/Microsoft.Kubernetes/connectedClusters"
_CLUSTER = _CLUSTERS + "/{clusterName}"

URLS = [
    ("GET", "/providers/Microsoft.Kubernetes/operations", responses.list_operations),
    ("GET", _SUB + "/providers/Microsoft.Kubernetes/connectedClusters", responses.list_clusters),
    ("GET", _CLUSTERS, responses.list_clusters),
    ("PUT", _CLUSTER, responses.put_cluster),
    ("GET", _CLUSTER, responses.get_cluster),
    ("PATCH", _CLUSTER, responses.patch_cluster),
    ("DELETE", _CLUSTER, responses.delete_cluster),
    ("POST", _CLUSTER + "/listClusterUserCredential", responses.list_user_credential, False),
]

ADMIN_URLS = [
    ("POST", "/_sandbox/arc/clusters", responses.admin_connect),
    ("POST", "/_sandbox/arc/clusters/offline", responses.admin_offline),
]
