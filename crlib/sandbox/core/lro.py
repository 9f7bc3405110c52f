"""ARM long-running operations: Azure-AsyncOperation and Location polling with Retry-After.

An operation takes effect at once (the resource shows provisioningState Creating, Updating or
Deleting) and completes when its server-side duration, from the latency profile, has passed.
Completion runs the finalizer of its kind (core.service.OperationKind). Services declare their
kinds; an operation's record keeps the kind's name, so one pending at a restart finds its kind
again. Every request settles whatever has come due first,
which keeps the order of events deterministic without a background task.

A kind with an `outcome` (core.service.OperationKind) follows its resource past the finalizer: the
operation stays InProgress (record type FOLLOWING) until the outcome is terminal, which is asked
whenever the operation is read and whenever its service calls `follow_resource`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..clock import iso
from ..faults import fail_operation
from .arm import ARM, render_error
from .errors import SandboxError
from .http import Call, json_response
from .service import OperationKind, Routes, Service

if TYPE_CHECKING:
    from ..runtime import Sandbox

PENDING = "operation.pending"
FOLLOWING = "operation.following"
DONE = "operation"
# How often a client is told to poll an operation that follows its resource: the resource settles
# in the background, at no time the operation can predict.
FOLLOW_POLL_SECONDS = 0.25


class Operations:
    """The sandbox's long-running operations, of the kinds its services declare."""

    def __init__(self, sandbox: Sandbox, kinds: Iterable[OperationKind]):
        self._sandbox = sandbox
        self._kinds: dict[str, OperationKind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"two operation kinds are called {kind.name!r}")
            self._kinds[kind.name] = kind
        self._secret_results: dict[str, dict | None] = {}
        # When the earliest pending operation comes due; None when nothing is pending.
        # 0.0 at start makes the first settle load operations left pending by a restart.
        self._next_due: float | None = 0.0

    @property
    def kinds(self) -> dict[str, OperationKind]:
        return dict(self._kinds)

    def begin(self, kind: OperationKind, *, resource_id: str, location: str, namespace: str,
              api_version: str | None, result: dict | None = None, secret_result: bool = False) -> dict:
        """Start an operation; the caller has already applied its immediate effect.

        `secret_result` keeps a result that holds secrets (generated passwords) in memory only,
        so it never reaches state.db or a state dump; it is gone after a restart, as it would be
        once Azure's operation record expires."""
        if self._kinds.get(kind.name) is not kind:
            raise ValueError(f"operation kind {kind.name!r} is not declared by any service in services.SERVICES")
        sandbox = self._sandbox
        op_id = sandbox.new_request_id()
        now = time.time()
        op: dict[str, Any] = {
            "id": op_id,
            "kind": kind.name,
            "resourceId": resource_id,
            "status": "InProgress",
            "startTime": now,
            "dueTime": now + sandbox.settings.latency(kind.name),
            "result": None if secret_result else result,
            "statusUrl": f"{sandbox.arm_endpoint}/subscriptions/{sandbox.identity.subscription_id}/providers/"
            f"{namespace}/locations/{location}/operationStatuses/{op_id}?api-version={api_version}",
            "resultUrl": f"{sandbox.arm_endpoint}/subscriptions/{sandbox.identity.subscription_id}/providers/"
            f"{namespace}/locations/{location}/operationResults/{op_id}?api-version={api_version}",
        }
        if sandbox.faults.lro_fails():
            op["injectedFailure"] = True  # decided now, so a restart keeps it; see faults.fail_operation
        if secret_result:
            self._secret_results[op_id] = result
        sandbox.store.put(f"operation:{op_id}", PENDING, op)
        self._next_due = op["dueTime"] if self._next_due is None else min(self._next_due, op["dueTime"])
        return op

    def settle(self) -> None:
        """Complete every pending operation whose time has come."""
        now = time.time()
        if self._next_due is None or now < self._next_due:
            return
        pending = sorted(self._sandbox.store.by_type(PENDING), key=lambda o: o["dueTime"])
        self._next_due = None
        for op in pending:
            if op["dueTime"] > now:
                self._next_due = op["dueTime"]
                break
            self._complete(op)

    def _complete(self, op: dict) -> None:
        kind = self._kinds.get(op["kind"])
        finalizer = kind.finalizer if kind else None
        try:
            if op.get("injectedFailure"):
                raise SandboxError(500, **fail_operation(self._sandbox, op))
            result = finalizer(self._sandbox, op) if finalizer else None
            if result is not None:
                op["result"] = result
        except SandboxError as err:
            self._conclude(op, "Failed", {"code": err.code, "message": err.message})
            return
        if kind is not None and kind.outcome is not None:
            op["following"] = True
            self._sandbox.store.put(f"operation:{op['id']}", FOLLOWING, op)
            self.follow(op)
        else:
            self._conclude(op, "Succeeded", None)

    def _conclude(self, op: dict, status: str, error: dict | None) -> None:
        op["status"] = status
        op.pop("following", None)
        if error is not None:
            op["error"] = {"code": error.get("code") or "OperationFailed", "message": error.get("message") or ""}
        op["endTime"] = time.time()
        self._sandbox.store.put(f"operation:{op['id']}", DONE, op)

    def follow(self, op: dict) -> dict:
        """Ask a following operation's kind how it stands; conclude it when terminal. Returns op."""
        if not op.get("following"):
            return op
        kind = self._kinds.get(op["kind"])
        outcome = kind.outcome(self._sandbox, op) if kind is not None and kind.outcome is not None \
            else ("Succeeded", None)
        if outcome is not None:
            self._conclude(op, *outcome)
        return op

    def follow_resource(self, resource_id: str) -> None:
        """Conclude the following operations of a resource whose state has just changed, so an
        operation ends with the state it was following, never a later one."""
        for op in self._sandbox.store.by_type(FOLLOWING):
            if op["resourceId"].lower() == resource_id.lower():
                self.follow(op)

    def secret_result(self, op_id: str) -> dict | None:
        return self._secret_results.get(op_id)

    def get(self, op_id: str) -> dict:
        op = self._sandbox.store.get(f"operation:{op_id}")
        if op is None:
            raise SandboxError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        return self.follow(op)

    @staticmethod
    def retry_after(op: dict) -> dict[str, str]:
        """When to poll next, to the millisecond.

        azure-core prefers Retry-After but reads 0 as "use your 30 s default", and generated SDK
        code parses a first response's Retry-After as an integer. So Retry-After carries the whole
        seconds (only when there is at least one) and Retry-After-Ms the exact remainder: a poll
        lands when the operation completes, never later. An operation following its resource has no
        due time: FOLLOW_POLL_SECONDS.
        """
        remaining = FOLLOW_POLL_SECONDS if op.get("following") else max(0.0, op["dueTime"] - time.time())
        headers = {"Retry-After-Ms": str(max(10, math.ceil(remaining * 1000)))}
        if remaining >= 1:
            headers["Retry-After"] = str(math.floor(remaining))
        return headers

    # -- responses -------------------------------------------------------------------------
    def accepted_async(self, op: dict, body: dict, status: int) -> web.Response:
        """A PUT or PATCH answered with the resource and an Azure-AsyncOperation header."""
        headers = {"Azure-AsyncOperation": op["statusUrl"]} | self.retry_after(op)
        return json_response(body, status, headers)

    def accepted_location(self, op: dict) -> web.Response:
        """A DELETE or POST action answered 202 with a Location to poll."""
        headers = {"Location": op["resultUrl"]} | self.retry_after(op)
        return web.Response(status=202, headers=headers)


def _iso(ts: float | None) -> str | None:
    return iso(ts) if ts else None


def operation_status(call: Call) -> web.Response:
    ops = call.sandbox.operations
    op = ops.get(call.params["operationId"])
    body = {"id": op["statusUrl"].split("?")[0], "name": op["id"], "status": op["status"],
            "startTime": _iso(op["startTime"])}
    if op.get("endTime"):
        body["endTime"] = _iso(op["endTime"])
    if op.get("error"):
        body["error"] = op["error"]
    headers = ops.retry_after(op) if op["status"] == "InProgress" else None
    return json_response(body, 200, headers)


def operation_result(call: Call) -> web.Response:
    ops = call.sandbox.operations
    op = ops.get(call.params["operationId"])
    if op["status"] == "InProgress":
        return web.Response(status=202, headers={"Location": op["resultUrl"]} | ops.retry_after(op))
    if op["status"] == "Failed":
        err = op["error"]
        return render_error(SandboxError(400, err["code"], err["message"]))
    result = op.get("result") or ops.secret_result(op["id"])
    if result is not None:
        return json_response(result, 200)
    return web.Response(status=204)


URLS = [
    ("GET", "/subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operationStatuses/{operationId}",
     operation_status),
    ("GET", "/subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operationResults/{operationId}",
     operation_result),
]


SERVICE = Service(name="operations", routes=[Routes(ARM, URLS)])
