"""Microsoft.ContainerRegistry on the main port's ARM router. A registry's login server and data
endpoint are served by ..registry_dataplane on ports of their own, which this service opens (and
reopens at start)."""

from ..core.arm import ARM
from ..core.service import Routes, Service
from . import models, operations, urls

SERVICE = Service(name="arm_containerregistry", routes=[Routes(ARM, urls.URLS)], operation_kinds=operations.KINDS,
                  on_start=models.restore_endpoints)
