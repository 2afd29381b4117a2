"""Streaming anomaly detectors: one value in, one score in [0, 1] out, using only the past.

Every detector here is a callable ``step(value, at=None) -> score`` (``at``: the value's time
in seconds, for those that use it). None reads ahead, and none normalises by a file-wide
minimum or maximum: each score depends only on the values (and times) before it and on the
value itself, so the same object scores a live metric stream.

* :class:`SelfhealDetector`: how far the value is from a Holt-Winters one-step forecast
  (:mod:`learning.seasonal`, with a daily season when the values' times show one), as a
  z-score against the recent forecast errors; that raw score is calibrated into a conformal
  p-value against the detector's own last ``memory`` raw scores, and the score is the
  p-value's negative log over the smallest p-value that memory can give (so "more extreme
  than anything in memory" scores 1 whether the memory holds 60 or 5000 scores, and scores
  mean the same early in a stream as late). Until its model is fitted and calibrated it
  answers with the :class:`DeviationDetector` (its cold start).
* :class:`DeviationDetector`: how far the value, and its change from the last one, sit from
  the mean of a sliding window, in that window's standard deviations (changes enter their
  window winsorised at 6 deviations); each calibrated into a conformal p-value, the smaller
  p-value wins (Bonferroni-corrected), and the score is its negative log, scaled to [0, 1].
* Both apply a novelty gate: a score that does not exceed every score of the last ``gate``
  steps is halved, so one episode raises one alarm rather than a volley.
* :class:`StaticThreshold`, :class:`RollingZScore`: the simple baselines, scored the same way.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque

from .seasonal import HoltWinters

__all__ = ["DETECTORS", "Conformal", "DeviationDetector", "RollingZScore", "SelfhealDetector",
           "StaticThreshold", "SurpriseCusum"]


class _Gate:
    """Halves a score that does not beat every score of the last ``size`` steps."""

    def __init__(self, size: int) -> None:
        self.recent: deque[float] = deque(maxlen=size)

    def __call__(self, score: float) -> float:
        before = max(self.recent) if self.recent else 0.0
        self.recent.append(score)
        return score if score > before else score * 0.5


class SurpriseCusum:
    """An alarm on a *run* of small p-values rather than on one: ``S = max(0, S - ln p -
    drift)``, an alarm when ``S`` reaches ``h`` (then ``S`` starts again from 0).

    p-values of ordinary data are uniform, so ``-ln p`` has mean 1 and with ``drift`` 2 the
    sum falls back to 0 almost at once; a run of unusual values adds ``-ln p - drift`` each
    (p = 0.01 adds 2.6). With ``h`` 20, noise alone crosses about once in 10^7 values
    (Wald's approximation, ``e^(-0.8 h)`` per excursion), and a run of 1-in-100 values is
    caught in 8.
    """

    def __init__(self, h: float = 20.0, drift: float = 2.0) -> None:
        if not (h > 0 and drift > 1):
            raise ValueError(f"h must be > 0 and drift > 1 (the mean of -ln p on noise); "
                             f"got h={h}, drift={drift}")
        self.h, self.drift = h, drift
        self.sum = 0.0
        self.reached = 0.0  # the sum the last p-value took it to (before an alarm's reset)

    def add(self, p: float) -> bool:
        self.reached = self.sum = max(0.0, self.sum - math.log(p) - self.drift)
        if self.sum >= self.h:
            self.sum = 0.0
            return True
        return False

    def reset(self) -> None:
        self.sum = 0.0


class _Moments:
    """Mean and standard deviation of the last ``size`` values, in O(1) per value."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf: deque[float] = deque()
        self.s1 = self.s2 = 0.0

    def stats(self, minimum: int = 20) -> tuple[float, float] | None:
        n = len(self.buf)
        if n < minimum:
            return None
        mean = self.s1 / n
        var = self.s2 / n - mean * mean
        if not math.isfinite(var):
            # squares past ~1e154 overflow the running sums: measure in units of the largest
            # value instead, and start the sums again from the window (finite once it is)
            unit = max(abs(v) for v in self.buf) or 1.0
            scaled = [v / unit for v in self.buf]
            mu = sum(scaled) / n
            mean = mu * unit
            var_unit = max(sum((v - mu) ** 2 for v in scaled) / n, 0.0)
            self.s1, self.s2 = sum(self.buf), sum(v * v for v in self.buf)
            sd = math.sqrt(var_unit) * unit
        else:
            sd = math.sqrt(max(var, 0.0))
        # floor: a constant series has no spread, and its first change is news, not infinity
        return mean, sd or max(abs(mean) * 1e-6, 1e-9)

    def add(self, x: float) -> None:
        self.buf.append(x)
        self.s1 += x
        self.s2 += x * x
        if len(self.buf) > self.size:
            old = self.buf.popleft()
            self.s1 -= old
            self.s2 -= old * old


class Conformal:
    """p-value of a raw score against the last ``size`` raw scores (then, when ``keep``, it
    joins them); None until ``minimum`` are held."""

    def __init__(self, size: int, minimum: int = 50) -> None:
        self.size, self.minimum = size, minimum
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def surprise(self, x: float) -> float | None:
        """``-log p`` over its largest possible value now, in [0, 1]: 1 for a raw score above
        every one in memory, however many that is."""
        k = len(self.sorted)
        p = self.p(x)
        return None if p is None else min(1.0, -math.log(p) / math.log(k + 1))

    def p(self, x: float, keep: bool = True) -> float | None:
        k = len(self.sorted)
        p = None if k < self.minimum else (k - bisect.bisect_left(self.sorted, x) + 1) / (k + 1)
        if not keep:
            return p
        self.fifo.append(x)
        bisect.insort(self.sorted, x)
        if len(self.fifo) > self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.fifo.popleft())]
        return p


def _z(x: float, stats: tuple[float, float]) -> float:
    """``|x - mean| / sd``, to 6 decimals: a constant series' running sums leave rounding
    noise of ~1e-9 deviations, which ranked against itself would look like a p-value."""
    return round(abs(x - stats[0]) / stats[1], 6)


def _clip(x: float, stats: tuple[float, float] | None, k: float = 6.0) -> float:
    return x if stats is None else min(max(x, stats[0] - k * stats[1]), stats[0] + k * stats[1])


class DeviationDetector:
    """How unusual a value and its change are against a sliding window (see the module doc):
    needs no model, so it is the cold start of :class:`SelfhealDetector` and the monitor's
    latency detector.

    Args:
        window: values the deviations are measured against.
        calibration: raw deviations each p-value is judged against.
        gate: steps a score must beat to count in full.
        early: scale scores by the smallest p-value the calibration can give *so far* (a
            record scores 1 from the 50th value on), as :class:`SelfhealDetector` does, rather
            than by what a full calibration can give (then nothing scores high until the
            calibration has filled).
        clip_values: values enter the window winsorised at 6 deviations too, so one wild
            value (a 10-second latency spike) does not inflate the spread for the whole
            window and hide a real rise behind it (the monitor's latency feature); a lasting
            shift then moves the window only 6 deviations a value, so it stays unusual longer
            (on NAB, where a shift is one labelled anomaly, that costs 3 points).
    """

    def __init__(self, window: int = 1000, calibration: int = 2000, gate: int = 100,
                 early: bool = False, clip_values: bool = False) -> None:
        self.early, self.clip_values = early, clip_values
        self.values = _Moments(window)
        self.changes = _Moments(window)
        self.cal_value = Conformal(calibration)
        self.cal_change = Conformal(calibration)
        self.gate = _Gate(gate)
        self.last: float | None = None
        self.scale = math.log10(calibration + 1)

    def __call__(self, value: float, at: float | None = None) -> float:
        known = len(self.cal_value.sorted) + 1
        p = self.p_value(value)
        score = 0.0
        if p is not None:
            scale = math.log10(known) if self.early else self.scale
            score = max(0.0, min(1.0, -math.log10(p) / scale))
        return self.gate(score)

    def p_value(self, value: float) -> float | None:
        """The value's p-value (the smaller of its two, Bonferroni-corrected), then it joins
        the window; None while the calibration is too short. For callers that combine
        p-values themselves (the monitor's CUSUM); :meth:`__call__` is this, scaled and gated."""
        change = 0.0 if self.last is None else value - self.last
        ps = []
        st = self.values.stats()
        if st is not None:
            p = self.cal_value.p(_z(value, st))
            if p is not None:
                ps.append(p)
        sc = self.changes.stats()
        if sc is not None:
            p = self.cal_change.p(_z(change, sc))
            if p is not None:
                ps.append(p)
        # A change is a one-off: winsorised at 6 deviations, a jump does not inflate the
        # spread of changes for the whole window and then, leaving it, make ordinary
        # changes look large. Values likewise when ``clip_values`` (see the class doc).
        self.values.add(_clip(value, st) if self.clip_values else value)
        self.changes.add(_clip(change, sc))
        self.last = value
        return min(1.0, min(ps) * len(ps)) if ps else None


class SelfhealDetector:
    """selfheal's streaming detector (see the module doc).

    Args:
        period: values per season; None to take a daily season from the values' times (when
            the first ``probe`` values have times and a day holds 4 to ``max_period`` of
            them), else none.
        memory: raw scores each p-value is judged against.
        window: forecast errors the raw score is measured against.
        gate: steps a score must beat to count in full.
        season_s: the season's length in seconds, when it is taken from the times.
        max_period: the most values a season may hold (a longer one costs too much to fit:
            a day of 10-second buckets would be 8,640).
        probe: values whose times decide the season.
    """

    def __init__(self, period: int | None = None, memory: int = 5000, window: int = 1000,
                 gate: int = 100, season_s: float = 86400.0, max_period: int = 2016,
                 probe: int = 20) -> None:
        self.period, self.season_s, self.max_period, self.probe = (
            period, season_s, max_period, probe)
        self.cold = DeviationDetector(gate=gate, early=True)
        self.model: HoltWinters | None = None
        self.pending: list[tuple[float, float | None]] = []  # values before the period is known
        self.errors = _Moments(window)
        self.calibration = Conformal(memory)
        self.gate = _Gate(gate)

    def __call__(self, value: float, at: float | None = None) -> float:
        forecast = None
        if self.model is None:
            self.pending.append((value, at))
            if self.period is not None or len(self.pending) >= self.probe or at is None:
                self.model = HoltWinters(self._period())
                for v, _ in self.pending:
                    self.model.update(v)
                self.pending = []
        else:
            forecast = self.model.forecast()
            self.model.update(value)
        surprise = None
        if forecast is not None:
            error = value - forecast
            st = self.errors.stats()
            if st is not None:
                surprise = self.calibration.surprise(_z(error, st))
            self.errors.add(error)
        if surprise is None:  # cold: no model, or not enough calibration yet
            return self.cold(value, at)
        return self.gate(surprise)

    def _period(self) -> int:
        if self.period is not None:
            return self.period
        times = [t for _, t in self.pending]
        if len(times) < 2 or any(t is None for t in times):
            return 0
        gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)  # type: ignore[operator]
        if not gaps:
            return 0
        period = round(self.season_s / gaps[len(gaps) // 2])
        return period if 4 <= period <= self.max_period else 0


class StaticThreshold:
    """Baseline: mean and deviation learned once from the first ``learn`` values; the score is
    ``|z|`` against them, squashed into [0, 1) like :class:`RollingZScore`'s."""

    def __init__(self, learn: int = 500) -> None:
        self.learn = learn
        self.moments = _Moments(learn)
        self.frozen: tuple[float, float] | None = None

    def __call__(self, value: float, at: float | None = None) -> float:
        if self.frozen is None:
            self.moments.add(value)
            if len(self.moments.buf) >= self.learn:
                self.frozen = self.moments.stats()
            return 0.0
        mean, sd = self.frozen
        return 1.0 - math.exp(-abs(value - mean) / sd / 4.0)


class RollingZScore:
    """Baseline: ``|z|`` against the mean and deviation of the last ``window`` values,
    squashed into [0, 1)."""

    def __init__(self, window: int = 400) -> None:
        self.moments = _Moments(window)

    def __call__(self, value: float, at: float | None = None) -> float:
        st = self.moments.stats()
        self.moments.add(value)
        if st is None:
            return 0.0
        return 1.0 - math.exp(-abs(value - st[0]) / st[1] / 4.0)


DETECTORS = {"selfheal": SelfhealDetector, "deviation": DeviationDetector,
             "static_threshold": StaticThreshold, "rolling_zscore": RollingZScore}
