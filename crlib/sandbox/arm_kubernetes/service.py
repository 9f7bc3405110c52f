"""Microsoft.Kubernetes/connectedClusters on the main port's ARM router; the admin routes that
connect simulated clusters on the OPEN router."""

from ..core.arm import ARM, OPEN
from ..core.service import Routes, Service
from . import operations, urls

SERVICE = Service(name="arm_kubernetes", routes=[Routes(ARM, urls.URLS), Routes(OPEN, urls.ADMIN_URLS)],
                  operation_kinds=operations.KINDS)
