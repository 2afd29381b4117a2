"""Admission by acuity, the adaptive limit and the retry budget, against models of their rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from healing.adaptive import AdaptiveConfig, Gradient2
from healing.admission import ADMITTED, SHED, Admission, AdmissionConfig, Waiter
from healing.budget import RetryBudget, RetryBudgetConfig
from healing.errors import ConfigError
from healing.safety import Acuity, ClinicalContext

LIFE, URGENT, ROUTINE, BATCH = Acuity


def test_ceilings_keep_the_top_of_the_limit_for_the_classes_above():
    adm = Admission(AdmissionConfig(limit=10))  # reserved 10 % / 10 % / 20 %
    assert [adm.ceiling(a) for a in Acuity] == [math.inf, 9.0, pytest.approx(8.0),
                                                pytest.approx(6.0)]
    got = [adm.try_acquire(BATCH) for _ in range(8)]
    assert got.count(ADMITTED) == 6 and got.count(SHED) == 2  # batch fills 6 of 10
    assert [adm.try_acquire(ROUTINE) for _ in range(3)] == [ADMITTED, ADMITTED, SHED]
    assert [adm.try_acquire(URGENT) for _ in range(2)] == [ADMITTED, SHED]
    # life-critical requests are never shed, past the limit too
    assert [adm.try_acquire(LIFE) for _ in range(5)] == [ADMITTED] * 5
    assert adm.in_flight == 14 and adm.stats.shed == [0, 1, 1, 2]


def test_the_queue_serves_the_most_urgent_first_and_makes_room_for_it():
    woke: list[str] = []
    adm = Admission(AdmissionConfig(limit=2, max_queue=2, queue_timeout_s=1.0,
                                    reserved=()))
    assert adm.try_acquire(ROUTINE) == ADMITTED and adm.try_acquire(ROUTINE) == ADMITTED
    batch = adm.try_acquire(BATCH, lambda: woke.append("batch"))
    routine = adm.try_acquire(ROUTINE, lambda: woke.append("routine"))
    assert isinstance(batch, Waiter) and isinstance(routine, Waiter) and adm.queued == 2
    urgent = adm.try_acquire(URGENT, lambda: woke.append("urgent"))  # the queue is full
    assert isinstance(urgent, Waiter) and batch.state == SHED and woke == ["batch"]
    assert adm.try_acquire(BATCH) == SHED  # nobody less urgent to push out
    adm.release()
    assert urgent.state == ADMITTED and woke[-1] == "urgent" and routine.state is None
    assert adm.abandon(routine, "waited too long") == SHED and adm.queued == 0
    adm.release()
    adm.release()
    assert adm.in_flight == 0


def test_admission_config_mistakes_name_their_field():
    with pytest.raises(ConfigError, match="queue_timeout_s"):
        AdmissionConfig(limit=4, max_queue=2)
    with pytest.raises(ConfigError, match="reserved"):
        AdmissionConfig(reserved=((URGENT, 0.5), (ROUTINE, 0.5)))
    with pytest.raises(ConfigError, match="reserved"):
        AdmissionConfig(reserved=((BATCH, 0.1),))
    with pytest.raises(ConfigError, match="acuity"):
        ClinicalContext("diagnostic", "high", acuity="life_critical")
    with pytest.raises(ConfigError, match="acuity"):
        ClinicalContext("diagnostic", "life_critical", acuity="batch")
    assert ClinicalContext("diagnostic", "high", acuity="batch").acuity is BATCH
    assert ClinicalContext("diagnostic", "life_critical").acuity is LIFE
    assert ClinicalContext("informational", "low").acuity is ROUTINE


class AdmissionMachine(RuleBasedStateMachine):
    """Random acquires, releases, abandons and limit changes against the rules."""

    def __init__(self) -> None:
        super().__init__()
        self.adm = Admission(AdmissionConfig(limit=6, max_queue=3, queue_timeout_s=1.0))
        self.holding = 0  # places handed out and not yet released
        self.waiting: list[Waiter] = []

    @rule(acuity=st.sampled_from(list(Acuity)), queue=st.booleans())
    def acquire(self, acuity: Acuity, queue: bool) -> None:
        before, limit = self.adm.in_flight, self.adm.limit
        got = self.adm.try_acquire(acuity, queue=queue)
        fits = acuity is LIFE or before < self.adm.ceiling(acuity)
        if got == ADMITTED:
            assert fits, "admitted over its class's ceiling"
            self.holding += 1
        elif isinstance(got, Waiter):
            assert queue and not fits and limit == self.adm.limit
            self.waiting.append(got)
        else:
            assert got == SHED and acuity is not LIFE and not fits

    @rule()
    def release(self) -> None:
        if self.holding:
            self.adm.release()
            self.holding -= 1

    @rule(limit=st.integers(1, 12))
    def set_limit(self, limit: int) -> None:
        self.adm.set_limit(limit)

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        pending = [w for w in self.waiting if w.state is None]
        if pending:
            w = data.draw(st.sampled_from(pending))
            assert self.adm.abandon(w, "time up") == SHED

    @invariant()
    def places_add_up(self) -> None:
        newly = [w for w in self.waiting if w.state == ADMITTED]
        self.holding += len(newly)
        self.waiting = [w for w in self.waiting if w.state is None]
        assert self.adm.in_flight == self.holding
        assert self.adm.queued == len(self.waiting) <= 3

    @invariant()
    def nobody_waits_who_fits(self) -> None:
        queue = sorted(w for w in self.waiting if w.state is None)
        if queue:
            assert self.adm.in_flight >= self.adm.ceiling(queue[0].acuity)


TestAdmissionMachine = AdmissionMachine.TestCase
TestAdmissionMachine.settings = settings(max_examples=150, stateful_step_count=40,
                                         deadline=None)


# -- Gradient2 ---------------------------------------------------------------------------------

def _feed(limit: Gradient2, latency: float, seconds: int, t0: float,
          workers: int = 1000) -> float:
    # A caller that uses its whole limit, against a provider serving ``workers`` calls at
    # once: calls finish at min(limit, workers) / latency a second (Little's law).
    t, end = t0, t0 + seconds
    while t < end:
        t += latency / min(limit.limit, workers)
        limit.sample(latency, limit.limit, t)
    return t


def test_a_slowing_provider_gets_a_smaller_limit_and_a_recovered_one_a_larger():
    limit = Gradient2(AdaptiveConfig(min_limit=4, max_limit=200), 50, 0.0)
    t = _feed(limit, 0.1, 60, 0.0)
    steady = limit.limit
    assert steady > 50  # latency as usual: it grows by about √limit a window
    t = _feed(limit, 0.4, 20, t)  # 4x slower: queueing
    slowed = limit.limit
    assert slowed < steady / 2
    _feed(limit, 0.1, 60, t)
    assert limit.limit > slowed * 2


@pytest.mark.parametrize("gain", [1.5, 2.0, 3.0])
def test_a_limit_in_use_stays_within_gain_times_what_the_provider_serves_at_once(gain):
    # Latency looks as usual (the provider queues nothing it shows), so Gradient2 alone
    # would grow the limit without end; the delivery rate says only 10 calls run at once.
    cfg = AdaptiveConfig(min_limit=4, max_limit=200, gain=gain)
    limit = Gradient2(cfg, 50, 0.0)
    _feed(limit, 0.1, 60, 0.0, workers=10)
    assert limit.limit <= gain * 10 + 1
    assert limit.limit >= min(gain * 10, 50) - 2  # not cut below what is served
    unbounded = Gradient2(AdaptiveConfig(min_limit=4, max_limit=200, gain=0), 50, 0.0)
    _feed(unbounded, 0.1, 60, 0.0, workers=10)
    assert unbounded.limit > 100


def test_after_a_hang_the_cap_does_not_hold_the_limit_back():
    # A hang: every call in flight, none answering for 20 s; then 40 served at once. The
    # delivery rate collapsed with it, yet the limit regrows as fast as without a cap.
    def run(gain: float) -> int:
        limit = Gradient2(AdaptiveConfig(min_limit=4, max_limit=200, gain=gain), 50, 0.0)
        t = _feed(limit, 0.1, 30, 0.0, workers=40)
        for _ in range(20):  # each window: ten timed-out calls, 1 s each
            for _ in range(10):
                t += 0.1
                limit.sample(1.0, limit.limit, t, timed_out=True)
        assert limit.limit <= 10
        _feed(limit, 0.1, 40, t, workers=40)
        return limit.limit

    assert run(2.0) == run(0.0) > 20


@given(st.lists(st.tuples(st.floats(0.0, 30.0), st.integers(0, 400), st.floats(0.0, 2.0)),
                max_size=300),
       st.integers(1, 20), st.integers(0, 300))
@settings(max_examples=150, deadline=None)
def test_the_limit_stays_within_its_bounds(samples, lo, span):
    cfg = AdaptiveConfig(min_limit=lo, max_limit=lo + span, min_window_samples=1,
                         window_s=0.5)
    limit = Gradient2(cfg, lo + span // 2, 0.0)
    t = 0.0
    for latency, in_flight, dt in samples:
        t += dt
        limit.sample(latency, in_flight, t)
        assert cfg.min_limit <= limit.limit <= cfg.max_limit


# -- retry budget ------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans()), max_size=400),
       st.floats(0.0, 1.0), st.floats(0.0, 3.0), st.integers(1, 20))
@settings(max_examples=200, deadline=None)
def test_retries_never_exceed_the_share_of_requests_plus_the_floor(events, ratio, floor, window):
    budget = RetryBudget(RetryBudgetConfig(ratio=ratio, min_per_s=floor, window_s=window))
    t = 0.0
    requests: list[int] = []  # the second of each request, and of each granted retry
    retries: list[int] = []
    for dt, is_retry in events:
        t += dt
        sec = int(t)
        if is_retry:
            if budget.try_retry(t):
                retries.append(sec)
                recent = [s for s in requests if sec - s < window]
                spent = [s for s in retries if sec - s < window]
                assert len(spent) <= floor * window + ratio * len(recent) + 1
        else:
            budget.request(t)
            requests.append(sec)
    assert budget.granted == len(retries)


def test_a_retry_storm_is_held_to_a_fifth_of_the_load():
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_per_s=1.0, window_s=10))
    granted = 0
    for i in range(1000):  # 100 requests a second for 10 s, each wanting 3 retries
        t = i / 100
        budget.request(t)
        granted += sum(budget.try_retry(t) for _ in range(3))
    assert granted <= 0.2 * 1000 + 10 and budget.refused >= 3000 - granted


def test_timeouts_back_the_limit_off_even_when_latency_looks_usual():
    # A collapse's latency becomes Gradient2's "usual" latency; timeouts still back it off.
    limit = Gradient2(AdaptiveConfig(min_limit=4, max_limit=200, timeout_backoff=0.9), 100, 0.0)
    t = 0.0
    for _ in range(30):  # a window of 2 s calls at the limit, one of them timing out
        for i in range(10):
            t += 0.1
            limit.sample(2.0, limit.limit, t, timed_out=(i == 0))
    assert limit.limit <= 100 * 0.9 ** 20
    assert limit.limit >= 4
