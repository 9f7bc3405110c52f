"""The IoT Edge API proxy module's settings, read from the deployment manifest as the module reads them.

- `NGINX_DEFAULT_PORT`: the port nginx listens on inside the container; 443 when unset (Microsoft
  Learn, "Configure the API proxy module for your gateway hierarchy", environment variables).
- `createOptions` `HostConfig.PortBindings`: which host port Docker publishes to which container
  port. The device address stands for the host port Microsoft's connected-registry manifest
  publishes, 8000 (bound to container port 8000, where its NGINX_DEFAULT_PORT puts nginx).
- `CONNECTED_ACR_ROUTE_ADDRESS`: `<module name>:<port>` of the connected registry module, which
  listens on 8080 inside its container (the same manifest's `connected-registry:8080`).

The address is reachable only when the published host port reaches the port nginx listens on;
registry requests are proxied only when the route names the running connected registry module.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NGINX_PORT = "443"
DEVICE_HOST_PORT = "8000"  # the host port Microsoft's manifest publishes for the API proxy
REGISTRY_MODULE_PORT = "8080"  # where the connected registry module listens in its container
ROUTE_ENV = "CONNECTED_ACR_ROUTE_ADDRESS"
PORT_ENV = "NGINX_DEFAULT_PORT"


@dataclass(frozen=True)
class ApiProxySettings:
    nginx_port: str
    published: dict[str, list[str]]  # container port ("8000/tcp") -> host ports
    route: str | None  # "module:port", or None when the route is not configured

    @property
    def publishes_device_port(self) -> bool:
        """Whether the documented host port reaches the port nginx listens on."""
        return DEVICE_HOST_PORT in self.published.get(f"{self.nginx_port}/tcp", [])

    def unreachable_reason(self) -> str | None:
        if self.publishes_device_port:
            return None
        return (f"host port {DEVICE_HOST_PORT} is not published to container port {self.nginx_port}/tcp, "
                f"where nginx listens (NGINX_DEFAULT_PORT)")

    def routed_module(self) -> str | None:
        """The module name the registry route points at, when it points at the registry's port."""
        if not self.route:
            return None
        module, _, port = self.route.rpartition(":")
        return module if module and port == REGISTRY_MODULE_PORT else None


def read(env: dict[str, str], create_options: dict) -> ApiProxySettings:
    host_config = create_options.get("HostConfig") if isinstance(create_options, dict) else None
    bindings = (host_config or {}).get("PortBindings") if isinstance(host_config, dict) else None
    published: dict[str, list[str]] = {}
    for container_port, hosts in (bindings or {}).items() if isinstance(bindings, dict) else []:
        key = container_port if "/" in str(container_port) else f"{container_port}/tcp"
        published[key] = [str(h.get("HostPort", "")) for h in hosts or [] if isinstance(h, dict)]
    nginx_port = (env.get(PORT_ENV) or DEFAULT_NGINX_PORT).strip()
    return ApiProxySettings(nginx_port, published, (env.get(ROUTE_ENV) or "").strip() or None)
