"""Memory that predicts a leak: each process's memory, a straight line fitted to its last
minutes, forecast to its limit (in the spirit of Prometheus' ``predict_linear``).

A leak is seen by requests only once the process is nearly out of memory; its memory climbs
long before. :class:`MemoryGrowth` keeps, per target (a replica, an actor), the samples of
the last ``window_s``, fits them by least squares, and raises a :class:`MemoryAlert` when the
fitted line reaches the limit within ``horizon_s``. Two guards keep ordinary memory quiet:
the fit must explain the samples (R² of at least ``min_r2``: a garbage collector's sawtooth
or noise around a level is no trend), and the window must be covered (``min_samples`` over at
least ``min_span_s``). One alert per climb: the target is re-armed once its forecast is no
longer alarming (after a restart, say).

Pure: times are seconds on the caller's clock; memory in any one unit with its limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from healing.config import check_count, check_positive, check_ratio

__all__ = ["Forecast", "MemoryAlert", "MemoryGrowth"]


@dataclass(frozen=True, slots=True)
class Forecast:
    used: float  # the fitted value now
    limit: float
    slope_per_s: float
    r2: float
    seconds_to_limit: float | None  # None: not climbing


@dataclass(frozen=True, slots=True)
class MemoryAlert:
    target: str
    service: str
    at: float
    forecast: Forecast

    def as_dict(self) -> dict[str, Any]:
        """What is kept and shown of it: the replica, its service, when, and why."""
        return {"target": self.target, "service": self.service, "at": self.at,
                "detail": self.describe()}

    def describe(self) -> str:
        f = self.forecast
        return (f"{self.target}: memory at {f.used / f.limit:.0%} of its limit, climbing "
                f"{f.slope_per_s * 60 / f.limit:.1%} a minute (R² {f.r2:.2f}): the limit in "
                f"{(f.seconds_to_limit or 0) / 60:.0f} min")


@dataclass
class MemoryGrowth:
    window_s: float = 600.0
    horizon_s: float = 3600.0
    min_samples: int = 6
    min_span_s: float = 180.0  # longer than a collector's cycle: its climb is no trend
    min_r2: float = 0.8
    _samples: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    _limits: dict[str, tuple[str, float]] = field(default_factory=dict)  # target: service
    _alerted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        check_positive("window_s", self.window_s)
        check_positive("horizon_s", self.horizon_s)
        check_count("min_samples", self.min_samples, 3)
        check_positive("min_span_s", self.min_span_s)
        check_ratio("min_r2", self.min_r2)

    def observe(self, target: str, service: str, at: float, used: float,
                limit: float) -> None:
        """``target`` (of ``service``) used ``used`` of ``limit`` at ``at``."""
        check_positive("limit", limit)
        samples = self._samples.setdefault(target, deque())
        samples.append((at, used))
        while samples and samples[0][0] < at - self.window_s:
            samples.popleft()
        self._limits[target] = (service, limit)

    def forget(self, target: str) -> None:
        """``target`` is gone (a replica replaced): its samples go with it."""
        self._samples.pop(target, None)
        self._limits.pop(target, None)
        self._alerted.discard(target)

    def forecast(self, target: str) -> Forecast | None:
        """The fitted line over the window, or None without enough samples."""
        samples = self._samples.get(target)
        if not samples or len(samples) < self.min_samples or \
                samples[-1][0] - samples[0][0] < self.min_span_s:
            return None
        n = len(samples)
        mt = sum(t for t, _ in samples) / n
        mu = sum(u for _, u in samples) / n
        stt = sum((t - mt) ** 2 for t, _ in samples)
        suu = sum((u - mu) ** 2 for _, u in samples)
        stu = sum((t - mt) * (u - mu) for t, u in samples)
        slope = stu / stt if stt > 0 else 0.0
        r2 = stu * stu / (stt * suu) if stt > 0 and suu > 0 else 0.0
        now = samples[-1][0]
        used = mu + slope * (now - mt)
        limit = self._limits[target][1]
        to_limit = max(0.0, (limit - used) / slope) if slope > 0 else None
        return Forecast(used, limit, slope, r2, to_limit)

    def check(self, now: float) -> list[MemoryAlert]:
        """The targets whose memory is forecast to reach the limit within the horizon, each
        once per climb."""
        out = []
        for target in sorted(self._samples):
            f = self.forecast(target)
            alarming = f is not None and f.seconds_to_limit is not None and \
                f.seconds_to_limit <= self.horizon_s and f.r2 >= self.min_r2
            if not alarming:
                self._alerted.discard(target)
                continue
            if target not in self._alerted:
                self._alerted.add(target)
                out.append(MemoryAlert(target, self._limits[target][0], now, f))  # type: ignore[arg-type]
        return out
