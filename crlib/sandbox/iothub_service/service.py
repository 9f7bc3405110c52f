"""The IoT Hub service API, on each hub's own port (arm_iothub opens them)."""

from ..core.service import Routes, Service
from . import urls

SERVICE = Service(name="iothub_service", routes=[Routes(urls.ROUTER, urls.URLS)])
