"""The guard's bounded path: timeouts, deadlines, bulkheads, shedding by acuity, retries.

Time is a ManualClock throughout: a wait that is not over at once takes its whole simulated
time, and async timeouts jump the clock (ManualClock.run).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from healing import ClinicalContext, ClinicalSafetyError, Guard, InMemorySink, ManualClock
from healing.admission import AdmissionConfig
from healing.audit import AuditRecord
from healing.budget import RetryBudgetConfig
from healing.catalogue import load_catalogue
from healing.errors import CallShed, CallTimedOut
from healing.limits import CallGate, CallPolicy
from healing.registry import CircuitBreakerRegistry
from healing.safety import Acuity
from tests.factories import small_config

INFO = ClinicalContext("informational", "low")
BATCH = ClinicalContext("informational", "low", acuity="batch")
LIFE = ClinicalContext("diagnostic", "life_critical", patient_id="MRN-1")


class ListAudit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def aappend(self, record: AuditRecord) -> None:
        self.records.append(record)

    def pseudonymize(self, identifier: str) -> str:
        return "p-" + str(len(identifier))


def make(policy: CallPolicy, service: str = "care_locator",
         clock: ManualClock | None = None) -> Guard:
    clock = clock or ManualClock()
    return Guard(clock=clock, breakers=CircuitBreakerRegistry(clock, small_config(
                     window_size=50, minimum_number_of_calls=50)),
                 sink=InMemorySink(), audit=ListAudit(),
                 gate=CallGate({(service, None): policy}, clock))


def test_a_hanging_sync_call_times_out_and_the_fallback_answers():
    g = make(CallPolicy(timeout_s=2.0, admission=AdmissionConfig(limit=4)))
    release = threading.Event()
    r = g.call("care_locator", release.wait, context=INFO)
    assert r.tier == "static_fallback" and g.clock.now() == 2.0
    assert g.sink.outcomes[-1].error_kind == "CallTimedOut"
    assert g.breakers.get("care_locator").metrics().failed == 1  # counted as a failure
    lane = g.gate.lane("care_locator", None)
    assert lane.in_flight == 1  # the thread still runs: it keeps its place
    release.set()
    for _ in range(100):  # the worker thread returns and frees it
        if lane.in_flight == 0:
            break
        threading.Event().wait(0.01)
    assert lane.in_flight == 0


def test_hung_calls_hold_at_most_the_limit_then_calls_are_shed_at_once():
    g = make(CallPolicy(timeout_s=1.0, admission=AdmissionConfig(limit=2, reserved=())))
    release = threading.Event()
    for _ in range(2):
        assert g.call("care_locator", release.wait, context=INFO).tier == "static_fallback"
    t = g.clock.now()
    called = []
    r = g.call("care_locator", lambda: called.append(1), context=INFO)
    assert r.tier == "static_fallback" and not called and g.clock.now() == t
    assert g.sink.outcomes[-1].error_kind == "shed"
    assert g.breakers.get("care_locator").metrics().calls == 2  # a shed call is not counted
    release.set()


def test_an_asyncio_call_is_cancelled_at_its_timeout():
    clock = ManualClock()
    g = make(CallPolicy(timeout_s=3.0), clock=clock)
    cancelled = []

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(clock.now())
            raise

    async def main():
        return await g.acall("care_locator", hang, context=INFO)

    r = asyncio.run(clock.run(main()))
    assert r.tier == "static_fallback" and cancelled == [3.0]
    assert isinstance(g.audit.records[-1], AuditRecord)
    assert "CallTimedOut" in g.audit.records[-1].data["error"]


def test_a_deadline_shrinks_the_timeout_and_a_passed_one_calls_nothing():
    g = make(CallPolicy(timeout_s=30.0))
    r = g.call("care_locator", threading.Event().wait, context=INFO,
               deadline=g.deadline_in(1.5))
    assert r.tier == "static_fallback" and g.clock.now() == 1.5
    called = []
    r = g.call("care_locator", lambda: called.append(1), context=INFO,
               deadline=g.clock.now() - 0.1)
    assert r.tier == "static_fallback" and not called
    assert g.sink.outcomes[-1].error_kind == "deadline"
    # without a policy, a deadline bounds the call all the same
    plain = Guard(clock=ManualClock())
    r = plain.call("care_locator", threading.Event().wait, context=INFO,
                   deadline=plain.deadline_in(0.5))
    assert r.tier == "static_fallback" and plain.clock.now() == 0.5


def test_a_deadline_passes_over_a_tier_that_cannot_answer_in_time():
    clock = ManualClock()
    gate = CallGate({("clinical_reasoning", None): CallPolicy(timeout_s=10.0)}, clock)
    g = Guard(clock=clock, sink=InMemorySink(), gate=gate)

    def slow_deepseek(*_a):
        clock.advance(2.0)
        return {"diagnosis": "x", "confidence": 0.9}

    g.fallbacks.register_provider("clinical_reasoning", "deepseek", slow_deepseek)
    g.fallbacks.register_handler("clinical_reasoning", "rule_based_engine",
                                 lambda *_a: {"diagnosis": "rules", "confidence": 0.8})
    dx = ClinicalContext("diagnostic", "high")

    def down(*_a):
        raise ConnectionError("down")

    assert g.call("clinical_reasoning", down, context=dx).tier.endswith("deepseek")
    assert gate.lane("clinical_reasoning", "deepseek").typical_s > 0  # it learnt ~2 s
    gate.lane("clinical_reasoning", "deepseek").typical_s = 2.0
    r = g.call("clinical_reasoning", down, context=dx, deadline=g.deadline_in(1.0))
    assert r.tier == "degraded_mode" or r.tier.startswith("degraded_mode")
    assert any("deadline" in f.reason for f in r.passed_over)


def test_life_critical_requests_are_never_shed_and_batch_goes_first():
    g = make(CallPolicy(admission=AdmissionConfig(limit=10)), service="clinical_reasoning")
    lane = g.gate.lane("clinical_reasoning", None)
    for _ in range(7):  # routine work in flight: 7 of 10
        assert lane.acquire(Acuity.ROUTINE, None) == "admitted"
    g.fallbacks.register_handler("clinical_reasoning", "rule_based_engine",
                                 lambda *_a: {"diagnosis": "rules", "confidence": 0.8})
    ok = {"diagnosis": "x", "confidence": 0.9}
    batch = ClinicalContext("diagnostic", "high", acuity="batch")
    assert g.call("clinical_reasoning", lambda: ok, context=batch).tier != "primary"
    assert g.sink.outcomes[-1].error_kind == "shed"
    urgent = ClinicalContext("diagnostic", "high")
    assert g.call("clinical_reasoning", lambda: ok, context=urgent).tier == "primary"
    assert [lane.acquire(Acuity.URGENT, None) for _ in range(3)][-1].startswith("9 calls")
    assert lane.acquire(Acuity.LIFE_CRITICAL, None) == "admitted"
    assert lane.in_flight == 10
    # the limit is full; a life-critical request is still admitted and answered ...
    assert g.call("clinical_reasoning", lambda: ok, context=LIFE).tier == "primary"
    # ... and fails only because its provider did, explicitly, with guidance
    with pytest.raises(ClinicalSafetyError) as err:
        g.call("clinical_reasoning", lambda: (_ for _ in ()).throw(ConnectionError("x")),
               context=LIFE)
    assert err.value.guidance
    assert lane.admission.stats.shed[Acuity.LIFE_CRITICAL] == 0
    shed = [r for r in g.audit.records if r.data.get("error_kind") == "shed"]
    assert len(shed) == 1  # every shed request is audited
    assert "MRN-1" not in repr(g.audit.records)


def test_a_queued_request_gets_the_place_a_finishing_call_frees():
    g = make(CallPolicy(admission=AdmissionConfig(limit=1, max_queue=4, queue_timeout_s=5.0,
                                                  reserved=())))
    lane = g.gate.lane("care_locator", None)
    assert lane.acquire(Acuity.ROUTINE, None) == "admitted"
    result = {}
    waiter = threading.Thread(target=lambda: result.update(
        r=g.call("care_locator", lambda: {"place": 1}, context=INFO)))
    waiter.start()
    for _ in range(200):
        if lane.admission.queued:
            break
        threading.Event().wait(0.005)
    assert lane.admission.queued == 1
    lane.release()  # the call holding the place ends
    waiter.join(5)
    assert result["r"].tier == "primary" and lane.in_flight == 0


def test_retries_stay_within_the_budget_and_the_deadline():
    g = make(CallPolicy(retries=2, retry_budget=RetryBudgetConfig(ratio=0.2, min_per_s=0.0,
                                                                 window_s=10)))
    attempts = []

    def down():
        attempts.append(g.clock.now())
        raise ConnectionError("down")

    for _ in range(10):  # 10 requests, each wanting 2 retries: the budget allows 2 in all
        g.call("care_locator", down, context=INFO)
    assert len(attempts) == 10 + 2
    lane = g.gate.lane("care_locator", None)
    assert lane.budget.granted == 2 and lane.budget.refused == 10  # each asked until refused
    # a retry that the deadline leaves no time for is not made
    g2 = make(CallPolicy(retries=3, retry_budget=RetryBudgetConfig(min_per_s=100.0)))
    g2.gate.lane("care_locator", None).typical_s = 1.0

    def slow_down():
        g2.clock.advance(0.6)
        raise ConnectionError("down")

    g2.call("care_locator", slow_down, context=INFO, deadline=g2.deadline_in(1.5))
    assert g2.gate.lane("care_locator", None).budget.granted == 0


def test_shipped_catalogue_policies_bound_the_live_guard():
    policies = load_catalogue().call_policies()
    clock = ManualClock()
    gate = CallGate(policies, clock)
    lane = gate.lane("clinical_reasoning", "deepseek")
    assert lane.policy.timeout_s == 45.0 and lane.limit is not None
    assert gate.lane("clinical_reasoning", "gemini:pro").policy.timeout_s == 30.0
    assert gate.lane("database", "primary") is None  # no policy: not bounded
    snap = gate.snapshot()
    assert {s["provider"] for s in snap} == {"deepseek", "gemini:pro"}


def test_a_timeout_error_names_the_provider_and_what_cannot_be_interrupted():
    err = CallTimedOut("clinical_reasoning", "gemini:pro", 2.0)
    assert isinstance(err, TimeoutError) and "gemini:pro" in str(err)
    assert "not admitted" in str(CallShed("s", None, "batch", "full"))


def test_a_queued_asyncio_request_cancelled_by_its_caller_leaves_no_place_behind():
    clock = ManualClock()
    g = make(CallPolicy(admission=AdmissionConfig(limit=1, max_queue=4, queue_timeout_s=5.0,
                                                  reserved=())), clock=clock)
    lane = g.gate.lane("care_locator", None)
    assert lane.acquire(Acuity.ROUTINE, None) == "admitted"

    async def main():
        task = asyncio.ensure_future(g.acall("care_locator", lambda: {"x": 1}, context=INFO))
        for _ in range(20):
            await asyncio.sleep(0)
        assert lane.admission.queued == 1
        task.cancel()  # the caller went away while it waited for a place
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert lane.admission.queued == 0 and lane.in_flight == 1
    lane.release()
    assert lane.in_flight == 0  # nobody was handed the freed place


def test_each_failed_attempt_a_retry_follows_reaches_the_sink_though_the_request_succeeds():
    g = make(CallPolicy(retries=1, retry_budget=RetryBudgetConfig(min_per_s=100.0)))
    calls = []

    def flaky():
        calls.append(g.clock.now())
        if len(calls) == 1:
            raise ConnectionError("leaking")
        return {"ok": True}

    assert g.call("care_locator", flaky, context=INFO).tier == "primary"
    assert g.sink.outcomes[-1].error_kind is None  # the request shows no failure
    assert g.sink.counts[("care_locator", "retried")] == 1
    g.call("care_locator", lambda: {"ok": True}, context=INFO)  # no retry, nothing counted
    assert g.sink.counts[("care_locator", "retried")] == 1

    class Broken(InMemorySink):
        def retried(self, service, at):
            raise RuntimeError("sink down")

    g.sink = Broken()  # a broken sink costs the caller nothing
    calls.clear()
    assert g.call("care_locator", flaky, context=INFO).tier == "primary"
