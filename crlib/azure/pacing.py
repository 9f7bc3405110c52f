"""Pacing ARM requests to the subscription's throttling budget, so a fleet slows down before ARM
refuses it instead of collecting 429s.

Microsoft Learn, "Understand how Azure Resource Manager throttles requests"
(azure-resource-manager/management/request-limits-and-throttling.md): ARM limits each subscription
and principal with a token bucket per kind of request (reads 250, refilled 25 per second; writes
200, refilled 10 per second; deletes 200, refilled 10 per second), and every response says what is
left in `x-ms-ratelimit-remaining-subscription-reads|writes|deletes`. A refused request gets 429
with Retry-After, which crlib's retry policy (crlib/retries.py) honours.

`ArmPacer` keeps, per kind, the last remaining count ARM reported, refills it at the documented
rate as time passes, and counts the requests in flight. A request goes at once while the estimate
stays above a reserve; below it, the caller waits until the bucket has refilled to the reserve.
Until ARM has reported a count the bucket is taken to be full. One pacer serves every client of a
process that talks to one ARM endpoint and subscription (`pacer_for`), whichever thread calls.

**A long-running operation's first poll waits for its Retry-After.** ARM's asynchronous operations
answer with `Azure-AsyncOperation` or `Location` and a Retry-After that says when to poll (Microsoft
Learn, "Track asynchronous Azure operations", async-operations.md). azure-core polls once at once,
before it first waits, so every operation costs one read that can only say "still running". The
policy holds that first poll until the time the answer named; later polls are azure-core's own.

No library does this: azure-core retries after a 429 but never reads the remaining-budget headers.
Hooked in as azure-core's `custom_hook_policy` (which the generated management clients run after the
retry policy, so each attempt is paced) and, for the plain ARM calls, as a requests adapter.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Microsoft Learn, request-limits-and-throttling.md: (bucket size, refill per second) per kind.
DOCUMENTED_BUCKETS: dict[str, tuple[float, float]] = {"reads": (250, 25), "writes": (200, 10), "deletes": (200, 10)}
HEADER = "x-ms-ratelimit-remaining-subscription-{}"
RESERVE_SHARE = 0.1  # keep a tenth of each bucket for other callers of the same principal
MIN_PAUSE_S = 0.005  # a wait is never shorter: no thread spins on a bucket a hair short of the reserve


def kind_of(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


@dataclass
class _Bucket:
    capacity: float
    refill: float
    remaining: float | None = None  # what ARM last reported (less what was sent since); None: not yet known
    stamp: float = 0.0
    in_flight: int = 0

    def estimate(self, now: float) -> float:
        if self.remaining is None:
            return self.capacity - self.in_flight
        return min(self.capacity, self.remaining + (now - self.stamp) * self.refill) - self.in_flight


@dataclass
class PacerStats:
    """What a pacer did: requests per kind, how often and how long callers waited, 429s seen."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DOCUMENTED_BUCKETS, 0))
    waits: int = 0
    waited_s: float = 0.0
    throttled: int = 0
    held_polls: int = 0  # operations' first polls held until their Retry-After


class ArmPacer:
    def __init__(self, buckets: Mapping[str, tuple[float, float]] = DOCUMENTED_BUCKETS, *,
                 reserve_share: float = RESERVE_SHARE, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._buckets = {kind: _Bucket(capacity, refill) for kind, (capacity, refill) in buckets.items()}
        self._reserve = {kind: max(1.0, b.capacity * reserve_share) for kind, b in self._buckets.items()}
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self.stats = PacerStats()
        self._first_polls: dict[str, float] = {}  # operation URL -> when its first poll may go

    def operation_started(self, url: str, retry_after_s: float | None) -> None:
        """An operation's status URL, and how long its answer asked to wait before polling it."""
        if retry_after_s:
            with self._lock:
                self._first_polls[url] = self._clock() + retry_after_s

    def hold_first_poll(self, url: str) -> float:
        """Before a GET: when it is an operation's first poll, wait until its Retry-After has passed."""
        with self._lock:
            due = self._first_polls.pop(url, None)
            pause = 0.0 if due is None else due - self._clock()
        if pause > 0:
            self._sleep(pause)
            with self._lock:
                self.stats.held_polls += 1
            return pause
        return 0.0

    def before(self, method: str) -> float:
        """Wait, when needed, until a request of this method may go; return the seconds waited."""
        kind = kind_of(method)
        bucket, reserve = self._buckets[kind], self._reserve[kind]
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                available = bucket.estimate(now)
                if available >= reserve - 1e-6:  # refills are floats: 0.2 s at 10/s is not always 2.0
                    bucket.in_flight += 1
                    self.stats.requests[kind] += 1
                    if waited:
                        self.stats.waits += 1
                        self.stats.waited_s += waited
                    return waited
                pause = max(MIN_PAUSE_S, (reserve - available) / bucket.refill)
            self._sleep(pause)
            waited += pause

    def after(self, method: str, status: int | None, headers: Mapping[str, str] | None) -> None:
        """Take in what a response said of the budget (or that none came: `status` None)."""
        kind = kind_of(method)
        bucket = self._buckets[kind]
        with self._lock:
            bucket.in_flight = max(0, bucket.in_flight - 1)
            now = self._clock()
            reported = (headers or {}).get(HEADER.format(kind))
            if status == 429:
                self.stats.throttled += 1
                bucket.remaining, bucket.stamp = 0.0, now
            elif reported is not None:
                with contextlib.suppress(ValueError):
                    bucket.remaining, bucket.stamp = float(reported), now

    def remaining(self, kind: str) -> float:
        with self._lock:
            return self._buckets[kind].estimate(self._clock())


_PACERS: dict[tuple[str, str], ArmPacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(arm_endpoint: str, subscription_id: str) -> ArmPacer:
    """The process's pacer for one ARM endpoint and subscription (ARM's buckets are per subscription
    and principal; a process signs in as one principal)."""
    key = (arm_endpoint.rstrip("/").lower(), subscription_id.lower())
    with _PACERS_LOCK:
        if key not in _PACERS:
            _PACERS[key] = ArmPacer()
        return _PACERS[key]


def pacing_policy(pacer: ArmPacer) -> Any:
    """An azure-core policy (for `custom_hook_policy`): every attempt paced, every answer read."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.core.pipeline.policies._utils import get_retry_after

    class ArmPacingPolicy(SansIOHTTPPolicy):
        def on_request(self, request: Any) -> None:
            method = request.http_request.method
            if method == "GET":
                pacer.hold_first_poll(request.http_request.url)
            pacer.before(method)
            request.context["crlib_paced"] = True

        def on_response(self, request: Any, response: Any) -> None:
            method, answer = request.http_request.method, response.http_response
            pacer.after(method, answer.status_code, answer.headers)
            request.context.pop("crlib_paced", None)
            if method != "GET" and answer.status_code in (200, 201, 202):
                status_url = answer.headers.get("Azure-AsyncOperation") or answer.headers.get("Location")
                if status_url:
                    pacer.operation_started(status_url, get_retry_after(response))

        def on_exception(self, request: Any) -> None:
            if request.context.pop("crlib_paced", None):
                pacer.after(request.http_request.method, None, None)

    return ArmPacingPolicy()


def pace_session(session: Any, pacer: ArmPacer) -> Any:
    """A requests session's adapters wrapped so that each request is paced (urllib3's own retries of
    it happen inside one send: crlib's plain ARM calls are a handful of reads per run)."""
    for adapter in list(session.adapters.values()):
        if getattr(adapter, "_crlib_paced", False):  # one adapter may serve several prefixes
            continue
        adapter._crlib_paced = True
        send = adapter.send

        def paced(request: Any, *args: Any, _send: Callable[..., Any] = send, **kwargs: Any) -> Any:
            pacer.before(request.method)
            try:
                response = _send(request, *args, **kwargs)
            except BaseException:
                pacer.after(request.method, None, None)
                raise
            pacer.after(request.method, response.status_code, response.headers)
            return response

        adapter.send = paced
    return session
