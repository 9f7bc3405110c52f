"""The IoT Hub service API, on each hub's own port (arm_iothub opens them), and its auth journal
on the main port."""

from ..core.arm import OPEN
from ..core.service import Routes, Service
from . import journal, urls

SERVICE = Service(name="iothub_service", routes=[Routes(urls.ROUTER, urls.URLS), Routes(OPEN, journal.URLS)])
