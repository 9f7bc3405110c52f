"""Microsoft.KubernetesConfiguration/extensions on the main port's ARM router."""

from ..core.arm import ARM
from ..core.service import Routes, Service
from . import operations, urls

SERVICE = Service(name="arm_kubernetesconfiguration", routes=[Routes(ARM, urls.URLS)],
                  operation_kinds=operations.KINDS)
