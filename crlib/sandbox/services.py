"""Every service the sandbox runs, in order. `runtime.Sandbox` reads this list and nothing else.

The order is the order of the hooks: each service's `on_init`, `on_start` and `on_stop` run in
it, so services whose hosts others depend on come first: registries (arm_containerregistry) and
hubs (arm_iothub) reopen their ports, and the image source its port and seed, before the
simulated devices (edge_devices) start running and pulling from them. It is also the order in
which url tables mounted on one router are tried.
"""

from __future__ import annotations

from .admin import SERVICE as ADMIN
from .arc_clusters.service import SERVICE as ARC_CLUSTERS
from .arm_containerregistry.service import SERVICE as ARM_CONTAINERREGISTRY
from .arm_iothub.service import SERVICE as ARM_IOTHUB
from .arm_kubernetes.service import SERVICE as ARM_KUBERNETES
from .arm_kubernetesconfiguration.service import SERVICE as ARM_KUBERNETESCONFIGURATION
from .arm_resources.service import SERVICE as ARM_RESOURCES
from .core.lro import SERVICE as OPERATIONS
from .core.service import Service
from .edge_devices.service import SERVICE as EDGE_DEVICES
from .entra.service import SERVICE as ENTRA
from .image_source.service import SERVICE as IMAGE_SOURCE
from .iothub_service.service import SERVICE as IOTHUB_SERVICE
from .keyvault.service import SERVICE as KEYVAULT
from .registry_dataplane.service import SERVICE as REGISTRY_DATAPLANE

SERVICES: tuple[Service, ...] = (
    ENTRA,                   # main port, OPEN: Entra ID discovery and tokens
    ADMIN,                   # main port, OPEN: /_sandbox/* and /metadata/endpoints
    OPERATIONS,              # main port, ARM: operationStatuses / operationResults polling
    ARM_RESOURCES,           # main port, ARM: subscriptions, resource groups, providers
    ARM_CONTAINERREGISTRY,   # main port, ARM: Microsoft.ContainerRegistry; opens registry ports
    ARM_IOTHUB,              # main port, ARM: Microsoft.Devices/IotHubs; opens hub ports
    ARM_KUBERNETES,          # main port, ARM: Microsoft.Kubernetes/connectedClusters; OPEN: /_sandbox/arc/*
    ARM_KUBERNETESCONFIGURATION,  # main port, ARM: Microsoft.KubernetesConfiguration/extensions
    IOTHUB_SERVICE,          # each hub's port: the IoT Hub service API
    REGISTRY_DATAPLANE,      # each registry host's port: OCI distribution and ACR token auth
    IMAGE_SOURCE,            # its own port on the registry router: the mcr.microsoft.com / Docker Hub stand-in
    KEYVAULT,                # its own port: Key Vault secrets
    EDGE_DEVICES,            # main port, OPEN: device admin routes; device endpoints; runs the devices
    ARC_CLUSTERS,            # main port, OPEN: /_sandbox/arc/clusters/*/forward; forwards; runs cluster agents
)
