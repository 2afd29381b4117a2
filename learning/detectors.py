"""Streaming anomaly detectors: one value in, one score in [0, 1] out, using only the past.

Every detector here is a callable ``step(value, at=None) -> score`` (``at``: the value's time
in seconds, for those that use it). None reads ahead, and none normalises by a file-wide
minimum or maximum: each score depends only on the values (and times) before it and on the
value itself, so the same object scores a live metric stream.

* :class:`SelfhealDetector`: how far the value is from a Holt-Winters one-step forecast
  (:mod:`learning.seasonal`, with a daily season when the values' times show one), as a
  z-score against the recent forecast errors; that raw score is calibrated into a conformal
  p-value against the detector's own last ``memory`` raw scores, bounded by Chebyshev's
  inequality (``1/z^2``, true of any distribution: a deviation of 100 is strong evidence
  even against a short memory that has never seen one), and the score is the p-value's
  negative log over the smallest p-value a memory of at least ``evidence`` scores can give
  (so "more extreme than anything in memory" scores 1 once the memory is that large, and
  being the most extreme of a few hundred is not yet a certainty). Until its model is
  fitted and has ``min_calibration`` raw scores it answers with the
  :class:`DeviationDetector` (its cold start).
* :class:`DeviationDetector`: how far the value, and its change from the last one, sit from
  the mean of a sliding window, in that window's standard deviations (changes enter their
  window winsorised at 6 deviations); each calibrated into a conformal p-value (bounded by
  Chebyshev's, as above), the smaller p-value wins (Bonferroni-corrected), and the score is
  its negative log, scaled to [0, 1].
* Both apply a novelty gate: a score that does not exceed every score of the last ``gate``
  steps is halved, so one episode raises one alarm rather than a volley.
* :class:`StaticThreshold`, :class:`RollingZScore`: the simple baselines, scored the same way.

Range hints: NAB gives its detectors each file's minimum and maximum before the first row.
None of these needs them; :class:`SelfhealDetector` and :class:`DeviationDetector` take one
as ``value_range`` and then take a thousandth of the range as the resolution: every
deviation is shrunk by it (one smaller is none) and no spread is measured as smaller, which
is what a hint can honestly say about a stream.
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
    """Halves a score that does not beat every score of the last ``size`` steps.

    The window's maximum is kept in a monotonic queue (each score enters and leaves it once),
    so a step costs O(1) amortised rather than a scan of ``size`` scores."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.step = 0
        self.best: deque[tuple[int, float]] = deque()  # (step, score), scores decreasing

    def __call__(self, score: float) -> float:
        best = self.best
        while best and best[0][0] < self.step - self.size:
            best.popleft()
        before = best[0][1] if best else 0.0
        while best and best[-1][1] <= score:
            best.pop()
        best.append((self.step, score))
        self.step += 1
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

    def __init__(self, size: int, floor: float = 0.0) -> None:
        self.size, self.floor = size, floor
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
        return mean, max(sd, self.floor) or max(abs(mean) * 1e-6, 1e-9)

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

    def surprise(self, x: float, evidence: int = 0) -> float | None:
        """``-log p`` (``p`` bounded by Chebyshev's, ``x`` being a deviation) over the
        largest a memory of ``evidence`` scores, or of what it holds if more, can give, in
        [0, 1]: 1 for a raw score above every one in a memory at least that large."""
        k = len(self.sorted)
        p = self.p(x)
        if p is None:
            return None
        return min(1.0, -math.log(_bounded(p, x)) / math.log(max(k, evidence) + 1))

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


def _z(x: float, stats: tuple[float, float], resolution: float = 0.0) -> float:
    """``|x - mean| / sd``, to 6 decimals: a constant series' running sums leave rounding
    noise of ~1e-9 deviations, which ranked against itself would look like a p-value. A
    deviation is first shrunk by ``resolution`` (a range hint's: see the module doc), so one
    smaller than it is none."""
    return round(max(abs(x - stats[0]) - resolution, 0.0) / stats[1], 6)


def _bounded(p: float, z: float) -> float:
    """A conformal p-value, bounded by Chebyshev's inequality: a deviation of ``z`` spreads
    or more has a chance of at most ``1/z^2`` under any distribution. A rank can only say
    "above everything in memory"; the bound keeps a deviation of 100 spreads apart from one
    of 6, however short the memory (issue 15: on short service series a 4x jump in
    request rate scored like a mild record)."""
    return min(p, 1.0 / (z * z)) if z > 1.0 else p


def _resolution(value_range: tuple[float, float] | None) -> float:
    """The smallest spread worth measuring in, given a range hint: a thousandth of it."""
    if value_range is None:
        return 0.0
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi) and hi >= lo):
        raise ValueError(f"value_range must be a finite (minimum, maximum); got {value_range}")
    return (hi - lo) / 1000.0


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
        early: scale scores by the smallest p-value the calibration can give *so far*, or
            a calibration of ``EARLY_EVIDENCE`` if it holds fewer (a record scores 1 from the
            100th value on), as :class:`SelfhealDetector` does, rather than by what a full
            calibration can give (then nothing scores high until the calibration has
            filled).
        clip_values: values enter the window winsorised at 6 deviations too, so one wild
            value (a 10-second latency spike) does not inflate the spread for the whole
            window and hide a real rise behind it (the monitor's latency feature); a lasting
            shift then moves the window only 6 deviations a value, so it stays unusual longer
            (on NAB, where a shift is one labelled anomaly, that costs 3 points).
        value_range: the stream's (minimum, maximum), when known before it starts (see the
            module doc); never needed.
        magnitude: bound each p-value by Chebyshev's inequality (see the module doc), so a
            far deviation counts as far; off, a p-value is a rank alone, at least
            ``1/(k + 1)``: the monitor's latency CUSUM wants a run of slow buckets, so one
            bucket's evidence must stay capped however slow it is.
    """

    EARLY_EVIDENCE = 100

    def __init__(self, window: int = 1000, calibration: int = 2000, gate: int = 100,
                 early: bool = False, clip_values: bool = False,
                 value_range: tuple[float, float] | None = None, magnitude: bool = True,
                 ) -> None:
        self.early, self.clip_values, self.magnitude = early, clip_values, magnitude
        floor = _resolution(value_range)
        self.values = _Moments(window, floor)
        self.changes = _Moments(window, floor)
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
            scale = (math.log10(max(known, self.EARLY_EVIDENCE)) if self.early
                     else self.scale)
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
            z = _z(value, st, self.values.floor)
            p = self.cal_value.p(z)
            if p is not None:
                ps.append(_bounded(p, z) if self.magnitude else p)
        sc = self.changes.stats()
        if sc is not None:
            z = _z(change, sc, self.changes.floor)
            p = self.cal_change.p(z)
            if p is not None:
                ps.append(_bounded(p, z) if self.magnitude else p)
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
        max_period: the most values a season may hold. A fit estimates one seasonal
            component per value of the season from the two or three seasons it sees, so a
            day of minutely values (1,440 components from 2,880 values) is mostly noise, and
            its forecast errors raised false alarms on every minutely series of the service
            corpus; 288 is a day of 5-minute values.
        probe: values whose times decide the season.
        min_calibration: raw scores the model's calibration holds before it answers (the
            cold start answers until then).
        evidence: the memory a record is judged against at the least (see the module doc).
        value_range: the stream's (minimum, maximum), when known before it starts (see the
            module doc); never needed.
    """

    def __init__(self, period: int | None = None, memory: int = 5000, window: int = 1000,
                 gate: int = 100, season_s: float = 86400.0, max_period: int = 288,
                 probe: int = 20, min_calibration: int = 200, evidence: int = 500,
                 value_range: tuple[float, float] | None = None) -> None:
        self.period, self.season_s, self.max_period, self.probe = (
            period, season_s, max_period, probe)
        self.evidence = evidence
        self.cold = DeviationDetector(gate=gate, early=True, value_range=value_range)
        self.model: HoltWinters | None = None
        self.pending: list[tuple[float, float | None]] = []  # values before the period is known
        self.errors = _Moments(window, _resolution(value_range))
        self.calibration = Conformal(memory, min_calibration)
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
                surprise = self.calibration.surprise(_z(error, st, self.errors.floor),
                                                     self.evidence)
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
