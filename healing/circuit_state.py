"""What a circuit breaker is and answers, apart from how it decides: its states and their
legal moves, the permit or rejection ``allow`` returns, a reading of its window, and the
validation of a saved snapshot (a restarted circuit actor restores one from Redis)."""

from __future__ import annotations

import enum
from typing import Any

from .errors import ConfigError
from .window import CountWindow, TimeWindow

__all__ = ["IGNORED", "LEGAL_TRANSITIONS", "SNAPSHOT_VERSION", "CircuitMetrics", "CircuitState",
           "Permit", "Rejection", "parse_snapshot", "shape_matches"]

IGNORED = -1  # outcome code: not counted at all, and a HALF_OPEN trial permit is handed back

SNAPSHOT_VERSION = 1


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"


_S = CircuitState
# resilience4j's StateTransition table. A same-state move is a reset in place.
LEGAL_TRANSITIONS: frozenset[tuple[CircuitState, CircuitState]] = frozenset(
    {
        (_S.CLOSED, _S.CLOSED), (_S.CLOSED, _S.OPEN), (_S.CLOSED, _S.DISABLED),
        (_S.CLOSED, _S.METRICS_ONLY), (_S.CLOSED, _S.FORCED_OPEN),
        (_S.HALF_OPEN, _S.HALF_OPEN), (_S.HALF_OPEN, _S.CLOSED), (_S.HALF_OPEN, _S.OPEN),
        (_S.HALF_OPEN, _S.DISABLED), (_S.HALF_OPEN, _S.METRICS_ONLY),
        (_S.HALF_OPEN, _S.FORCED_OPEN),
        (_S.OPEN, _S.OPEN), (_S.OPEN, _S.CLOSED), (_S.OPEN, _S.HALF_OPEN),
        (_S.OPEN, _S.DISABLED), (_S.OPEN, _S.METRICS_ONLY), (_S.OPEN, _S.FORCED_OPEN),
        (_S.FORCED_OPEN, _S.FORCED_OPEN), (_S.FORCED_OPEN, _S.CLOSED),
        (_S.FORCED_OPEN, _S.OPEN), (_S.FORCED_OPEN, _S.DISABLED),
        (_S.FORCED_OPEN, _S.METRICS_ONLY), (_S.FORCED_OPEN, _S.HALF_OPEN),
        (_S.DISABLED, _S.DISABLED), (_S.DISABLED, _S.CLOSED), (_S.DISABLED, _S.OPEN),
        (_S.DISABLED, _S.FORCED_OPEN), (_S.DISABLED, _S.HALF_OPEN),
        (_S.DISABLED, _S.METRICS_ONLY),
        (_S.METRICS_ONLY, _S.METRICS_ONLY), (_S.METRICS_ONLY, _S.CLOSED),
        (_S.METRICS_ONLY, _S.FORCED_OPEN), (_S.METRICS_ONLY, _S.DISABLED),
    }
)



class Permit:
    """Leave to run one call; hand it back to :meth:`CircuitBreaker.record`.

    In a CLOSED or METRICS_ONLY circuit with a count window the permit carries that window's
    sequence counter (``seq``), so recording a success is one atomic ``next(seq)`` with no
    lock; ``check_at`` is the sequence number whose call fills the window to its minimum, the
    one success that can still open the circuit.
    """

    __slots__ = ("check_at", "generation", "seq", "state")
    allowed = True

    def __init__(
        self, generation: int, state: CircuitState, seq: Any = None, check_at: int = -1
    ) -> None:
        self.generation = generation
        self.state = state
        self.seq = seq
        self.check_at = check_at

    def __repr__(self) -> str:
        return f"Permit({self.state.name}, generation={self.generation})"


class Rejection:
    """The circuit refused the call. ``retry_at`` is monotonic time, or None if unknown."""

    __slots__ = ("retry_at", "state")
    allowed = False

    def __init__(self, state: CircuitState, retry_at: float | None) -> None:
        self.state = state
        self.retry_at = retry_at

    def retry_after_s(self, now: float) -> float | None:
        return None if self.retry_at is None else max(0.0, self.retry_at - now)

    def __repr__(self) -> str:
        return f"Rejection({self.state.name}, retry_at={self.retry_at})"


class CircuitMetrics:
    """A consistent reading of a circuit's window."""

    __slots__ = ("calls", "failed", "slow", "state")

    def __init__(self, state: CircuitState, calls: int, failed: int, slow: int) -> None:
        self.state, self.calls, self.failed, self.slow = state, calls, failed, slow

    @property
    def failure_rate(self) -> float:
        return self.failed / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


def shape_matches(data: Any, window: CountWindow | TimeWindow) -> bool:
    kind = "count" if isinstance(window, CountWindow) else "time"
    return isinstance(data, dict) and data.get("type") == kind and data.get("size") == window.size


def parse_snapshot(data: Any) -> dict[str, Any]:
    """Validate a snapshot before anything is changed; errors name the field."""

    def need(name: str, ok: bool, value: Any, reason: str) -> None:
        if not ok:
            raise ConfigError(f"snapshot.{name}", value, reason)

    need("", isinstance(data, dict), data, "must be a dict from CircuitBreaker.snapshot()")
    need("version", data.get("version") == SNAPSHOT_VERSION, data.get("version"),
         f"must be {SNAPSHOT_VERSION}")
    try:
        state = CircuitState(data.get("state"))
    except ValueError:
        raise ConfigError("snapshot.state", data.get("state"),
                          f"must be one of {[s.value for s in CircuitState]}") from None
    out: dict[str, Any] = {"state": state}
    for key in ("generation", "consecutive_opens", "trials_issued"):
        v = data.get(key)
        need(key, isinstance(v, int) and not isinstance(v, bool) and v >= 0, v,
             "must be an integer >= 0")
        out[key] = v
    for key, optional in (("retry_in_s", True), ("state_age_s", False), ("taken_at", False)):
        v = data.get(key)
        if v is None and optional:
            out[key] = None
            continue
        need(key, isinstance(v, int | float) and not isinstance(v, bool), v, "must be a number")
        out[key] = float(v)
    need("retry_in_s", state is not _S.OPEN or out["retry_in_s"] is not None, None,
         "is required when the state is open")
    for key in ("window", "trial"):
        need(key, isinstance(data.get(key), dict), data.get(key), "must be a window snapshot")
    return out
