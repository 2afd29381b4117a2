"""Evidence from deviations, shared by the detectors and the monitors: running moments of a
window, conformal p-values kept between Chebyshev's bound and a Gaussian tail, a CUSUM of
p-values, and the novelty gate. Pure and O(1) or O(log n) a value (see
:mod:`learning.detectors` for how they combine)."""

from __future__ import annotations

import bisect
import math
from collections import deque

__all__ = ["Conformal", "Gate", "Moments", "SurpriseCusum", "bounded", "clip", "resolution",
           "z_score"]


class Gate:
    """Halves a score that does not beat every score of the last ``size`` steps.

    The window's maximum is kept in a monotonic queue (each score enters and leaves it once),
    so a step costs O(1) amortised rather than a scan of ``size`` scores."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.step = 0
        self.best: deque[tuple[int, float]] = deque()  # (step, score), scores decreasing

    def __call__(self, score: float, evidence: float | None = None) -> float:
        """``score``, or half of it; ``evidence`` (default: the score) is what must beat the
        window's, so that scores capped at 1 can still be told apart."""
        key = score if evidence is None else evidence
        best = self.best
        while best and best[0][0] < self.step - self.size:
            best.popleft()
        before = best[0][1] if best else 0.0
        while best and best[-1][1] <= key:
            best.pop()
        best.append((self.step, key))
        self.step += 1
        return score if key > before else score * 0.5

    def hold(self, evidence: float) -> None:
        """Count the last step's evidence as at least ``evidence`` (another channel raised an
        alarm on it), so the steps of the same episode after it must beat that to count in
        full."""
        best = self.best
        if best and best[-1][0] == self.step - 1:
            evidence = max(evidence, best[-1][1])
        while best and best[-1][1] <= evidence:
            best.pop()
        best.append((self.step - 1, evidence))


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


class Moments:
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
        """``-log p`` (``p`` kept by :func:`bounded`, ``x`` being a deviation) over the
        largest a memory of ``evidence`` scores, or of what it holds if more, can give: 1
        for a raw score above every one in a memory at least that large, and more for one
        Chebyshev's bound says is rarer still (callers cap it as a score)."""
        k = len(self.sorted)
        p = self.p(x)
        if p is None:
            return None
        return -math.log(bounded(p, x)) / math.log(max(k, evidence) + 1)

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


def z_score(x: float, stats: tuple[float, float], resolution: float = 0.0) -> float:
    """``|x - mean| / sd``, to 6 decimals: a constant series' running sums leave rounding
    noise of ~1e-9 deviations, which ranked against itself would look like a p-value. A
    deviation is first shrunk by ``resolution`` (a range hint's: see the module doc), so one
    smaller than it is none."""
    return round(max(abs(x - stats[0]) - resolution, 0.0) / stats[1], 6)


def bounded(p: float, z: float) -> float:
    """A conformal p-value, kept between what a deviation of ``z`` spreads can mean.

    From above, by Chebyshev's inequality: under any distribution a deviation of ``z`` or
    more has a chance of at most ``1/z^2``. A rank can only say "above everything in
    memory"; the bound keeps a deviation of 100 spreads apart from one of 6, however short
    the memory (issue 15: on short service series a 4x jump in request rate scored like a
    mild record).

    From below, by the Gaussian tail: a rank among few values claims ``1/(k + 1)`` for any
    record, and a record of 2 spreads among 84 hourly values (the night's dip of a series
    with a daily swing) is no rarer than a Gaussian makes it: 0.05, not 0.012. No metric has
    a thinner tail worth assuming than a Gaussian's, so no deviation is judged rarer than
    under one. The floor gained on every corpus, profile and held-out check
    (docs/learning.md)."""
    p = max(p, math.erfc(z / math.sqrt(2.0)))
    return min(p, 1.0 / (z * z)) if z > 1.0 else p


def resolution(value_range: tuple[float, float] | None) -> float:
    """The smallest spread worth measuring in, given a range hint: a thousandth of it."""
    if value_range is None:
        return 0.0
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi) and hi >= lo):
        raise ValueError(f"value_range must be a finite (minimum, maximum); got {value_range}")
    return (hi - lo) / 1000.0


def clip(x: float, stats: tuple[float, float] | None, k: float = 6.0) -> float:
    return x if stats is None else min(max(x, stats[0] - k * stats[1]), stats[0] + k * stats[1])
