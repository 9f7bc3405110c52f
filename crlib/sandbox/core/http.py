"""A small case-insensitive router and the request object handlers receive.

aiohttp's router is case-sensitive, but ARM paths are not ("resourcegroups" and
"resourceGroups" name the same thing), so routes are matched here with our own regexes.
Synchronous handlers run inside one store transaction: a refusal rolls back every write.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from .errors import SandboxError

if TYPE_CHECKING:
    from ..runtime import Host, Sandbox

# {name} matches one path segment; {name:path} matches several (OCI repository names have slashes).
_PARAM = re.compile(r"\{(\w+)(:path)?\}")
# POSTs that only read. Everything else that is not GET/HEAD counts as a write.
WRITE_METHODS = {"PUT", "PATCH", "POST", "DELETE"}


@dataclass
class Call:
    """One request as a handler sees it."""

    request: web.Request
    sandbox: Sandbox
    params: dict[str, str]
    body: bytes
    host: Host  # which resource, and which of its endpoints, this port serves
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def query(self) -> CIMultiDict:
        return CIMultiDict(self.request.query)

    @property
    def headers(self):
        return self.request.headers

    @property
    def host_key(self) -> str:
        """The store key of the resource this port belongs to, for hosts that always have one."""
        if self.host.key is None:
            raise SandboxError(404, "NotFound", "This endpoint belongs to no resource.")
        return self.host.key

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    def json(self, *, required: bool = True) -> Any:
        if not self.body:
            if required:
                raise SandboxError(400, "InvalidRequestContent", "The request content was empty.")
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise SandboxError(400, "InvalidRequestContent",
                               f"The request content was invalid and could not be deserialized: {exc}.") from exc


Handler = Callable[[Call], web.StreamResponse | Awaitable[web.StreamResponse]]


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern
    handler: Handler
    write: bool | None


# A service's url table: (method, template, handler[, write]). `write` overrides whether the
# request log counts the route as a write (a POST that only reads says False).
UrlTable = Sequence[tuple]


@dataclass(frozen=True, eq=False)
class RouterSpec:
    """A kind of host, as services declare it: what its router is called and how it behaves.

    `name` is the service name the request log and the fault settings use ("arm", "iothub" ...).
    `render_error` turns a SandboxError into that host's error body; `before` runs ahead of every
    handler (authentication, api-version checks). The sandbox builds one Router per spec from the
    url tables services mount on it (core.service.Routes), and `Sandbox.open_listener(spec, ...)`
    binds a port that this router serves. Specs compare by identity.
    """

    name: str
    render_error: Callable[[SandboxError], web.Response]
    before: Callable[[Call, Route], None] | None = None


class Router:
    """Routes for one kind of host (ARM, an IoT hub, a registry...)."""

    def __init__(self, spec: RouterSpec):
        self.spec = spec
        self.service = spec.name
        self.routes: list[Route] = []
        self.render_error = spec.render_error
        self.before = spec.before

    def add(self, method: str, template: str, handler: Handler, *, write: bool | None = None) -> None:
        pattern = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{'.+?' if m.group(2) else '[^/]+'})", template.rstrip("/"))
        self.routes.append(Route(method.upper(), template, re.compile(f"^{pattern}/?$", re.I), handler, write))

    def include(self, urls: UrlTable) -> None:
        """Add a service's url table: (method, template, handler[, write])."""
        for entry in urls:
            self.add(*entry[:3], write=entry[3] if len(entry) > 3 else None)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_matched = False
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                path_matched = True
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, m.groupdict(), True
        return None, {}, path_matched

    async def dispatch(self, request: web.Request, sandbox: Sandbox, host: Host) -> web.StreamResponse:
        started = time.perf_counter()
        peer = _peer(request)  # read first: a reset fault closes the transport
        # Injected faults (crlib/sandbox/faults.py) answer before the handler, so they write nothing.
        fault = await sandbox.faults.before(self.service, request)
        if fault.response is None:
            response, wrote = await self._run(request, sandbox, host)
        else:
            response, wrote = fault.response, False
        response.headers.update(fault.headers)
        response.headers.setdefault("x-ms-request-id", sandbox.new_request_id())
        sandbox.store.log_request(
            service=self.service, host=request.host, method=request.method, path=request.path,
            api_version=request.query.get("api-version"), status=0 if fault.reset else response.status,
            wrote=wrote, duration_ms=(time.perf_counter() - started) * 1000, peer=peer,
            user_agent=request.headers.get("User-Agent"),
        )
        return response

    async def _run(self, request: web.Request, sandbox: Sandbox, host: Host) -> tuple[web.StreamResponse, bool]:
        """Run the route's handler; return its response and whether it wrote."""
        route, params, path_matched = self.match(request.method, request.path)
        wrote = False
        try:
            if route is None:
                if path_matched:
                    raise SandboxError(405, "MethodNotAllowed",
                                       f"The requested method {request.method} is not allowed.")
                raise SandboxError(404, "NotFound", f"No route for {request.method} {request.path}.")
            body = b"" if inspect.iscoroutinefunction(route.handler) else await request.read()
            call = Call(request=request, sandbox=sandbox, params=params, body=body, host=host)
            if inspect.iscoroutinefunction(route.handler):
                if self.before:
                    with sandbox.store.transaction():
                        self.before(call, route)
                response = await route.handler(call)
            else:
                # Settle in a transaction of its own: a refused request must not undo completions.
                with sandbox.store.transaction():
                    sandbox.operations.settle()
                with sandbox.store.transaction():
                    if self.before:
                        self.before(call, route)
                    response = route.handler(call)
            write = route.write if route.write is not None else request.method in WRITE_METHODS
            wrote = bool(write) and response.status < 400
        except SandboxError as err:
            response = self.render_error(err)
        except Exception as exc:  # a sandbox bug: answer like Azure does, and keep serving
            sandbox.log.exception("unhandled error for %s %s", request.method, request.path)
            response = self.render_error(SandboxError(500, "InternalServerError", repr(exc)))
        return response, wrote


def _peer(request: web.Request) -> str | None:
    """The client's address as "host:port" (IPv6 hosts in brackets), None when the transport is gone."""
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if not peername:
        return None
    host, port = peername[0], peername[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers)


def free_loopback_port(taken: set) -> int:
    """A loopback port free now and not in `taken` (ports reserved for listeners not yet open)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            return port
