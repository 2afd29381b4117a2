"""Property tests: the breaker against a brute-force reference model.

The model keeps every recorded outcome in a list and recomputes the window from scratch on
each step; the breaker must agree with it on every decision, every state and every count.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from healing import (
    LEGAL_TRANSITIONS,
    CircuitBreaker,
    CircuitConfig,
    CircuitState,
    CircuitTransitioned,
    ManualClock,
    WindowType,
)
from healing.window import FAILED, SLOW, CountWindow, TimeWindow

S = CircuitState
codes = st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])


class Model:
    """The breaker's rules written the slow, obvious way."""

    def __init__(self, cfg: CircuitConfig) -> None:
        self.cfg = cfg
        self.state = S.CLOSED
        self.gen = 0
        self.log: list[tuple[float, int]] = []  # outcomes recorded in the current CLOSED state
        self.trials: list[int] = []
        self.issued = 0
        self.retry_at = 0.0
        self.opens = 0

    def window(self, now: float) -> list[int]:
        if self.cfg.window_type is WindowType.COUNT:
            return [c for _, c in self.log[-self.cfg.window_size:]]
        head = math.floor(max([now] + [t for t, _ in self.log]))
        return [c for t, c in self.log if math.floor(t) > head - self.cfg.window_size]

    def to(self, state: S, now: float) -> None:
        self.state, self.gen = state, self.gen + 1
        if state is S.OPEN:
            self.retry_at = now + self.cfg.wait_for_open_number(self.opens)
        if state is S.HALF_OPEN:
            self.trials, self.issued = [], 0
        if state is S.CLOSED:
            self.log = []

    def allow(self, now: float) -> int | None:
        if self.state is S.OPEN and now >= self.retry_at:
            self.to(S.HALF_OPEN, now)
        if self.state is S.CLOSED:
            return self.gen
        if self.state is S.HALF_OPEN and self.issued < self.cfg.permitted_calls_in_half_open:
            self.issued += 1
            return self.gen
        return None

    def exceeds(self, window: list[int]) -> bool:
        n = len(window)
        return (n > 0 and (sum(c & 1 for c in window) / n >= self.cfg.failure_rate_threshold
                           or sum(c >> 1 for c in window) / n >= self.cfg.slow_call_rate_threshold))

    def record(self, gen: int, code: int, now: float) -> None:
        if gen != self.gen:
            return
        if self.state is S.CLOSED:
            self.log.append((now, code))
            w = self.window(now)
            if len(w) >= self.cfg.effective_minimum_calls and self.exceeds(w):
                self.opens = 1
                self.to(S.OPEN, now)
        elif self.state is S.HALF_OPEN:
            self.trials.append(code)
            if len(self.trials) == self.cfg.permitted_calls_in_half_open:
                if self.exceeds(self.trials):
                    self.opens += 1
                    self.to(S.OPEN, now)
                else:
                    self.opens = 0
                    self.to(S.CLOSED, now)


configs = st.builds(
    CircuitConfig,
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    window_type=st.sampled_from(list(WindowType)),
    window_size=st.integers(1, 6),
    minimum_number_of_calls=st.integers(1, 8),
    permitted_calls_in_half_open=st.integers(1, 3),
    wait_in_open_s=st.sampled_from([1.0, 2.5]),
    wait_multiplier=st.sampled_from([1.0, 2.0]),
    max_wait_in_open_s=st.sampled_from([None, 4.0]),
)


class BreakerMachine(RuleBasedStateMachine):
    @initialize(cfg=configs)
    def setup(self, cfg: CircuitConfig) -> None:
        self.clock = ManualClock()
        self.breaker = CircuitBreaker("prop", cfg, self.clock)
        self.model = Model(cfg)
        self.permits: list[tuple[object, int]] = []  # (breaker permit, model generation)
        self.seen: list[tuple[S, S]] = []
        self.breaker.add_listener(lambda e: self.seen.append((e.from_state, e.to_state))
                                  if isinstance(e, CircuitTransitioned) else None)

    @rule()
    def allow(self) -> None:
        now = self.clock.now()
        was_open = self.breaker.state is S.OPEN
        retry_at = self.breaker.retry_at()
        got = self.breaker.allow(now)
        expected = self.model.allow(now)
        assert got.allowed == (expected is not None)
        if was_open and now < retry_at:  # never a call through OPEN before the wait
            assert not got.allowed
        if got.allowed:
            self.permits.append((got, expected))

    @precondition(lambda self: self.permits)
    @rule(i=st.integers(0, 50), code=codes)
    def complete(self, i: int, code: int) -> None:
        permit, gen = self.permits.pop(i % len(self.permits))
        now = self.clock.now()
        self.breaker.record(permit, code, now)
        self.model.record(gen, code, now)

    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 2.5, 7.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "breaker"):
            return
        assert self.breaker.state is self.model.state
        if self.model.state is S.CLOSED:
            m = self.breaker.metrics()
            window = self.model.window(max([0.0] + [t for t, _ in self.model.log]))
            assert m.calls == len(window)
            assert m.failed == sum(c & 1 for c in window)
            assert m.slow == sum(c >> 1 for c in window)
        if self.model.state is S.OPEN:
            assert self.breaker.retry_at() == self.model.retry_at

    @invariant()
    def transitions_are_legal(self) -> None:
        for move in getattr(self, "seen", []):
            assert move in LEGAL_TRANSITIONS


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


ops = st.lists(st.one_of(
    st.tuples(st.just("allow"), st.just(0)),
    st.tuples(st.just("record"), codes),
    st.tuples(st.just("advance"), st.sampled_from([0.4, 1.0, 3.0])),
), max_size=40)


def drive(b: CircuitBreaker, clock: ManualClock, steps: list, permits: list) -> list:
    trace = []
    for op, arg in steps:
        now = clock.now()
        if op == "allow":
            p = b.allow(now)
            trace.append(("allow", p.allowed))
            if p.allowed:
                permits.append(p)
        elif op == "record" and permits:
            b.record(permits.pop(0), arg, now)
        elif op == "advance":
            clock.advance(arg)
        trace.append(b.state)
    return trace


@settings(max_examples=300, deadline=None)
@given(cfg=configs, prefix=ops, suffix=ops)
def test_snapshot_then_restore_behaves_identically_afterwards(cfg, prefix, suffix):
    clock = ManualClock()
    original = CircuitBreaker("a", cfg, clock)
    drive(original, clock, prefix, [])
    restored = CircuitBreaker("a", cfg, clock)
    restored.restore(original.snapshot(clock.now()), clock.now())
    assert restored.state is original.state
    # Both see the same future on the same clock: replay the suffix against each in turn.
    t = clock.now()
    trace_a = drive(original, clock, suffix, [])
    clock_b = ManualClock(start=t)  # decisions read only the `now` handed to them
    trace_b = drive(restored, clock_b, suffix, [])
    assert trace_a == trace_b


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 8), outcomes=st.lists(codes, max_size=40))
def test_count_window_counts_equal_a_recount(size, outcomes):
    w = CountWindow(size)
    for c in outcomes:
        w.record(c, 0.0)
    last = outcomes[-size:] if outcomes else []
    assert (w.calls, w.failed, w.slow) == (
        len(last), sum(c & 1 for c in last), sum(c >> 1 for c in last))
    assert w.codes() == last


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 8),
       steps=st.lists(st.tuples(st.floats(0, 4, allow_nan=False), codes), max_size=40))
def test_time_window_counts_equal_a_recount_and_eviction_is_exact(size, steps):
    w = TimeWindow(size)
    t = 0.0
    seen: list[tuple[float, int]] = []
    for dt, c in steps:
        t += dt
        w.record(c, t)
        seen.append((t, c))
        live = [x for s, x in seen if math.floor(s) > math.floor(t) - size]
        assert (w.calls, w.failed, w.slow) == (
            len(live), sum(x & 1 for x in live), sum(x >> 1 for x in live))
