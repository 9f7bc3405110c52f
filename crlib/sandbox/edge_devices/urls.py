"""Admin routes for simulated devices, on the main port (no ARM token: the sandbox's own API)."""

from . import responses

URLS = [
    ("POST", "/_sandbox/edge/devices", responses.provision),
    ("GET", "/_sandbox/edge/devices", responses.list_devices),
    ("GET", "/_sandbox/edge/devices/{device_id}", responses.show_device),
    ("POST", "/_sandbox/devices/offline", responses.device_offline, False),
]
