"""A circuit breaker's whole state as plain data, and back: what the circuit actor persists
to Redis so that a restarted actor, or another process, takes up the same circuit.

A mixin of :class:`~healing.circuit.CircuitBreaker`, kept apart because it is the one part
that speaks the stored format (``circuit_state.SNAPSHOT_VERSION``) rather than the state
machine's rules; it reads and sets the breaker's fields under the breaker's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .circuit_state import (
    SNAPSHOT_VERSION,
    CircuitState,
    Rejection,
    parse_snapshot,
    shape_matches,
)
from .clock import Clock
from .config import CircuitConfig
from .window import CountWindow, TimeWindow, window_for

__all__ = ["SnapshotMixin"]


class SnapshotMixin:
    # the breaker's fields this part reads and sets (declared for the type checker)
    name: str
    config: CircuitConfig
    _lock: threading.Lock
    _clock: Clock
    _state: CircuitState
    _since: float
    _generation: int
    _consecutive_opens: int
    _rejection: Rejection | None
    _trials_issued: int
    _window: CountWindow | TimeWindow
    _trial: CountWindow
    _enter: Callable[[CircuitState, float | None], None]  # the breaker's own state entry

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole state as plain data (JSON-safe). Times are relative: monotonic time is
        meaningless in another process; ``taken_at`` (UTC epoch s) lets a restore subtract
        the time spent in storage."""
        with self._lock:
            r = self._rejection
            return {
                "version": SNAPSHOT_VERSION,
                "name": self.name,
                "state": self._state.value,
                "generation": self._generation,
                "consecutive_opens": self._consecutive_opens,
                "retry_in_s": (r.retry_at - now) if r is not None and r.retry_at is not None
                else None,
                "state_age_s": now - self._since,
                "trials_issued": self._trials_issued,
                "window": self._window.snapshot(now),
                "trial": self._trial.snapshot(now),
                "taken_at": self._clock.utcnow().timestamp(),
            }

    def restore(self, data: dict[str, Any], now: float) -> None:
        """Take on the state in ``data`` (from :meth:`snapshot`), validated first.

        A window whose type or size no longer matches this circuit's config starts empty
        rather than being bent into the new shape.
        """
        parsed = parse_snapshot(data)
        elapsed = max(0.0, self._clock.utcnow().timestamp() - parsed["taken_at"])
        with self._lock:
            # A new generation: permits issued before the restore belong to the old state.
            self._generation = max(parsed["generation"], self._generation) + 1
            self._consecutive_opens = parsed["consecutive_opens"]
            self._since = now - parsed["state_age_s"] - elapsed
            retry_in = parsed["retry_in_s"]
            state = parsed["state"]
            retry_at = None if retry_in is None else now + retry_in - elapsed
            self._window = window_for(self.config)
            if shape_matches(data["window"], self._window):
                self._window.restore(data["window"], now - elapsed)
            self._trial = CountWindow(self.config.permitted_calls_in_half_open)
            if shape_matches(data["trial"], self._trial):
                self._trial.restore(data["trial"], now)
            self._enter(state, retry_at)
            self._trials_issued = min(parsed["trials_issued"], self._trial.size)

