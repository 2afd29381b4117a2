"""The circuit breaker state machine: resilience4j's semantics, O(1) decide and record.

``allow(now)`` decides and returns a value: a :class:`Permit` to run the call, or a
:class:`Rejection` that says when to come back. Nothing is raised on the hot path and no lock
is held across the protected call; the guard turns a rejection into ``CircuitOpenError``.
The outcome is handed back with ``record(permit, code, now)``. A short lock guards only the
decision and the record, so concurrent calls run concurrently, and HALF_OPEN hands out exactly
``permitted_calls_in_half_open`` trial permits however many threads or tasks ask at once.

Permits carry the generation of the state that issued them: an outcome that arrives after the
circuit has moved on (a call admitted while CLOSED finishing after the circuit opened) is not
counted against the new state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .circuit_snapshot import SnapshotMixin
from .circuit_state import (
    IGNORED,
    LEGAL_TRANSITIONS,
    CircuitMetrics,
    CircuitState,
    Permit,
    Rejection,
)
from .clock import Clock, SystemClock
from .config import CircuitConfig
from .errors import IllegalTransition
from .events import CircuitTransitioned, ThresholdExceeded
from .window import FAILED, SLOW, SUCCESS, CountWindow, window_for

__all__ = [
    "IGNORED",
    "LEGAL_TRANSITIONS",
    "CircuitBreaker",
    "CircuitMetrics",
    "CircuitState",
    "Permit",
    "Rejection",
]

_log = logging.getLogger("selfheal.circuit")

_S = CircuitState
# States in which every caller gets the same permit without taking the lock.
_FREE_STATES = frozenset({_S.CLOSED, _S.METRICS_ONLY, _S.DISABLED})

_NO_EVENTS: list[Any] = []  # shared, never mutated: the common "nothing happened" answer

Listener = Callable[[Any], None]


class CircuitBreaker(SnapshotMixin):
    """One circuit. Thread-safe; never holds its lock across the protected call.

    Args:
        name: the circuit's name, used in errors and events.
        config: how it decides.
        clock: where event timestamps come from; decisions use the ``now`` passed in.
    """

    __slots__ = (
        "_clock",
        "_consecutive_opens",
        "_free",
        "_generation",
        "_listeners",
        "_lock",
        "_managed",
        "_min_calls",
        "_permit",
        "_record_result",
        "_rejection",
        "_since",
        "_slow_s",
        "_state",
        "_tap",
        "_trial",
        "_trials_issued",
        "_window",
        "config",
        "last_used",
        "name",
    )

    def __init__(
        self, name: str, config: CircuitConfig | None = None, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.config = config if config is not None else CircuitConfig()
        self._clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._min_calls = self.config.effective_minimum_calls
        self._slow_s = self.config.slow_call_duration_s
        self._record_result = self.config.record_result
        self._consecutive_opens = 0
        self._generation = 0
        self._since = self._clock.now()
        self.last_used = self._since
        self._trials_issued = 0
        self._trial = CountWindow(self.config.permitted_calls_in_half_open)
        self._window = window_for(self.config)
        self._tap: Any = None
        self._managed = False
        self._enter(_S.CLOSED, retry_at=None)

    # -- reading -----------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        return self._state

    def metrics(self, now: float | None = None) -> CircuitMetrics:
        """Counts over the current window (the trial window while HALF_OPEN)."""
        with self._lock:
            w = self._trial if self._state is _S.HALF_OPEN else self._window
            if now is not None:
                w.roll(now)
            return CircuitMetrics(self._state, w.calls, w.failed, w.slow)

    def retry_at(self) -> float | None:
        """Monotonic time at which an OPEN circuit admits a trial call; else None."""
        r = self._rejection
        return r.retry_at if self._state is _S.OPEN and r is not None else None

    def tap(self, sink: Any) -> None:
        """Append ``(now, code, is_trial)`` for every counted outcome to ``sink`` (a deque:
        its append is atomic). The cluster agent reads it to report outcomes to the actor."""
        self._tap = sink

    def manage(self, managed: bool = True) -> None:
        """Under cluster management an OPEN circuit waits for :meth:`start_probe` (granted by
        the cluster's probe lease) instead of half-opening by itself when its wait elapses."""
        self._managed = managed

    def start_probe(self, now: float, reason: str = "probe lease granted") -> list[Any]:
        """OPEN → HALF_OPEN now, whatever the wait: this process runs the trial calls."""
        with self._lock:
            if self._state is not _S.OPEN:
                return []
            events: list[Any] = []
            self._transition(_S.HALF_OPEN, now, reason, events)
        self._notify(events)
        return events

    def hold_open(self, now: float, retry_at: float, reason: str) -> list[Any]:
        """Enter (or stay in) OPEN until ``retry_at``, as the cluster decided."""
        with self._lock:
            if (self._state, _S.OPEN) not in LEGAL_TRANSITIONS:
                return []  # e.g. METRICS_ONLY or DISABLED by an operator: theirs to decide
            events: list[Any] = []
            self._transition(_S.OPEN, now, reason, events, retry_at=retry_at)
        self._notify(events)
        return events

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every transition and threshold event, outside the lock."""
        self._listeners.append(listener)

    # -- the hot path ------------------------------------------------------------------

    def allow(self, now: float) -> Permit | Rejection:
        """Decide whether a call may run now. Never raises, never blocks on the call."""
        free = self._free  # one atomic read: CLOSED / METRICS_ONLY / DISABLED need no lock
        if free is not None:
            return free
        events: list[Any] = []
        with self._lock:
            decision = self._allow_locked(now, events)
        if events:
            self._notify(events)
        return decision

    def classify_exception(self, exc: BaseException, duration_s: float) -> int:
        """The outcome code of a call that raised ``exc`` after ``duration_s``."""
        cfg = self.config
        if cfg.ignore_exception(exc):
            return IGNORED
        # An exception the config does not record counts as a success (resilience4j).
        code = FAILED if cfg.record_exception(exc) else SUCCESS
        return code | SLOW if duration_s >= self._slow_s else code

    def classify_result(self, result: Any, duration_s: float) -> int:
        """The outcome code of a call that returned ``result`` after ``duration_s``."""
        check = self.config.record_result
        code = FAILED if check is not None and check(result) else SUCCESS
        return code | SLOW if duration_s >= self._slow_s else code

    def on_result(self, permit: Permit, result: Any, duration_s: float, now: float) -> list[Any]:
        """Classify and record a call that returned ``result``: the fused success path."""
        check = self._record_result
        if duration_s < self._slow_s and (check is None or not check(result)):
            seq = permit.seq
            if seq is None:
                return self.record(permit, SUCCESS, now)
            tap = self._tap
            if tap is not None:
                tap.append((now, SUCCESS, False))
            if next(seq) != permit.check_at:
                return _NO_EVENTS  # a success in a count window: counted, nothing to decide
            return self.record(permit, SUCCESS, now, counted=True)
        return self.record(permit, self.classify_result(result, duration_s), now)

    def on_exception(
        self, permit: Permit, exc: BaseException, duration_s: float, now: float
    ) -> list[Any]:
        """Classify and record a call that raised ``exc``."""
        return self.record(permit, self.classify_exception(exc, duration_s), now)

    def record(
        self, permit: Permit, code: int, now: float, *, counted: bool = False
    ) -> list[Any]:
        """Count one outcome; returns the events it caused (also sent to listeners).

        ``counted`` says the outcome already took its place in the permit's window (the lock-free
        success path of :meth:`on_result`) and only the thresholds remain to be checked.
        """
        if not counted:
            tap = self._tap
            if tap is not None and code != IGNORED:
                tap.append((now, code, permit.state is _S.HALF_OPEN))
        seq = permit.seq
        if code == SUCCESS and seq is not None and not counted:
            # Count window: a success only replaces the oldest call, so it never raises a
            # rate; it can only open the circuit on the call that fills the window to its
            # minimum (calls grow by one per record).
            if next(seq) != permit.check_at:
                return _NO_EVENTS
            counted = True
        events: list[Any] = []
        lock = self._lock
        lock.acquire()
        try:
            if permit.generation != self._generation:
                return _NO_EVENTS  # issued by a state that has since ended
            if code == IGNORED:
                if self._state is _S.HALF_OPEN:
                    self._trials_issued -= 1
            else:
                # In a time window a success is checked too: the seconds it rolls out of the
                # window may have held successes, so the failure rate can rise.
                self._record_locked(None if counted else code, now, events)
        finally:
            lock.release()
        if events:
            self._notify(events)
        return events

    def release(self, permit: Permit) -> None:
        """Hand back a permit whose call never ran to an end (cancelled, or ignored)."""
        self.record(permit, IGNORED, 0.0)

    # -- time and operators ------------------------------------------------------------

    def tick(self, now: float) -> list[Any]:
        """Make the transitions that time alone causes (OPEN → HALF_OPEN, HALF_OPEN timeout)."""
        events: list[Any] = []
        with self._lock:
            state = self._state
            if (state is _S.OPEN and not self._managed
                    and now >= self._rejection.retry_at):  # type: ignore[union-attr, operator]
                self._transition(_S.HALF_OPEN, now, "wait in OPEN elapsed", events)
            elif state is _S.FORCED_OPEN and self._force_ended(now):
                self._transition(_S.HALF_OPEN, now, "forced open ended: trial calls", events)
            elif state is _S.HALF_OPEN:
                self._half_open_timeout(now, events)
        if events:
            self._notify(events)
        return events

    def transition_to(self, state: CircuitState, now: float, reason: str = "operator") -> list[Any]:
        """Move to ``state`` if the transition table allows it; raises IllegalTransition."""
        events: list[Any] = []
        with self._lock:
            if (self._state, state) not in LEGAL_TRANSITIONS:
                raise IllegalTransition(self.name, self._state, state)
            self._transition(state, now, reason, events)
        self._notify(events)
        return events

    def reset(self, now: float, reason: str = "manual reset") -> list[Any]:
        """Return to CLOSED with an empty window and no memory of earlier opens."""
        events: list[Any] = []
        with self._lock:
            self._consecutive_opens = 0
            self._transition(_S.CLOSED, now, reason, events)
        self._notify(events)
        return events

    def force_open(self, now: float, reason: str = "forced open by operator",
                   until: float | None = None) -> list[Any]:
        """Reject every call; from ``until`` on (if given), let trial calls through as
        HALF_OPEN does. An operator's force stays until reset; a workflow's ends."""
        events: list[Any] = []
        with self._lock:
            if (self._state, _S.FORCED_OPEN) not in LEGAL_TRANSITIONS:
                raise IllegalTransition(self.name, self._state, _S.FORCED_OPEN)
            self._transition(_S.FORCED_OPEN, now, reason, events, retry_at=until)
        self._notify(events)
        return events

    def disable(self, now: float, reason: str = "disabled by operator") -> list[Any]:
        return self.transition_to(_S.DISABLED, now, reason)

    def metrics_only(self, now: float, reason: str = "metrics only") -> list[Any]:
        return self.transition_to(_S.METRICS_ONLY, now, reason)

    # -- internals (every _name below runs under self._lock unless said otherwise) ------

    def _enter(self, state: CircuitState, retry_at: float | None) -> None:
        self._state = state
        w = self._window
        if isinstance(w, CountWindow) and state in (_S.CLOSED, _S.METRICS_ONLY):
            # The permit shares this window's counter: see Permit. The check position is the
            # call that fills the window to its minimum; a restored window may be past it.
            check_at = self._min_calls - 1 if w.total < self._min_calls else -1
            self._permit = Permit(self._generation, state, w.seq, check_at)
        else:
            self._permit = Permit(self._generation, state)
        self._rejection = (
            Rejection(state, retry_at) if state in (_S.OPEN, _S.FORCED_OPEN, _S.HALF_OPEN)
            else None
        )
        # Published last: a reader that sees the free permit sees a fully built state.
        self._free = self._permit if state in _FREE_STATES else None

    def _allow_locked(self, now: float, events: list[Any]) -> Permit | Rejection:
        state = self._state
        if state is _S.OPEN:
            if self._managed or now < self._rejection.retry_at:  # type: ignore[union-attr, operator]
                return self._rejection  # type: ignore[return-value]
            self._transition(_S.HALF_OPEN, now, "wait in OPEN elapsed", events)
            state = _S.HALF_OPEN
        if state is _S.HALF_OPEN:
            if self._half_open_timeout(now, events):
                return self._rejection  # type: ignore[return-value]
            if self._trials_issued < self._trial.size:
                self._trials_issued += 1
                return self._permit
            return self._rejection  # type: ignore[return-value]
        if state is _S.FORCED_OPEN:
            if self._force_ended(now):
                self._transition(_S.HALF_OPEN, now, "forced open ended: trial calls", events)
                return self._allow_locked(now, events)
            return self._rejection  # type: ignore[return-value]
        return self._permit  # a free state entered while we waited for the lock

    def _force_ended(self, now: float) -> bool:
        until = self._rejection.retry_at  # type: ignore[union-attr]
        return not self._managed and until is not None and now >= until

    def _half_open_timeout(self, now: float, events: list[Any]) -> bool:
        limit = self.config.max_wait_in_half_open_s
        if limit and now - self._since >= limit:
            self._consecutive_opens += 1
            self._transition(_S.OPEN, now, "trial calls did not finish in time", events)
            return True
        return False

    def _record_locked(self, code: int | None, now: float, events: list[Any]) -> None:
        # code None: the outcome is already in the window, only the thresholds remain.
        state = self._state
        if state is _S.CLOSED or state is _S.METRICS_ONLY:
            w = self._window
            if code is not None:
                w.record(code, now)
            calls = w.calls
            if calls >= self._min_calls:
                cfg = self.config
                fr = w.failed / calls
                sr = w.slow / calls
                if fr >= cfg.failure_rate_threshold or sr >= cfg.slow_call_rate_threshold:
                    if state is _S.CLOSED:
                        self._consecutive_opens = 1
                        self._transition(_S.OPEN, now, _threshold_reason(fr, sr, cfg), events,
                                         calls, fr, sr)
                    else:
                        events.append(ThresholdExceeded(self.name, self._clock.utcnow(), now,
                                                        calls, fr, sr))
        elif state is _S.HALF_OPEN:
            t = self._trial
            t.record(code, now)
            if t.calls >= t.size:
                cfg = self.config
                fr = t.failed / t.calls
                sr = t.slow / t.calls
                if fr >= cfg.failure_rate_threshold or sr >= cfg.slow_call_rate_threshold:
                    self._consecutive_opens += 1
                    self._transition(_S.OPEN, now, "trial calls " + _threshold_reason(fr, sr, cfg),
                                     events, t.calls, fr, sr)
                else:
                    self._consecutive_opens = 0
                    self._transition(_S.CLOSED, now, "trial calls succeeded", events,
                                     t.calls, fr, sr)
        # DISABLED records nothing; OPEN and FORCED_OPEN issue no permits of their generation.

    def _transition(
        self, to: CircuitState, now: float, reason: str, events: list[Any],
        calls: int = 0, fr: float | None = None, sr: float | None = None,
        retry_at: float | None = None,
    ) -> None:
        from_ = self._state
        if (from_, to) not in LEGAL_TRANSITIONS:  # internal moves are legal by construction
            raise IllegalTransition(self.name, from_, to)
        self._generation += 1
        self._since = now
        if to is not _S.OPEN and to is not _S.FORCED_OPEN:
            retry_at = None
        elif retry_at is None and to is _S.OPEN:
            retry_at = now + self.config.wait_for_open_number(max(1, self._consecutive_opens))
        if to is _S.HALF_OPEN:
            self._trial = CountWindow(self.config.permitted_calls_in_half_open)
            self._trials_issued = 0
        elif to is _S.CLOSED or to is _S.METRICS_ONLY:
            self._window = window_for(self.config)
        self._enter(to, retry_at)
        events.append(CircuitTransitioned(
            self.name, from_, to, reason, self._clock.utcnow(), now, calls, fr, sr,
            None if retry_at is None else retry_at - now,
        ))

    def _notify(self, events: list[Any]) -> None:
        # Runs outside the lock: a listener may call back into this circuit.
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a broken listener must not break the request path
                    _log.exception("listener %r failed on %s", listener, type(event).__name__)


def _threshold_reason(fr: float, sr: float, cfg: CircuitConfig) -> str:
    if fr >= cfg.failure_rate_threshold:
        return f"failure rate {fr:.0%} >= threshold {cfg.failure_rate_threshold:.0%}"
    return f"slow-call rate {sr:.0%} >= threshold {cfg.slow_call_rate_threshold:.0%}"
