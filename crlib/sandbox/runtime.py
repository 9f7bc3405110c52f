"""The running sandbox: its state, its listeners, and the services mounted on them.

One aiohttp application serves every port. The local port a request arrived on says which
host it was addressed to: the main port serves Entra ID, ARM and the admin API; each IoT hub,
each registry endpoint, the image source and the key vault get a port of their own, so that
every host name the sandbox hands out is simply 127.0.0.1:<port> and needs no /etc/hosts entry.

The services come from one ordered list, services.SERVICES; each declares its routes,
operation kinds and hooks in a core.service.Service.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from . import tls
from .clock import Clock
from .config import ADMIN_TOKEN_FILE, RUNTIME_FILE, SandboxSettings, private_dir, write_private
from .core.arm import ARM, OPEN
from .core.http import Router, RouterSpec
from .core.lro import Operations
from .faults import FaultInjector, FaultSettings
from .image_source import models as image_source
from .keyvault import urls as keyvault_urls
from .registry_dataplane.storage import BlobStore
from .store import Store

if TYPE_CHECKING:
    from .core.service import Service
    from .edge_devices.fleet import EdgeRuntime

DEFAULT_LOCATION = "westus"


@dataclass
class Host:
    router: Router
    key: str | None = None  # the store key of the resource this port serves
    role: str | None = None  # e.g. "login" or "data" for a registry's two endpoints


class Sandbox:
    edge: EdgeRuntime  # set by the edge_devices service's on_init

    def __init__(self, state_dir: Path, *, port: int | None = None, latency_profile: str | None = None,
                 clock_speed: float | None = None, services: Sequence[Service] | None = None):
        """`services` defaults to services.SERVICES, in its order."""
        if services is None:
            from .services import SERVICES

            services = SERVICES
        self.services: tuple[Service, ...] = tuple(services)
        self.state_dir = private_dir(Path(state_dir))
        # The admin API's token: new at each start, kept where only this user can read it.
        self.admin_token = secrets.token_urlsafe(32)
        write_private(self.state_dir / ADMIN_TOKEN_FILE, self.admin_token + "\n")
        self.log = logging.getLogger("crlib.sandbox")
        self.settings = SandboxSettings.load_or_create(self.state_dir)
        if port is not None:
            self.settings.port = port
        if latency_profile is not None:
            self.settings.latency_profile = latency_profile
        if clock_speed is not None:
            self.settings.clock_speed = clock_speed
        self.identity = self.settings.identity
        self.location = DEFAULT_LOCATION
        self.ca_bundle = tls.ensure_certificates(self.state_dir)
        self.ssl_context = tls.server_ssl_context(self.state_dir)
        self.store = Store(self.state_dir / "state.db")
        self.blobs = BlobStore(self.state_dir)
        self.clock = Clock(self.settings.clock_speed)
        self.operations = Operations(self, [kind for service in self.services for kind in service.operation_kinds])
        self.faults = FaultInjector(FaultSettings.from_dict(self.settings.faults))
        self.hosts: dict[int, Host] = {}
        self.routers: dict[RouterSpec, Router] = {}
        self._runner: web.AppRunner | None = None
        self._sites: dict[int, web.BaseSite] = {}
        self._pending_sites: list[asyncio.Task[None]] = []
        self.port = 0
        from .entra.models import TokenIssuer

        self.tokens = TokenIssuer(self.state_dir)
        self._mount_services()

    # -- identity and endpoints ------------------------------------------------------------
    @property
    def arm_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return self.arm_endpoint

    @property
    def arm_audiences(self) -> list[str]:
        base = self.arm_endpoint
        return [base, base + "/", "https://management.azure.com", "https://management.azure.com/",
                "https://management.core.windows.net/", "https://management.core.windows.net"]

    @staticmethod
    def new_request_id() -> str:
        return str(uuid.uuid4())

    def status(self) -> dict:
        """What `crlib sandbox status --json` prints."""
        return {
            "arm_endpoint": self.arm_endpoint,
            "authority": self.authority,
            "tenant_id": self.identity.tenant_id,
            "subscription_id": self.identity.subscription_id,
            "client_id": self.identity.client_id,
            "client_secret": self.identity.client_secret,
            "ca_bundle": str(self.ca_bundle),
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "latency_profile": self.settings.latency_profile,
            "clock_speed": self.clock.speed,
            "image_source": image_source.host(self),
            "key_vault_url": keyvault_urls.key_vault_url(self),
        }

    # -- services --------------------------------------------------------------------------
    def _mount_services(self) -> None:
        """Build one router per RouterSpec the services mount on, then run their on_init hooks."""
        names = [service.name for service in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.routers = {OPEN: Router(OPEN), ARM: Router(ARM)}
        for service in self.services:
            for routes in service.routes:
                router = self.routers.get(routes.router)
                if router is None:
                    router = self.routers[routes.router] = Router(routes.router)
                router.include(routes.urls)
        for service in self.services:
            if service.on_init is not None:
                service.on_init(self)

    # -- listeners -------------------------------------------------------------------------
    def open_listener(self, router: RouterSpec, key: str | None = None, port: int = 0, *,
                      role: str | None = None, ssl_context: ssl.SSLContext | None = None) -> int:
        """Bind a new HTTPS port for one host, served by `router`; return the port.

        `key` is the store key of the resource the host belongs to (None: no resource owns it,
        and a reset keeps it), `role` which of its endpoints it is. `ssl_context` serves a
        certificate of the host's own (a simulated device's chain); by default the sandbox's.
        Safe to call from a handler."""
        served_by = self.routers.get(router)
        if served_by is None:
            raise ValueError(f"no service mounts routes on the {router.name!r} router")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            if not port:
                raise
            self.log.warning("port %s is taken; %s gets a new one", port, key)
            sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        bound = sock.getsockname()[1]
        self.hosts[bound] = Host(served_by, key, role)
        if self._runner is None:
            raise RuntimeError("the sandbox has not started")
        site = web.SockSite(self._runner, sock, ssl_context=ssl_context or self.ssl_context)
        self._sites[bound] = site
        self._pending_sites.append(asyncio.get_running_loop().create_task(site.start()))
        return bound

    def listener_port(self, key: str | None, role: str | None = None) -> int | None:
        for port, host in self.hosts.items():
            if host.key == key and host.role == role:
                return port
        return None

    def prune_listeners(self) -> None:
        """Close the ports of hosts whose resource no longer exists."""
        for port in [p for p, h in self.hosts.items() if h.key is not None and self.store.get(h.key) is None]:
            self.close_listener(port)

    def close_listener(self, port: int) -> None:
        self.hosts.pop(port, None)
        site = self._sites.pop(port, None)
        if site is not None:
            asyncio.get_running_loop().create_task(site.stop())

    def drop_connections(self, port: int) -> None:
        """Close the connections clients keep alive to a port, as a host that loses its network
        does; close_listener alone leaves them open (answering 421)."""
        server = self._runner.server if self._runner else None
        for handler in server.connections if server else []:
            transport = handler.transport
            sockname = transport.get_extra_info("sockname") if transport else None
            if sockname and sockname[1] == port:
                handler.force_close()

    def admin_authorized(self, request: web.Request) -> bool:
        """Whether `request` carries `Authorization: Bearer <admin token>` (compared in constant time)."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.admin_token.encode())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = self.hosts.get(sockname[1]) if sockname else None
        if host is None:
            return web.Response(status=421, text="misdirected request")
        # The admin API, on whichever port and in whichever case the path arrives, needs the token.
        if request.path.lstrip("/").lower().startswith("_sandbox") and not self.admin_authorized(request):
            return web.json_response({"error": {"code": "Unauthorized",
                                                "message": "The sandbox admin API needs its token: "
                                                           "Authorization: Bearer <state dir>/admin.token."}},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="crlib-sandbox"'})
        router = host.router
        if host.key is None and router.spec is OPEN:
            first = request.path.strip("/").split("/", 1)[0].lower()
            if first in {"subscriptions", "tenants", "providers"}:
                router = self.routers[ARM]
        return await router.dispatch(request, self, host)

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Clients keep connections alive; do not wait long for them when stopping.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        self.port = self.open_listener(OPEN, None, self.settings.port)
        self.settings.port = self.port
        self.settings.save(self.state_dir)
        # In services.SERVICES order: hubs and registries reopen their ports before devices run.
        for service in self.services:
            if service.on_start is not None:
                service.on_start(self)
        await asyncio.gather(*self._pending_sites)
        self._pending_sites.clear()
        self._write_runtime()

    async def stop(self) -> None:
        for service in self.services:
            if service.on_stop is not None:
                await service.on_stop(self)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()
        (self.state_dir / RUNTIME_FILE).unlink(missing_ok=True)
        (self.state_dir / ADMIN_TOKEN_FILE).unlink(missing_ok=True)

    def _write_runtime(self) -> None:
        write_private(self.state_dir / RUNTIME_FILE, json.dumps(self.status(), indent=2))

    def reset(self, *, rotate_ca: bool = False) -> None:
        """Forget every resource and request; keep the identity and main port, and the CA unless
        `rotate_ca` (then a new CA and server certificate serve every new connection)."""
        for port in [p for p, h in self.hosts.items() if h.key is not None]:
            self.close_listener(port)
        self.store.reset()
        if rotate_ca:
            tls.rotate_ca(self.state_dir)
            self.ssl_context.load_cert_chain(self.state_dir / tls.SERVER_CERT, self.state_dir / tls.SERVER_KEY)
