"""Routes for ARM's own resources."""

from . import responses

_SUB = "/subscriptions/{subscriptionId}"
_RG = _SUB + "/resourceGroups/{resourceGroupName}"

URLS = [
    ("GET", "/tenants", responses.list_tenants),
    ("GET", "/subscriptions", responses.list_subscriptions),
    ("GET", _SUB, responses.get_subscription),
    ("GET", _SUB + "/locations", responses.list_locations),
    ("GET", _SUB + "/resourcegroups", responses.list_groups),
    ("PUT", _RG, responses.put_group),
    ("GET", _RG, responses.get_group),
    ("DELETE", _RG, responses.delete_group),
    ("GET", _SUB + "/resources", responses.list_resources),
    ("GET", _RG + "/resources", responses.list_group_resources),
    ("GET", "/providers/{namespace}", responses.get_provider),
    ("GET", _SUB + "/providers/{namespace}", responses.get_provider),
    ("POST", _SUB + "/providers/{namespace}/register", responses.register_provider, False),
]
