"""Pacing ARM requests to the budget ARM reports: the pacer against ARM's token bucket on a simulated
clock (no timer raced), and crlib's SDK clients against the sandbox's buckets at Azure's values."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from testkit import site_data

from crlib import params
from crlib.azure.pacing import HEADER, ArmPacer
from crlib.context import open_context
from crlib.sandbox import control
from crlib.secrets import LocalSecretStore


class SimulatedArm:
    """ARM's token bucket (as crlib.sandbox.faults.TokenBucket keeps it) on a clock the test moves."""

    def __init__(self, capacity: float, refill: float):
        self.now = 0.0
        self.capacity, self.refill, self.tokens, self.stamp = capacity, refill, capacity, 0.0
        self.refused = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def answer(self, kind: str) -> tuple[int, dict[str, str]]:
        self.tokens = min(self.capacity, self.tokens + (self.now - self.stamp) * self.refill)
        self.stamp = self.now
        if self.tokens >= 1:
            self.tokens -= 1
            return 200, {HEADER.format(kind): str(int(self.tokens))}
        self.refused += 1
        return 429, {HEADER.format(kind): "0"}


@pytest.mark.parametrize("kind,method", [("reads", "GET"), ("writes", "PUT"), ("deletes", "DELETE")])
def test_the_pacer_keeps_a_burst_inside_the_bucket(kind, method):
    arm = SimulatedArm(capacity=20, refill=10)
    pacer = ArmPacer({k: (20, 10) for k in ("reads", "writes", "deletes")}, clock=arm.clock, sleep=arm.sleep)
    for _ in range(200):
        pacer.before(method)
        status, headers = arm.answer(kind)
        pacer.after(method, status, headers)
    assert arm.refused == 0
    # 200 requests through a bucket of 20 refilled at 10/s take (200 - 20) / 10 = 18 s, plus the reserve kept.
    assert 18 <= arm.now <= 18 + 2 * 2, arm.now
    assert pacer.stats.requests[kind] == 200 and pacer.stats.throttled == 0


def test_without_the_pacer_the_same_burst_is_refused():
    arm = SimulatedArm(capacity=20, refill=10)
    answers = [arm.answer("reads")[0] for _ in range(200)]  # no time passes between them
    assert answers.count(429) == 180


def test_a_429_empties_the_budget_and_requests_in_flight_count():
    arm = SimulatedArm(capacity=20, refill=10)
    pacer = ArmPacer({k: (20, 10) for k in ("reads", "writes", "deletes")}, clock=arm.clock, sleep=arm.sleep)
    for _ in range(18):  # 18 in flight: the estimate is 20 - 18 = 2, above the reserve of 2
        pacer.before("GET")
    assert arm.now == 0
    pacer.after("GET", 429, {})
    assert pacer.stats.throttled == 1
    assert pacer.remaining("reads") == pytest.approx(-17)  # nothing left, 17 still in flight
    pacer.before("GET")  # waits (2 + 17) / 10 s for the bucket to refill to the reserve
    assert arm.now == pytest.approx(1.9)


def test_one_lock_serves_many_threads():
    arm = SimulatedArm(capacity=20, refill=10)
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            arm.now += seconds / 8  # eight threads wait side by side

    pacer = ArmPacer({k: (20, 10) for k in ("reads", "writes", "deletes")}, clock=arm.clock, sleep=sleep)

    def one(_: int) -> None:
        pacer.before("PUT")
        with lock:
            status, headers = arm.answer("writes")
        pacer.after("PUT", status, headers)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(120)))
    assert arm.refused == 0 and pacer.stats.requests["writes"] == 120


@pytest.fixture
def throttled(sandbox):
    control.set_faults(sandbox, arm_throttling=True)  # the buckets at Azure's documented values
    yield sandbox
    control.set_faults(sandbox)


def test_crlibs_clients_stay_inside_armss_read_bucket(throttled, tmp_path):
    site = params.load(site_data(throttled))
    ctx = open_context(site, secrets=LocalSecretStore(tmp_path / "secrets"))
    subscription = ctx.clients.acr.registries

    def read(_: int) -> int:
        return len(list(subscription.list()))  # one GET each: no registry of this site's exists

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(read, range(400)))  # more than the bucket of 250: 150 must wait for refills
    counters = control.fault_counters(throttled)
    assert counters["throttled_by_bucket"] == 0, counters
    assert ctx.clients.arm_pacer.stats.waits > 0
