"""Streaming anomaly detectors: one value in, one score in [0, 1] out, using only the past.

Every detector here is a callable ``step(value) -> score``. None reads ahead, and none
normalises by a file-wide minimum or maximum: each score depends only on the values before
it and on the value itself, so the same object scores a live metric stream.

* :class:`SelfhealDetector`: how far the value, and its change from the last one, sit from
  the mean of a sliding window, in that window's standard deviations (changes enter their
  window winsorised at 6 deviations); each of those raw
  deviations is calibrated into a conformal p-value against the detector's own recent raw
  deviations (what fraction of them were at least as large), the smaller p-value wins
  (Bonferroni-corrected), and the score is its negative log, scaled to [0, 1]. A novelty gate
  halves a score that does not exceed every score of the last ``gate`` steps, so one episode
  raises one alarm rather than a volley.
* :class:`StaticThreshold`, :class:`RollingZScore`: the simple baselines, scored the same way.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

__all__ = ["DETECTORS", "SelfhealDetector", "RollingZScore", "StaticThreshold"]


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
        # floor: a constant series has no spread, and its first change is news, not infinity
        sd = math.sqrt(max(self.s2 / n - mean * mean, 0.0)) or max(abs(mean) * 1e-6, 1e-9)
        return mean, sd

    def add(self, x: float) -> None:
        self.buf.append(x)
        self.s1 += x
        self.s2 += x * x
        if len(self.buf) > self.size:
            old = self.buf.popleft()
            self.s1 -= old
            self.s2 -= old * old


class _Conformal:
    """p-value of a raw score against the last ``size`` raw scores (then it joins them)."""

    def __init__(self, size: int, minimum: int = 50) -> None:
        self.size, self.minimum = size, minimum
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def p(self, x: float) -> float | None:
        k = len(self.sorted)
        p = None if k < self.minimum else (k - bisect.bisect_left(self.sorted, x) + 1) / (k + 1)
        self.fifo.append(x)
        bisect.insort(self.sorted, x)
        if len(self.fifo) > self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.fifo.popleft())]
        return p


class SelfhealDetector:
    """selfheal's streaming detector (see the module doc).

    Args:
        window: values the deviations are measured against.
        calibration: raw deviations each p-value is judged against.
        gate: steps a score must beat to count in full.
    """

    def __init__(self, window: int = 1000, calibration: int = 2000, gate: int = 100) -> None:
        self.values = _Moments(window)
        self.changes = _Moments(window)
        self.cal_value = _Conformal(calibration)
        self.cal_change = _Conformal(calibration)
        self.recent: deque[float] = deque(maxlen=gate)
        self.last: float | None = None
        self.scale = math.log10(calibration + 1)

    def __call__(self, value: float) -> float:
        change = 0.0 if self.last is None else value - self.last
        ps = []
        st = self.values.stats()
        if st is not None:
            p = self.cal_value.p(abs(value - st[0]) / st[1])
            if p is not None:
                ps.append(p)
        sc = self.changes.stats()
        if sc is not None:
            p = self.cal_change.p(abs(change - sc[0]) / sc[1])
            if p is not None:
                ps.append(p)
        self.values.add(value)
        # A change is a one-off: winsorised, a jump does not inflate the spread of changes
        # for the whole window and then, leaving it, make ordinary changes look large.
        self.changes.add(change if sc is None else
                         min(max(change, sc[0] - 6 * sc[1]), sc[0] + 6 * sc[1]))
        self.last = value
        score = 0.0
        if ps:
            p = min(1.0, min(ps) * len(ps))
            score = max(0.0, min(1.0, -math.log10(p) / self.scale))
        before = max(self.recent) if self.recent else 0.0
        self.recent.append(score)
        return score if score > before else score * 0.5


class StaticThreshold:
    """Baseline: mean and deviation learned once from the first ``learn`` values; the score is
    ``|z|`` against them, squashed into [0, 1) like :class:`RollingZScore`'s."""

    def __init__(self, learn: int = 500) -> None:
        self.learn = learn
        self.moments = _Moments(learn)
        self.frozen: tuple[float, float] | None = None

    def __call__(self, value: float) -> float:
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

    def __call__(self, value: float) -> float:
        st = self.moments.stats()
        self.moments.add(value)
        if st is None:
            return 0.0
        return 1.0 - math.exp(-abs(value - st[0]) / st[1] / 4.0)


DETECTORS = {"selfheal": SelfhealDetector, "static_threshold": StaticThreshold,
             "rolling_zscore": RollingZScore}
