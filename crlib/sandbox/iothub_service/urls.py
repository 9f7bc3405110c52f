"""Routes of a hub's service API. Each hub's port serves this router; the port says which hub."""

from ..core.http import RouterSpec
from . import responses
from .auth import admit
from .errors import render_error

URLS = [
    ("GET", "/devices", responses.list_devices),
    ("POST", "/devices/query", responses.query_twins, False),
    ("GET", "/devices/{id}", responses.get_device),
    ("PUT", "/devices/{id}", responses.put_device),
    ("DELETE", "/devices/{id}", responses.delete_device),
    ("POST", "/devices/{id}/applyConfigurationContent", responses.apply_configuration_content),
    ("GET", "/devices/{id}/modules", responses.list_modules),
    ("GET", "/devices/{id}/modules/{mid}", responses.get_module),
    ("PUT", "/devices/{id}/modules/{mid}", responses.put_module),
    ("DELETE", "/devices/{id}/modules/{mid}", responses.delete_module),
    ("GET", "/twins/{id}", responses.get_twin),
    ("PATCH", "/twins/{id}", responses.patch_twin),
    ("PUT", "/twins/{id}", responses.put_twin),
    ("GET", "/twins/{id}/modules/{mid}", responses.get_twin),
    ("PATCH", "/twins/{id}/modules/{mid}", responses.patch_twin),
    ("PUT", "/twins/{id}/modules/{mid}", responses.put_twin),
    ("GET", "/configurations", responses.list_configurations),
    ("GET", "/configurations/{id}", responses.get_configuration),
    ("PUT", "/configurations/{id}", responses.put_configuration),
    ("DELETE", "/configurations/{id}", responses.delete_configuration),
]

# Each hub's port: arm_iothub opens one per hub, keyed by the hub's resource id.
ROUTER = RouterSpec("iothub", render_error=render_error, before=admit)
