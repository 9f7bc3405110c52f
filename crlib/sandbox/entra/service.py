"""Entra ID, on the main port. The token issuer itself is `Sandbox.tokens` (entra.models)."""

from ..core.arm import OPEN
from ..core.service import Routes, Service
from . import urls

SERVICE = Service(name="entra", routes=[Routes(OPEN, urls.URLS)])
