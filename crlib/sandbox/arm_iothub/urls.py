"""Routes for Microsoft.Devices/IotHubs (api-version 2023-06-30)."""

from . import responses

_SUB = "/subscriptions/{subscriptionId}"
_HUBS = _SUB + "/resourceGroups/{resourceGroupName}/providers/Microsoft.Devices/IotHubs"
_HUB = _HUBS + "/{resourceName}"

URLS = [
    ("GET", _SUB + "/providers/Microsoft.Devices/IotHubs", responses.list_hubs),
    ("POST", _SUB + "/providers/Microsoft.Devices/checkNameAvailability", responses.check_name, False),
    ("GET", _HUBS, responses.list_hubs),
    ("PUT", _HUB, responses.put_hub),
    ("GET", _HUB, responses.get_hub),
    ("PATCH", _HUB, responses.patch_hub),
    ("DELETE", _HUB, responses.delete_hub),
    ("POST", _HUB + "/listkeys", responses.list_keys, False),
    ("POST", _HUB + "/IotHubKeys/{keyName}/listkeys", responses.get_key, False),
]

