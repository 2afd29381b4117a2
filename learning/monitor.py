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
trigger; the quiet ends sooner once the last ``calm_s`` of buckets favour the usual over a
rise (errors and p95), so an episode that is over does not hide the next. Nothing is raised
until ``warmup_calls`` calls have taught ``p0``.

Latency, when the caller has it, is the second feature: each bucket's 95th percentile gets a
p-value from a :class:`~learning.detectors.DeviationDetector` against the service's own last
hours (conformal, so it needs an hour or two of history before it can call anything rare; a
p95 below the usual counts as no evidence), and a
:class:`~learning.evidence.SurpriseCusum` of those p-values reaching ``latency_h`` is a
``latency_p95`` anomaly: a run of slow buckets, not one (a single slow bucket is the most
unusual of the last two hours every two hours or so, on noise alone).

All four golden signals, judged together, are the third: every ``multivariate_s`` (a minute)
a service's row of error rate, 95th-percentile latency, throughput (calls/s) and saturation
(calls in flight, by Little's law: the seconds spent in the calls it has latencies for, per
second; with a sampled stream that is every error and a sample of the successes, so a lower
bound, and a consistent one while the mix holds) goes to a
:class:`~learning.multivariate.MultivariateDetector` (an isolation forest refitted every six
hours on the last day, and a CUSUM over its calibrated surprise, crossing
``multivariate_h``): a ``metrics_together`` anomaly, for a service whose metrics are each a
little off at once, as a saturating one's are. Rows in the quiet after an alarm are judged
but not learnt. It needs two hours of rows before it judges any.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from healing.config import check_count, check_positive
from healing.errors import ConfigError

from .detectors import DeviationDetector
from .evidence import SurpriseCusum
from .multivariate import MultivariateDetector

__all__ = ["STATE_VERSION", "Anomaly", "MonitorPolicy", "PredictiveMonitor"]

# The shape of a monitor's pickled state (the live monitor saves it to Redis). Bump it when a
# detector's attributes change: a state of another version is not restored, because pickle
# would load it and the first bucket would then fail on a missing attribute.
# 2: issue 15 (the novelty gate's monotonic queue; DeviationDetector.magnitude).
# 3: the quiet's end on calm (_Service.calm, .llr, .latency_step).
STATE_VERSION = 3


@dataclass(frozen=True, slots=True)
class MonitorPolicy:
    bucket_s: float = 10.0
    # evidence (nats) needed; larger: fewer false alarms, later detections. 9 sees the
    # library's slow degradation's ramp in 50 s (12: 60 s) with no false-positive minute on
    # the noisy healthy day (seeds 1-3); 7 raised some there and 5 saw the ramp no sooner:
    # a ramp is seen when enough of its failures have happened (docs/learning.md)
    h: float = 9.0
    min_shift: float = 0.01  # p1 is at least p0 plus this
    warmup_calls: int = 500
    learn_rate: float = 0.01  # p0's weight on each quiet bucket (an EWMA)
    quiet_s: float = 300.0
    # the quiet after an alarm ends sooner once the service has been calm this long (0: it
    # lasts quiet_s): a provider that hung and came back must not hide its next fault for
    # five minutes (docs/learning.md)
    calm_s: float = 60.0
    # evidence (the CUSUM of -ln p, less 2 a bucket) that the p95 is up: a run of 1-in-100
    # buckets reaches 20 in 8 buckets; one bucket, however slow, reaches at most 4.6
    latency_h: float = 20.0
    min_latency_samples: int = 5
    multivariate_s: float = 60.0  # 0: no multivariate detector
    multivariate_h: float = 20.0

    def __post_init__(self) -> None:
        check_positive("bucket_s", self.bucket_s)
        check_positive("h", self.h)
        check_positive("min_shift", self.min_shift)
        check_count("warmup_calls", self.warmup_calls)
        check_positive("learn_rate", self.learn_rate)
        check_positive("quiet_s", self.quiet_s)
        if not (math.isfinite(self.calm_s) and self.calm_s >= 0):
            raise ConfigError("calm_s", self.calm_s, "must be 0 (off) or a positive time")
        check_positive("latency_h", self.latency_h)
        check_count("min_latency_samples", self.min_latency_samples)
        if self.multivariate_s != 0 and (
                self.multivariate_s < self.bucket_s
                or abs(self.multivariate_s / self.bucket_s - round(self.multivariate_s
                                                                  / self.bucket_s)) > 1e-9):
            raise ConfigError("multivariate_s", self.multivariate_s,
                              f"must be 0 (off) or a whole number of buckets ({self.bucket_s} s)")
        check_positive("multivariate_h", self.multivariate_h)


@dataclass(frozen=True, slots=True)
class Anomaly:
    service: str
    at: float  # the end of the bucket that raised it
    feature: str
    value: float
    score: float
    context: tuple[tuple[str, float], ...] = ()  # the other figures behind it

    @property
    def detail(self) -> str:
        more = "".join(f", {k} {v:.3f}" for k, v in self.context)
        return f"{self.feature} {self.value:.3f} scored {self.score:.2f}{more}"


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
    # in the quiet: the last buckets' steps of the error and latency CUSUMs, to judge calm
    calm: deque[tuple[float, float]] = field(default_factory=deque)
    llr: float = 0.0  # the last bucket's error step
    latency_step: float = 0.0  # and its latency step (0: no latency evidence)
    calls: float = 0.0  # seen while learning p0
    errors: float = 0.0
    p0: float | None = None
    cusum: float = 0.0
    latency: Any = None  # the latency detector, made on first use
    latency_cusum: Any = None
    together: MultivariateDetector | None = None  # likewise
    row_index: int | None = None  # the multivariate row being filled
    row: _Bucket = field(default_factory=_Bucket)


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class PredictiveMonitor:
    def __init__(self, policy: MonitorPolicy | None = None,
                 per_service: dict[str, MonitorPolicy] | None = None) -> None:
        self.policy = policy if policy is not None else MonitorPolicy()
        self.state_version = STATE_VERSION
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
                found = []
                together = self._together(name, s, b, index, pol)
                if together is not None:
                    found.append(together)
                slow = self._latency(name, s, b, end, pol)
                if slow is not None:
                    found.append(slow)
                if calls > 0:
                    score = self._update(s, calls, errors, pol, learn=end >= s.quiet_until)
                    self.scored += 1
                    if score is not None and s.cusum >= pol.h and end >= s.quiet_until:
                        found.append(Anomaly(name, end, "error_rate", errors / calls, score))
                        s.cusum = 0.0
                        s.quiet_until = end + pol.quiet_s
                if found:  # one episode: its evidence must not alarm again on another feature
                    if s.together is not None:
                        s.together.quiet()
                    if s.latency_cusum is not None:
                        s.latency_cusum.reset()
                    s.calm.clear()
                elif end < s.quiet_until and calls > 0 and pol.calm_s:
                    self._calm(s, end, pol)
                out += found
        out.sort(key=lambda a: (a.at, a.service))
        return out

    @staticmethod
    def _calm(s: _Service, end: float, pol: MonitorPolicy) -> None:
        """In the quiet after an alarm: end it once the last ``calm_s`` of buckets, taken
        together, favour the usual over a rise, for the error rate (their log-likelihood
        ratios, the CUSUM's steps, sum to at most zero) and for the p95 (the latency CUSUM's
        steps likewise). An episode that goes on keeps the quiet; one that is over gives the
        service back its watch. A window, not one bucket: one error in a calm bucket of a
        service that rarely fails is no episode, and one clean bucket amid a leak is no end."""
        s.calm.append((s.llr, s.latency_step))
        size = max(1, round(pol.calm_s / pol.bucket_s))
        while len(s.calm) > size:
            s.calm.popleft()
        if len(s.calm) == size and sum(e for e, _ in s.calm) <= 0 \
                and sum(lat for _, lat in s.calm) <= 0:
            s.quiet_until = end
            s.calm.clear()

    def _together(self, name: str, s: _Service, b: _Bucket, index: int,
                  pol: MonitorPolicy) -> Anomaly | None:
        """Add the bucket to the service's multivariate row; when a row is complete (the
        bucket starts the next one), judge it."""
        if not pol.multivariate_s:
            return None
        per_row = round(pol.multivariate_s / pol.bucket_s)
        row_index = index // per_row
        found = None
        if s.row_index is not None and row_index != s.row_index:
            end = (s.row_index + 1) * pol.multivariate_s
            if s.together is None:
                s.together = MultivariateDetector(h=pol.multivariate_h,
                                                  refit=round(6 * 3600 / pol.multivariate_s),
                                                  history=round(86400 / pol.multivariate_s),
                                                  min_fit=round(7200 / pol.multivariate_s))
            s.together.cusum.h = pol.multivariate_h  # a promoted model's, from now on
            r = s.row
            lat = sorted(r.latencies)
            figures = (("error_rate", r.errors / r.calls if r.calls else 0.0),
                       ("latency_p95", _p95(lat) if lat else 0.0),
                       ("throughput", r.calls / pol.multivariate_s),
                       ("in_flight", sum(lat) / pol.multivariate_s))
            verdict = s.together([v for _, v in figures], learn=end >= s.quiet_until)
            if verdict is not None and verdict.alarm and end >= s.quiet_until:
                s.quiet_until = end + pol.quiet_s
                found = Anomaly(name, end, "metrics_together", verdict.score,
                                min(1.0, verdict.cusum / (2 * pol.multivariate_h)), figures)
            s.row = _Bucket()
        if s.row_index is None or row_index != s.row_index:
            s.row_index = row_index
        s.row.calls += b.calls
        s.row.errors += b.errors
        s.row.latencies.extend(b.latencies)
        return found

    def _latency(self, name: str, s: _Service, b: _Bucket, end: float,
                 pol: MonitorPolicy) -> Anomaly | None:
        """The bucket's 95th-percentile latency, scored against the service's own past."""
        s.latency_step = 0.0
        if len(b.latencies) < pol.min_latency_samples:
            return None
        if s.latency is None:
            # an hour of buckets as the window, two as the calibration
            s.latency = DeviationDetector(360, 720, 30, clip_values=True, magnitude=False)
            s.latency_cusum = SurpriseCusum(pol.latency_h)
        s.latency_cusum.h = pol.latency_h  # a promoted model's, from the next bucket on
        p95 = _p95(sorted(b.latencies))
        usual = s.latency.values.stats()
        p = s.latency.p_value(p95)
        if p is None:
            return None
        if usual is not None and p95 <= usual[0]:
            p = 1.0  # faster than usual is no evidence of trouble
        s.latency_step = -math.log(p) - s.latency_cusum.drift
        if s.latency_cusum.add(p) and end >= s.quiet_until:
            s.quiet_until = end + pol.quiet_s
            return Anomaly(name, end, "latency_p95", p95,
                           min(1.0, s.latency_cusum.reached / (2 * pol.latency_h)), (("p", p),))
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
        s.llr = llr  # judges the quiet's end (_calm)
        if learn and s.cusum < pol.h / 2:
            # Every bucket not on its way to an alarm, nor just after one, teaches the usual
            # rate (learning only from buckets with no evidence at all would bias p0 low and
            # alarm on noise; learning from an incident would call the incident usual).
            s.p0 = (1 - pol.learn_rate) * s.p0 + pol.learn_rate * errors / calls
        return min(1.0, s.cusum / (2 * pol.h))

    def state(self) -> dict[str, Any]:
        return {"services": sorted(self.services), "scored": self.scored}
