"""The predictive monitor's logic: per-service error rates in time buckets, watched for drift.

Pure and clock-free: the caller says what it saw (``observe``: calls and errors at a time)
and what time it is (``tick``), so the same object runs in the live monitor actor, fed from
the Redis metric streams, and in the simulator, fed from its counters, on either clock.

Errors are counts, so each service's error rate is watched with a one-sided binomial CUSUM:
every closed bucket adds the log-likelihood ratio of "the rate rose to ``p1``" against "it is
the service's usual ``p0``" (``p0`` learnt from the service's own quiet buckets, ``p1`` the
larger of twice ``p0`` and ``p0`` plus one point; ``p0`` follows every bucket that is not
half-way to an alarm nor in the quiet after one); the sum is floored at zero, and crossing
``h`` is an :class:`Anomaly`. A small, steady rise adds up bucket after bucket, which is what
a leak or a slow degradation looks like and what a fixed threshold sees late. The sum is
reset after an anomaly, and the service is then quiet for ``quiet_s``: one episode, one
trigger. Nothing is raised until ``warmup_calls`` calls have taught ``p0``.

Latency, when the caller has it, is the second feature: each bucket's 95th percentile is
scored by a :class:`~learning.detectors.DeviationDetector` against the service's own last
hours (a conformal p-value, so it needs an hour or two of history before it can call anything
rare), and a score at or above ``latency_threshold`` is a ``latency_p95`` anomaly.

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from healing.config import check_count, check_positive
from healing.errors import ConfigError

from .detectors import DeviationDetector

__all__ = ["Anomaly", "MonitorPolicy", "PredictiveMonitor"]


@dataclass(frozen=True, slots=True)
class MonitorPolicy:
    bucket_s: float = 10.0
    h: float = 12.0  # evidence (nats) needed; larger: fewer false alarms, later detections
    min_shift: float = 0.01  # p1 is at least p0 plus this
    warmup_calls: int = 500
    learn_rate: float = 0.01  # p0's weight on each quiet bucket (an EWMA)
    quiet_s: float = 300.0
    # of DeviationDetector's score on the p95; 0.85 is about "the most unusual bucket of the
    # last two hours" (a record among 720 scores 0.89 after the Bonferroni correction)
    latency_threshold: float = 0.85
    min_latency_samples: int = 5

    def __post_init__(self) -> None:
        check_positive("bucket_s", self.bucket_s)
        check_positive("h", self.h)
        check_positive("min_shift", self.min_shift)
        check_count("warmup_calls", self.warmup_calls)
        check_positive("learn_rate", self.learn_rate)
        check_positive("quiet_s", self.quiet_s)
        check_positive("latency_threshold", self.latency_threshold)
        check_count("min_latency_samples", self.min_latency_samples)


@dataclass(frozen=True, slots=True)
class Anomaly:
    service: str
    at: float  # the end of the bucket that raised it
    feature: str
    value: float
    score: float

    @property
    def detail(self) -> str:
        return f"{self.feature} {self.value:.3f} scored {self.score:.2f}"


@dataclass
class _Bucket:
    calls: float = 0.0
    errors: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass
class _Service:
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    next_index: int | None = None
    quiet_until: float = float("-inf")
    calls: float = 0.0  # seen while learning p0
    errors: float = 0.0
    p0: float | None = None
    cusum: float = 0.0
    latency: Any = None  # the latency detector, made on first use


class PredictiveMonitor:
    def __init__(self, policy: MonitorPolicy | None = None,
                 per_service: dict[str, MonitorPolicy] | None = None) -> None:
        self.policy = policy if policy is not None else MonitorPolicy()
        # a trained model: some services' own policies (bucket_s must match the default's)
        self.per_service = dict(per_service or {})
        for name, p in self.per_service.items():
            check_positive(f"{name}.h", p.h)
            if p.bucket_s != self.policy.bucket_s:
                raise ConfigError(f"{name}.bucket_s", p.bucket_s,
                                  f"must equal the monitor's ({self.policy.bucket_s})")
        self.services: dict[str, _Service] = {}
        self.scored = 0

    def observe(self, service: str, at: float, calls: float, errors: float,
                latencies: Sequence[float] = ()) -> None:
        """``calls`` primary calls, ``errors`` of them failed, at time ``at``; with the
        latencies (seconds) of those it has them for."""
        s = self.services.get(service)
        if s is None:
            s = self.services[service] = _Service()
        index = int(at // self.policy.bucket_s)
        if s.next_index is not None and index < s.next_index:
            return  # its bucket was already scored: late evidence is dropped, not re-scored
        b = s.buckets.get(index)
        if b is None:
            b = s.buckets[index] = _Bucket()
        b.calls += calls
        b.errors += errors
        b.latencies.extend(latencies)

    def tick(self, now: float) -> list[Anomaly]:
        """Score every bucket that ended by ``now``; returns the anomalies, oldest first."""
        out: list[Anomaly] = []
        bucket_s = self.policy.bucket_s
        closed = int(now // bucket_s)  # buckets with index < closed have ended
        for name, s in self.services.items():
            for index in sorted(i for i in s.buckets if i < closed):
                b = s.buckets.pop(index)
                calls, errors = b.calls, b.errors
                s.next_index = index + 1
                end = (index + 1) * bucket_s
                pol = self.per_service.get(name, self.policy)
                slow = self._latency(name, s, b, end, pol)
                if slow is not None:
                    out.append(slow)
                if calls <= 0:
                    continue
                score = self._update(s, calls, errors, pol, learn=end >= s.quiet_until)
                self.scored += 1
                if score is not None and s.cusum >= pol.h and end >= s.quiet_until:
                    out.append(Anomaly(name, end, "error_rate", errors / calls, score))
                    s.cusum = 0.0
                    s.quiet_until = end + pol.quiet_s
        out.sort(key=lambda a: (a.at, a.service))
        return out

    def _latency(self, name: str, s: _Service, b: _Bucket, end: float,
                 pol: MonitorPolicy) -> Anomaly | None:
        """The bucket's 95th-percentile latency, scored against the service's own past."""
        if len(b.latencies) < pol.min_latency_samples:
            return None
        if s.latency is None:
            # an hour of buckets as the window, two as the calibration
            s.latency = DeviationDetector(360, 720, 30)
        lat = sorted(b.latencies)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        score = s.latency(p95)
        if score >= pol.latency_threshold and end >= s.quiet_until:
            s.quiet_until = end + pol.quiet_s
            return Anomaly(name, end, "latency_p95", p95, score)
        return None

    def _update(self, s: _Service, calls: float, errors: float, pol: MonitorPolicy,
                learn: bool = True) -> float | None:
        """Add one bucket's evidence; returns the CUSUM as a score in [0, 1], or None while
        ``p0`` is still being learnt."""
        if s.p0 is None:
            s.calls += calls
            s.errors += errors
            if s.calls >= pol.warmup_calls:
                s.p0 = (s.errors + 1) / (s.calls + 2)
            return None
        p0 = min(max(s.p0, 1e-4), 0.5)
        p1 = min(max(2 * p0, p0 + pol.min_shift), 0.99)
        llr = errors * math.log(p1 / p0) + (calls - errors) * math.log((1 - p1) / (1 - p0))
        # In the quiet after an alarm nothing accumulates: evidence of the episode already
        # raised must not raise a second alarm once the quiet ends and the service is well.
        s.cusum = max(0.0, s.cusum + llr) if learn else 0.0
        if learn and s.cusum < pol.h / 2:
            # Every bucket not on its way to an alarm, nor just after one, teaches the usual
            # rate (learning only from buckets with no evidence at all would bias p0 low and
            # alarm on noise; learning from an incident would call the incident usual).
            s.p0 = (1 - pol.learn_rate) * s.p0 + pol.learn_rate * errors / calls
        return min(1.0, s.cusum / (2 * pol.h))

    def state(self) -> dict[str, Any]:
        return {"services": sorted(self.services), "scored": self.scored}
