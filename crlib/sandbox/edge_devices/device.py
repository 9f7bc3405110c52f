"""One simulated IoT Edge device: it connects, applies deployments, runs modules and reports.

Each provisioned device runs as its own asyncio task inside the sandbox, stepping a few times a
second of real time; schedules run on the sandbox's simulated clock.

**Network layers.** A device provisioned with a parent_hostname is a child in a lower network
layer: as in the ISA-95 layering of Microsoft's nested IoT Edge documents ("Connect Azure IoT Edge
devices to create a hierarchy" (how-to-connect-downstream-iot-edge-device): "all IoT Edge devices
in lower layers of a hierarchy can only communicate with their gateway (parent) device"; "Configure
the API proxy module": "the clients on the downstream devices can't connect directly to the
cloud"), it opens connections only to its parent's address. A module image pull or a connected
registry activation/sync aimed anywhere else (the cloud registry's login server or data endpoint,
mcr.microsoft.com, any other host) fails as a firewall would drop it (`blocked`). A device without
a parent is in the top layer and reaches the cloud.

**`$upstream`.** The edge agent of a child resolves `$upstream` in an image name to its
parent_hostname, and the port after it names which port of the parent host it connects to: the
connected registry nested tutorial (tutorial-deploy-connected-registry-nested-iot-edge-cli.md,
"Deployment manifest for the lower layer") pulls every image from `$upstream:8000`, where the
parent's IoTEdgeApiProxy publishes nginx (NGINX_DEFAULT_PORT 8000) while edgeHub holds host port
443; the IoT Edge nested documents use `$upstream:443`, where their API proxy binds host port 443.
The sandbox's address of a device stands for host port 8000 of the API proxy (api_proxy), so
`$upstream:8000` is the parent's address; any other port (`$upstream:443`, or no port: the
registry default, 443) reaches the same address only when the parent's running API proxy
publishes that host port to the port nginx listens on, and fails otherwise (in Microsoft's
connected registry layout, host port 443 is edgeHub's, not a registry).

**Attribution.** Every registry request a device makes carries a User-Agent ending in
`IoTEdgeDevice/<deviceId>` (`user_agent`), so the sandbox's request log (GET /_sandbox/requests,
field `user_agent`) tells which device made it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING

from ..arm_containerregistry.connected import set_runtime_status
from ..core.errors import SandboxError
from ..iothub_service import device_side
from ..iothub_service import models as hub_models
from ..registry_dataplane.urls import ROUTER as REGISTRY_HOST
from . import agent, api_proxy, device_ca, models, oci_client
from .connected import MODULE_VERSION, ConnectedRegistryModule, ModuleFailure
from .models import EDGE_DEVICE, ENDPOINT_ROLE, parse_connection_string

if TYPE_CHECKING:
    from ..runtime import Sandbox

log = logging.getLogger("crlib.sandbox.edge_devices")
STEP_SECONDS = 0.1  # real time between steps
PULL_RETRY_SECONDS = 10  # simulated seconds before a module in backoff is pulled again
EDGE_AGENT, EDGE_HUB = "$edgeAgent", "$edgeHub"
DOCKER_HUB_ALIASES = ("docker.io", "registry-1.docker.io", "registry.hub.docker.com")
UPSTREAM = "$upstream"
PARENT_HOSTNAME_VARIABLE = "$IOTEDGE_PARENTHOSTNAME"
DEFAULT_REGISTRY_PORT = "443"  # an image's registry without a port is reached over HTTPS on 443
DEVICE_TOKEN = "IoTEdgeDevice"  # the User-Agent product naming the device


def user_agent(component: str, device_id: str) -> str:
    """The User-Agent of a device's registry requests: the component that makes them, then the
    device (`IoTEdgeDevice/<deviceId>`, always the last token; device ids hold no spaces).
    Module pulls: `edgeAgent/<agent version> (image pull) IoTEdgeDevice/<id>`; the connected
    registry module: `connected-registry/<module version> IoTEdgeDevice/<id>`. The first token is
    the sandbox's own (the real engine and module send their own product names); the last is
    what tests read."""
    return f"{component} {DEVICE_TOKEN}/{device_id}"


def device_of(user_agent_header: str | None) -> str | None:
    """The device id a logged User-Agent names, or None for traffic of no simulated device."""
    last = (user_agent_header or "").rsplit(" ", 1)[-1]
    prefix = f"{DEVICE_TOKEN}/"
    return last[len(prefix):] if last.startswith(prefix) else None


def split_image(image: str) -> tuple[str, str, str]:
    """'host:port/repo/name:tag' -> (host, 'repo/name', 'tag'); a digest reference works too."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("$")):
        host, path = first, rest
    else:
        host, path = "docker.io", image
    if "@" in path:
        repo, _, reference = path.partition("@")
    else:
        repo, _, reference = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "latest")
    return host, repo, reference


class EdgeDevice:
    def __init__(self, sandbox: Sandbox, record: dict):
        self.sandbox = sandbox
        self.key = record["key"]
        self.record = record
        self.connected = False
        self.error: str | None = None
        self.seen_version: int | None = None
        self.deployment: agent.Deployment | None = None
        self.status = (417, "The device has no deployment yet.")
        self.modules: dict[str, agent.ModuleState] = {}
        self.specs: dict[str, agent.ModuleSpec] = {}
        self.retry_at: dict[str, float] = {}
        self.connected_registries: dict[str, ConnectedRegistryModule] = {}
        self.reported_modules: set[str] = set()
        self.api_proxy: api_proxy.ApiProxySettings | None = None  # of the running API proxy
        self._offline = False  # whether the effects of going offline have been applied
        self._task: asyncio.Task | None = None

    # -- identity ------------------------------------------------------------------------------
    @property
    def hub_id(self) -> str | None:
        return self.record.get("hubId")

    @property
    def _hub(self) -> str:
        """The hub's id, for what runs only once the device has connected (so it has one)."""
        hub_id = self.hub_id
        if hub_id is None:
            raise SandboxError(404, "IotHubNotFound", f"Device '{self.device_id}' names no hub.")
        return hub_id

    @property
    def device_id(self) -> str:
        return self.record["deviceId"]

    @property
    def ca(self) -> device_ca.DeviceCA:
        return device_ca.DeviceCA(models.ca_directory(self.sandbox, self.record))

    def trust_bundle(self) -> str:
        """The CAs this device's modules trust: the host's (the sandbox CA stands for the public
        CAs a host trusts) and, for a nested device, its parent's root CA, as the operator sets
        trust_bundle_cert in config.toml. A device endpoint of any other device fails TLS."""
        parent = self._parent_record()
        if parent is None:
            return str(self.sandbox.ca_bundle)
        parent_root = device_ca.DeviceCA(models.ca_directory(self.sandbox, parent)).root_cert
        return str(device_ca.write_trust_bundle(self.ca, [self.sandbox.ca_bundle, parent_root]))

    # -- the network ---------------------------------------------------------------------------------
    @property
    def parent_hostname(self) -> str | None:
        return self.record.get("parentHostname") or None

    def blocked(self, target: str) -> str | None:
        """Why this device cannot open a connection to target (host[:port]), or None when it can:
        a child reaches only its parent's address (see the module docstring)."""
        parent = self.parent_hostname
        if parent is None or target.strip().lower() == parent.strip().lower():
            return None
        return (f"connect to {target} blocked: device '{self.device_id}' is in a lower network layer and reaches "
                f"only its parent '{parent}'")

    def _upstream(self, host: str) -> str:
        """`$upstream[:port]` -> the parent's address, when the port reaches its API proxy."""
        parent = self.parent_hostname
        if not parent:
            raise oci_client.PullError(f"{UPSTREAM} is not set: the device has no parent_hostname")
        port = host[len(UPSTREAM):].lstrip(":") or DEFAULT_REGISTRY_PORT
        if port == api_proxy.DEVICE_HOST_PORT:
            return parent
        record = self._parent_record()
        running = self.sandbox.edge.devices.get(record["key"]) if record else None
        settings = running.api_proxy if running else None
        if settings is not None and port in settings.published.get(f"{settings.nginx_port}/tcp", []):
            return parent
        published = ", ".join(settings.published.get(f"{settings.nginx_port}/tcp", [])) if settings else ""
        raise oci_client.PullError(
            f"could not connect to {host} (port {port} of the parent '{parent}'): the parent's API proxy does not "
            f"publish host port {port} to nginx" + (f" (it publishes {published})" if published else "")
            + "; in Microsoft's connected registry layout the API proxy listens on 8000 and edgeHub holds 443")

    def _gateway_host(self, gateway: str) -> str:
        """A connected registry's ParentGatewayEndpoint with `$IOTEDGE_PARENTHOSTNAME` resolved: the
        nested tutorial writes `$IOTEDGE_PARENTHOSTNAME:8000` (the environment variable IoT Edge sets
        on a lower layer device to its parent's address), which the module resolves; here it
        resolves as `$upstream` with the same port does."""
        if gateway.startswith(PARENT_HOSTNAME_VARIABLE):
            if not self.parent_hostname:
                raise oci_client.PullError(f"{PARENT_HOSTNAME_VARIABLE} is not set: the device has no parent_hostname")
            return self._upstream(UPSTREAM + gateway[len(PARENT_HOSTNAME_VARIABLE):])
        return gateway

    def _parent_record(self) -> dict | None:
        """The parent device, found by the address given at provisioning (the sandbox's records
        stand for what the operator knows of the parent host)."""
        host, _, port = (self.record.get("parentHostname") or "").rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            return None
        return models.find_by_port(self.sandbox, int(port))

    def _authenticate(self) -> str | None:
        """Why the hub refuses this device, or None when it accepts it."""
        parts = parse_connection_string(self.record["connectionString"],
                                        required=("HostName", "DeviceId", "SharedAccessKey"))
        if self.hub_id is None or self.sandbox.store.get(self.hub_id) is None:
            return f"Could not connect to {parts['HostName']}: no IoT hub answers there."
        try:
            identity = hub_models.get_device(self.sandbox.store, self.hub_id, self.device_id)
        except SandboxError:
            return f"Device '{self.device_id}' is not registered in the hub (IotHubUnauthorizedAccess)."
        keys = identity.get("authentication", {}).get("symmetricKey", {})
        given = base64.b64decode(parts["SharedAccessKey"])
        if not any(k and hmac.compare_digest(hashlib.sha256(base64.b64decode(k)).digest(),
                                             hashlib.sha256(given).digest()) for k in keys.values()):
            return "The device's SharedAccessKey was refused by the hub (IotHubUnauthorizedAccess)."
        if identity.get("status") == "disabled":
            return f"Device '{self.device_id}' is disabled."
        if not identity.get("capabilities", {}).get("iotEdge"):
            return f"Device '{self.device_id}' is not an IoT Edge device."
        return None

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        for module_id in (None, EDGE_AGENT, EDGE_HUB):
            device_side.set_connection_state(self.sandbox, self._hub, self.device_id, module_id, connected)

    # -- the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.record.get("endpointPort"):  # a record from before ports were reserved
            self.record["endpointPort"] = models.reserve_port(self.sandbox)
            self.sandbox.store.put(self.key, EDGE_DEVICE, self.record, parent=self.hub_id)
        device_ca.ensure(self.ca.directory, self.device_id)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for module in self.connected_registries.values():
            module.stop()
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a sandbox bug must not kill the device: log it and go on
                log.exception("device %s step failed", self.device_id)
            await asyncio.sleep(STEP_SECONDS)

    async def step(self) -> None:
        if self.check_offline():
            return
        self.error = self._authenticate()
        if self.error:
            if self.connected and self.hub_id and self.sandbox.store.get(self.hub_id):
                try:
                    self._set_connected(False)
                except SandboxError:
                    self.connected = False
            self.connected = False
            return
        self._set_connected(True)
        desired = device_side.desired(self.sandbox, self._hub, self.device_id, EDGE_AGENT)
        if desired.get("$version") != self.seen_version:
            self.seen_version = desired.get("$version")
            try:
                deployment = agent.parse(desired)
            except agent.DeploymentError as exc:
                self.status = (exc.code, exc.description)
                self._report(agent.Deployment(self.seen_version, "", {}, []))
                return
            if deployment is None:
                self.status = (417, "The device has no deployment yet.")
                self._report(None)
                return
            self.deployment = deployment
            await self._apply(deployment)
        elif self.deployment is not None:
            await self._retry_backoff()
        await self._step_modules()

    # -- offline ---------------------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        until = self.record.get("offlineUntil")
        return until is not None and self.sandbox.clock.time() < until

    def check_offline(self) -> bool:
        """While the record's offlineUntil (simulated time) lies ahead, the device is cut off: it
        neither steps nor reports. Once it has passed, the device comes back by itself."""
        if self.offline:
            if not self._offline:
                self._go_offline()
            return True
        if self._offline:
            self._come_back()
        return False

    def _go_offline(self) -> None:
        """What the cloud sees when a device loses its network: the hub marks the identity
        Disconnected, the connected registry turns Offline, the device endpoint stops answering."""
        self._offline = True
        if self.connected:
            try:
                self._set_connected(False)
            except SandboxError:  # the hub or identity is gone
                self.connected = False
        for module in self.connected_registries.values():
            module.cut_off = True
            if module.active and module.cr_id and self.sandbox.store.get(module.cr_id) is not None:
                with self.sandbox.store.transaction():
                    set_runtime_status(self.sandbox, module.cr_id, connection_state="Offline")
        self._close_endpoint()

    def _come_back(self) -> None:
        """Reopen the device endpoint if the API proxy runs, and sync at once (which reports
        Online); the step that follows reconnects to the hub."""
        self._offline = False
        if self.api_proxy is not None and self.api_proxy.publishes_device_port:
            self._open_endpoint()
        for module in self.connected_registries.values():
            module.cut_off = False
            module.next_sync = None

    # -- deployments -----------------------------------------------------------------------------
    async def _apply(self, deployment: agent.Deployment) -> None:
        wanted = {spec.name: spec for spec in deployment.modules}
        for name in [n for n in self.specs if n not in wanted]:
            self._stop_module(name)
        changed = [spec for name, spec in wanted.items()
                   if self.specs.get(name) != spec or self.modules.get(name, agent.ModuleState("")).runtime_status
                   != "running"]
        self.specs = wanted
        await asyncio.gather(*(self._start_module(spec) for spec in changed))
        self._summarise()

    async def _retry_backoff(self) -> None:
        now = self.sandbox.clock.time()
        due = [self.specs[n] for n, m in self.modules.items()
               if m.runtime_status == "backoff" and now >= self.retry_at.get(n, 0) and n in self.specs]
        if due:
            await asyncio.gather(*(self._start_module(spec) for spec in due))
            self._summarise()

    def _registry_host(self, host: str) -> str:
        """Where the device resolves an image's registry: the sandbox's own hosts; a child's
        firewall refuses any but its parent's address."""
        if host.startswith(UPSTREAM):
            return self._upstream(host)
        if host in ("mcr.microsoft.com", *DOCKER_HUB_ALIASES):
            source = next((p for p, h in self.sandbox.hosts.items() if h.role == "source"), None)
            reason = self.blocked(host)  # the public name is what the firewall sees
            if reason:
                raise oci_client.PullError(reason)
            if source is None:
                raise oci_client.PullError(f"could not resolve {host}")
            return f"127.0.0.1:{source}"
        reason = self.blocked(host)
        if reason:
            raise oci_client.PullError(reason)
        return host

    async def _pull(self, spec: agent.ModuleSpec) -> str:
        host, repo, reference = split_image(spec.image)
        credentials = next((oci_client.Credentials(c["username"], c["password"])
                            for c in (self.deployment.registry_credentials if self.deployment else {}).values()
                            if c["address"].lower() == host.lower()), oci_client.Credentials())
        if host in DOCKER_HUB_ALIASES and "/" not in repo:
            repo = f"library/{repo}"
        pulled = await oci_client.pull(self._registry_host(host), repo, reference, credentials,
                                       ca_bundle=self.trust_bundle(), blobs=self.sandbox.blobs, keep=False,
                                       user_agent=user_agent(f"edgeAgent/{agent.AGENT_VERSION} (image pull)",
                                                             self.device_id))
        return pulled.digest

    async def _start_module(self, spec: agent.ModuleSpec) -> None:
        now = self.sandbox.clock.time()
        state = self.modules.get(spec.name) or agent.ModuleState(spec.image)
        state.image = spec.image
        self.modules[spec.name] = state
        try:
            state.image_hash = await self._pull(spec)
        except oci_client.PullError as exc:
            self._backoff(spec.name, f"Failed to pull image {spec.image}: {exc}", now)
            return
        if spec.status == "stopped":
            state.runtime_status, state.status_description = "stopped", ""
            if split_image(spec.image)[1].endswith("azureiotedge-api-proxy"):
                self.api_proxy = None
                self._close_endpoint()
            return
        try:
            self._run_module(spec)
        except ModuleFailure as exc:
            self._backoff(spec.name, f"{exc.code}: {exc.description}", now)
            return
        state.runtime_status, state.status_description, state.exit_code = "running", "", 0
        state.last_start = now

    def _backoff(self, name: str, description: str, now: float) -> None:
        state = self.modules[name]
        if state.runtime_status == "running":
            state.restart_count += 1
            state.last_exit = now
        state.runtime_status, state.status_description, state.exit_code = "backoff", description, 1
        self.retry_at[name] = now + PULL_RETRY_SECONDS

    def _run_module(self, spec: agent.ModuleSpec) -> None:
        _, repo, _ = split_image(spec.image)
        if repo.endswith("acr/connected-registry"):
            old = self.connected_registries.pop(spec.name, None)
            if old:
                old.stop()
            self.connected_registries[spec.name] = ConnectedRegistryModule(
                self.sandbox, f"{self.key}/{spec.name}", spec.env, self.trust_bundle, blocked=self.blocked,
                user_agent=user_agent(f"connected-registry/{MODULE_VERSION}", self.device_id),
                resolve=self._gateway_host)
        elif repo.endswith("azureiotedge-api-proxy"):
            self._start_api_proxy(spec)

    def _stop_module(self, name: str) -> None:
        spec = self.specs.pop(name, None)
        self.modules.pop(name, None)
        module = self.connected_registries.pop(name, None)
        if module:
            module.stop()
        if spec and split_image(spec.image)[1].endswith("azureiotedge-api-proxy"):
            self.api_proxy = None
            self._close_endpoint()

    def _start_api_proxy(self, spec: agent.ModuleSpec) -> None:
        """nginx runs whatever its settings; the address answers only when the documented host
        port is published to the port nginx listens on (otherwise: connection refused)."""
        self.api_proxy = api_proxy.read(spec.env, spec.create_options)
        if self.api_proxy.publishes_device_port:
            self._open_endpoint()
        else:
            self._close_endpoint()

    def _open_endpoint(self) -> None:
        if self.sandbox.listener_port(self.key, ENDPOINT_ROLE):
            return
        reserved = self.record["endpointPort"]
        port = self.sandbox.open_listener(REGISTRY_HOST, self.key, reserved, role=ENDPOINT_ROLE,
                                          ssl_context=self.ca.server_context())
        if port != reserved:  # something else holds the host's port: nothing answers at the address
            log.warning("device %s: port %s is taken; its address stays unreachable", self.device_id, reserved)
            self.sandbox.close_listener(port)

    def _close_endpoint(self) -> None:
        port = self.sandbox.listener_port(self.key, ENDPOINT_ROLE)
        if port:
            self.sandbox.close_listener(port)
            self.sandbox.drop_connections(port)

    def routed_registry(self) -> ConnectedRegistryModule:
        """The connected registry the API proxy's route reaches; SandboxError 502 as nginx answers
        when its upstream (CONNECTED_ACR_ROUTE_ADDRESS) is not a running registry, 503 while the
        registry is not active."""
        settings = self.api_proxy
        if settings is None:
            raise SandboxError(503, "UNAVAILABLE", "The API proxy is not running.")
        name = settings.routed_module()
        module = self.connected_registries.get(name) if name else None
        if module is None:
            raise SandboxError(502, "BAD_GATEWAY", f"502 Bad Gateway: nginx could not reach the upstream "
                                                   f"{settings.route or '(CONNECTED_ACR_ROUTE_ADDRESS unset)'}.")
        if not module.active or module.cr_id is None:
            raise SandboxError(503, "UNAVAILABLE", "The connected registry on this device is not active.")
        return module

    async def _step_modules(self) -> None:
        now = self.sandbox.clock.time()
        changed = False
        for name, module in list(self.connected_registries.items()):
            state = self.modules.get(name)
            try:
                await module.step(now)
            except ModuleFailure as exc:
                if state and state.runtime_status == "running" and exc.code != "ACTIVATING":
                    self._backoff(name, f"{exc.code}: {exc.description}", now)
                    changed = True
                elif state and state.runtime_status == "backoff" and exc.code != "ACTIVATING":
                    state.status_description = f"{exc.code}: {exc.description}"
                continue
            if state and state.runtime_status != "running":
                state.runtime_status, state.status_description, state.exit_code = "running", "", 0
                state.last_start = now
                changed = True
        if changed:
            self._summarise()

    # -- reporting -------------------------------------------------------------------------------
    def _summarise(self) -> None:
        failed = [f"{n}: {m.status_description}" for n, m in self.modules.items() if m.runtime_status == "backoff"]
        self.status = (500, "; ".join(failed)) if failed else (200, "")
        self._report(self.deployment)

    def _report(self, deployment: agent.Deployment | None) -> None:
        code, description = self.status
        body = agent.reported(deployment=deployment, code=code, description=description, modules=self.modules)
        # Modules that left the deployment must leave the reported properties too.
        for gone in self.reported_modules - set(body["modules"]):
            body["modules"][gone] = None
        self.reported_modules = {n for n, v in body["modules"].items() if v is not None}
        device_side.report(self.sandbox, self._hub, self.device_id, EDGE_AGENT, body)
        hub = self.modules.get("edgeHub")
        if hub and hub.runtime_status == "running":
            hub_desired = device_side.desired(self.sandbox, self._hub, self.device_id, EDGE_HUB)
            device_side.report(self.sandbox, self._hub, self.device_id, EDGE_HUB, {
                "schemaVersion": "1.2", "lastDesiredVersion": hub_desired.get("$version"),
                "lastDesiredStatus": {"code": 200, "description": ""}, "clients": {}})

    def view(self) -> dict:
        return {"connected": self.connected, "offline": self.offline, "error": self.error,
                "lastDesiredStatus": self.status[0],
                "modules": {n: m.runtime_status for n, m in self.modules.items()},
                "connectedRegistries": {n: {"name": m.name, "active": m.active,
                                            "logLevel": m.effective.log_level,
                                            "clientTokenIds": m.effective.client_token_ids}
                                        for n, m in self.connected_registries.items()}}
