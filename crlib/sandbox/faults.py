"""Seeded fault injection: throttling, outages, connection resets, slow answers and failed operations.

Azure fails in ordinary ways that a runbook must survive: ARM throttles (429 with Retry-After),
a front end is briefly unavailable (503), a connection drops, an answer is slow, a long-running
operation ends Failed. The sandbox injects these on request, from a `random.Random(seed)`, so the
same seed and the same sequence of requests give the same faults and a failing run can be replayed.

A faulted request never reaches its handler (nothing is written), except a slow one, which is
answered normally after the delay. ARM's token-bucket throttling is modelled separately: it is
not random, it depends on how fast a principal calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import socket
import struct
import time
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import jwt
from aiohttp import web

if TYPE_CHECKING:
    from .runtime import Sandbox

KINDS = ("throttle", "unavailable", "reset", "slow")
SERVICES = ("arm", "iothub", "registry", "keyvault", "entra")  # RouterSpec names (core.arm.OPEN is "entra")
DEFAULT_SERVICES = ("arm", "iothub", "registry")
COUNTERS = ("requests_seen", *KINDS, "lro_failed", "throttled_by_bucket")
# Microsoft Learn, "Azure Resource Manager request limits and throttling": a token bucket per
# subscription and principal, (capacity, refill per second) for each kind of request.
DEFAULT_BUCKETS = {"reads": (250, 25), "writes": (200, 10), "deletes": (200, 10)}
# Never faulted, whatever `services` says: the sandbox's own API must stay reachable to turn faults off.
ADMIN_PREFIXES = ("/_sandbox/", "/metadata/")
RETRY_AFTER = "1"  # what ARM sends with a 429 or 503 that is not a bucket refusal
SETTINGS_KEY = "faults"
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.I)


@dataclass
class FaultSettings:
    """What to inject. Every field is optional; the defaults inject nothing."""

    seed: int = 0
    rate: float = 0.0  # probability that one request is faulted
    kinds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 1.0))  # relative weights
    services: list[str] = field(default_factory=lambda: list(DEFAULT_SERVICES))
    slow_seconds: float = 0.5
    lro_failure_rate: float = 0.0  # probability that a newly begun long-running operation ends Failed
    arm_throttling: bool = False
    buckets: dict[str, list[float]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_BUCKETS.items()})

    @classmethod
    def from_dict(cls, raw: object) -> FaultSettings:
        """Check and build settings from JSON; raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("the fault settings must be a JSON object")
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        s = cls(**raw)
        s.seed = int(_number(s.seed, "seed", int))
        s.rate = _probability(s.rate, "rate")
        s.lro_failure_rate = _probability(s.lro_failure_rate, "lro_failure_rate")
        s.slow_seconds = _number(s.slow_seconds, "slow_seconds", float)
        if s.slow_seconds < 0:
            raise ValueError("slow_seconds must not be negative")
        if not isinstance(s.arm_throttling, bool):
            raise ValueError("arm_throttling must be true or false")
        if not isinstance(s.kinds, dict) or set(s.kinds) - set(KINDS):
            raise ValueError(f"kinds must map some of {', '.join(KINDS)} to weights")
        s.kinds = {k: _number(w, f"kinds.{k}", float) for k, w in s.kinds.items()}
        if any(w < 0 for w in s.kinds.values()) or (s.rate > 0 and not sum(s.kinds.values())):
            raise ValueError("kind weights must not be negative, and some must be positive when rate > 0")
        if not isinstance(s.services, list) or set(s.services) - set(SERVICES):
            raise ValueError(f"services must be a list of {', '.join(SERVICES)}")
        if not isinstance(s.buckets, dict) or set(s.buckets) - set(DEFAULT_BUCKETS):
            raise ValueError(f"buckets must map some of {', '.join(DEFAULT_BUCKETS)} to [capacity, refill per second]")
        given = s.buckets
        s.buckets = {k: list(v) for k, v in DEFAULT_BUCKETS.items()}
        for name, value in given.items():
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ValueError(f"buckets.{name} must be [capacity, refill per second]")
            capacity, refill = (_number(v, f"buckets.{name}", float) for v in value)
            if capacity < 1 or refill <= 0:
                raise ValueError(f"buckets.{name}: the capacity must be at least 1 and the refill positive")
            s.buckets[name] = [capacity, refill]
        return s

    def to_dict(self) -> dict:
        return asdict(self)


def _number(value: object, name: str, kind: type) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _probability(value: object, name: str) -> float:
    value = _number(value, name, float)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class Fault:
    """What the injector decided for one request."""

    response: web.StreamResponse | None = None  # sent instead of running the handler
    headers: dict[str, str] = field(default_factory=dict)  # added to whatever is sent
    reset: bool = False  # the connection was aborted: nothing reached the client


PASS = Fault()  # shared; never mutated


class TokenBucket:
    """ARM's throttling bucket: `capacity` tokens, refilled continuously at `refill` per second."""

    def __init__(self, capacity: float, refill: float):
        self.capacity, self.refill = capacity, refill
        self.tokens = capacity
        self.stamp = time.monotonic()

    def take(self) -> tuple[bool, int, int]:
        """(taken, whole tokens left, whole seconds until the next token)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, int(self.tokens), 0
        return False, 0, max(1, math.ceil((1 - self.tokens) / self.refill))


def _category(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


def _principal(request: web.Request) -> str:
    """The token's oid (or appid). The signature is checked later by ARM's own authentication;
    a request without a usable token is refused with 401 there, after counting here."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "anonymous"
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        return "anonymous"
    return str(claims.get("oid") or claims.get("appid") or "anonymous")


def error_response(status: int, code: str, message: str, retry_after: str) -> web.Response:
    """ARM's error envelope, sent for every service so that clients see one shape."""
    return web.Response(status=status, text=json.dumps({"error": {"code": code, "message": message}}),
                        content_type="application/json", headers={"Retry-After": retry_after})


def abort(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), before any byte of an answer."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultInjector:
    """Decides, per request, whether and how to fault it; counts what it did."""

    def __init__(self, settings: FaultSettings | None = None):
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings, re-seed and start counting afresh."""
        self.settings = settings
        self._rng = random.Random(settings.seed)
        # A stream of its own, so that turning LRO failures on does not shift the request faults.
        self._lro_rng = random.Random(f"lro-{settings.seed}")
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self.counters = dict.fromkeys(COUNTERS, 0)

    def view(self) -> dict:
        return {"settings": self.settings.to_dict(), "counters": dict(self.counters)}

    async def before(self, service: str, request: web.Request) -> Fault:
        """Called by Router.dispatch before the handler; may sleep (a slow answer)."""
        s = self.settings
        if service not in s.services or request.path.lower().startswith(ADMIN_PREFIXES):
            return PASS
        self.counters["requests_seen"] += 1
        headers: dict[str, str] = {}
        if service == "arm" and s.arm_throttling:
            refused, headers = self._take_token(request)
            if refused is not None:
                self.counters["throttled_by_bucket"] += 1
                return Fault(refused, headers)
        if s.rate <= 0 or self._rng.random() >= s.rate:
            return Fault(headers=headers) if headers else PASS
        kind = self._rng.choices(list(s.kinds), weights=list(s.kinds.values()))[0]
        self.counters[kind] += 1
        if kind == "slow":
            await asyncio.sleep(s.slow_seconds)
            return Fault(headers=headers)
        if kind == "reset":
            abort(request)
            return Fault(web.Response(status=503), reset=True)
        if kind == "throttle":
            response = error_response(429, "TooManyRequests", "The request was throttled (a fault the sandbox "
                                      "injected). Retry after the interval in Retry-After.", RETRY_AFTER)
        else:
            response = error_response(503, "ServiceUnavailable", "The service is temporarily unavailable (a fault "
                                      "the sandbox injected). Retry after the interval in Retry-After.", RETRY_AFTER)
        return Fault(response, headers)

    def _take_token(self, request: web.Request) -> tuple[web.Response | None, dict[str, str]]:
        m = _SUBSCRIPTION.match(request.path)
        category = _category(request.method)
        key = (m.group(1).lower() if m else "", _principal(request), category)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(*self.settings.buckets[category])
        taken, remaining, wait = bucket.take()
        headers = {f"x-ms-ratelimit-remaining-subscription-{category}": str(remaining)}
        if taken:
            return None, headers
        kind = {"reads": "Read", "writes": "Write", "deletes": "Delete"}[category]
        return error_response(429, "TooManyRequests", f"The request is being throttled as the limit has been "
                              f"reached for operation type - {kind}_Subscription. For more information, see - "
                              "https://aka.ms/armthrottling", str(wait)), headers

    # -- long-running operations ---------------------------------------------------------------
    def lro_fails(self) -> bool:
        """Whether a long-running operation that is just beginning will end Failed."""
        if self.settings.lro_failure_rate <= 0 or self._lro_rng.random() >= self.settings.lro_failure_rate:
            return False
        self.counters["lro_failed"] += 1
        return True


# -- failed operations ---------------------------------------------------------------------------
TRANSITIONAL = ("Creating", "Updating", "Deleting", "Accepted")  # Accepted: IoT Hub's "in progress"
LRO_FAILURE = {"code": "InternalServerError",
               "message": "The operation failed with an internal error (a fault the sandbox injected). Retry the "
                          "request: a PUT of the same resource drives it to Succeeded."}


def fail_operation(sandbox: Sandbox, op: dict) -> dict:
    """End an operation Failed without running its finalizer; return the operation's error.

    The resource keeps what the request already did and shows provisioningState Failed, as ARM
    leaves a resource whose deployment failed. A retried PUT then finds it and updates it (200,
    Updating, then Succeeded): there is still exactly one resource, so retrying is idempotent.
    A failed DELETE leaves the resource in place (Failed); a failed action (import, deactivate,
    generateCredentials) does not change the resource's state: an import copies nothing.
    """
    doc = sandbox.store.get(op["resourceId"])
    props = (doc or {}).get("properties")
    if doc is not None and isinstance(props, dict) and props.get("provisioningState") in TRANSITIONAL:
        props["provisioningState"] = "Failed"
        _save_in_place(sandbox, doc)
    return dict(LRO_FAILURE)


def _save_in_place(sandbox: Sandbox, doc: dict) -> None:
    """Write a resource back under the store type and parent it already has.

    ARM documents are stored under their lowercased type, a top-level resource under its
    resource group and a child under its parent; the lookup confirms it before writing."""
    rid, doc_type = doc.get("id", ""), str(doc.get("type", "")).lower()
    lowered = rid.lower()
    if doc_type.count("/") == 1 and "/providers/" in lowered:
        parent = rid[: lowered.index("/providers/")]
    else:
        parent = rid.rsplit("/", 2)[0]
    if any(str(d.get("id", "")).lower() == lowered for d in sandbox.store.children(parent, doc_type)):
        sandbox.store.put(rid, doc_type, doc, parent=parent)
    else:
        sandbox.log.warning("cannot mark %s Failed: its store type is not %s", rid, doc_type)
