"""How an emulated service declares itself to the sandbox.

Each service keeps one declaration, `SERVICE = Service(...)`, in its package's `service.py`
(admin.py and core/lro.py keep theirs at the end of the module). It says, in one place:

- which url tables the service mounts on which router (`routes`): the main port's `core.arm.OPEN`
  (no ARM token: Entra ID, the admin API) or `core.arm.ARM`, or a router of its own whose hosts
  each get a port (an IoT hub, a registry's endpoints, the key vault: see `RouterSpec`);
- which kinds of long-running operation it begins and what completes each (`operation_kinds`);
- what it does when the sandbox is built, started and stopped (`on_init`, `on_start`, `on_stop`).

`crlib/sandbox/services.py` lists every service in order, and `runtime.Sandbox` reads that list
and nothing else. docs/sandbox.md ("Adding a service") walks through adding one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .http import RouterSpec, UrlTable

if TYPE_CHECKING:
    from ..runtime import Sandbox

__all__ = ["Finalizer", "OperationKind", "Outcome", "RouterSpec", "Routes", "Service", "UrlTable"]

# Completes an operation: gets the sandbox and the operation's record, may return the result a
# Location poll answers with (None keeps the one given to `begin`), and fails the operation by
# raising SandboxError. It runs inside the store transaction that settles the operation.
Finalizer = Callable[["Sandbox", dict], "dict | None"]

# How an operation that follows its resource ends (OperationKind.outcome): gets the sandbox and the
# operation's record; None while the resource is still provisioning, else (status, error): status
# "Succeeded" (error None), "Failed" or "Canceled" with an ARM error {"code", "message"}.
Outcome = Callable[["Sandbox", dict], "tuple[str, dict | None] | None"]


@dataclass(frozen=True, eq=False)
class OperationKind:
    """A kind of ARM long-running operation ("registry.create", "iothub.delete" ...).

    Handlers begin one with `sandbox.operations.begin(KIND, ...)`, passing this object. `name` is
    kept in the operation's record in state.db, so an operation still pending at a restart finds
    its kind (and finalizer) again by it, and it is the key of the kind's duration in the latency
    profiles (config.LATENCY_PROFILES). `finalizer` runs when the duration has passed; None means
    completion only marks the operation Succeeded. A kind must be listed in its service's
    `operation_kinds`: beginning one that is not is a sandbox bug and answers 500.

    `outcome`, when given, makes the operation follow its resource past the finalizer: it stays
    InProgress (polled every `core.lro.FOLLOW_POLL_SECONDS`) until `outcome` returns a terminal
    status, as an ARM operation whose resource settles in the background does (a cluster
    extension's operation lasts until the extension's provisioningState is terminal). It is asked
    when the operation is read and when its service calls `operations.follow_resource(id)`.
    """

    name: str
    finalizer: Finalizer | None = None
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Routes:
    """One url table mounted on one router."""

    router: RouterSpec
    urls: UrlTable


@dataclass(frozen=True)
class Service:
    """One emulated service, as the sandbox mounts it.

    name: a short label, unique among the services (error messages and docs use it).
    routes: the url tables it mounts, each on one router. Several services may mount on one
        router (every ARM provider mounts on core.arm.ARM); tables are tried in the order of
        `services.SERVICES`, then of `routes`.
    operation_kinds: every OperationKind its handlers begin.
    on_init: runs in `Sandbox.__init__`, in list order, before any port is open: attach
        per-sandbox objects, register resolvers. Must not open listeners.
    on_start: runs in `Sandbox.start()`, in list order, once the main port listens: reopen the
        ports of the hosts kept in state, seed data, start background tasks. Services whose
        hosts others depend on come first (hubs and registries reopen their ports before the
        simulated devices run).
    on_stop: awaited in `Sandbox.stop()`, in list order, before the listeners close.
    """

    name: str
    routes: Sequence[Routes] = ()
    operation_kinds: Sequence[OperationKind] = ()
    on_init: Callable[[Sandbox], None] | None = None
    on_start: Callable[[Sandbox], None] | None = None
    on_stop: Callable[[Sandbox], Awaitable[None]] | None = None
