"""Streaming anomaly detectors: one value in, one score in [0, 1] out, using only the past.

Every detector here is a callable ``step(value, at=None) -> score`` (``at``: the value's time
in seconds, for those that use it). None reads ahead, and none normalises by a file-wide
minimum or maximum: each score depends only on the values (and times) before it and on the
value itself, so the same object scores a live metric stream.

* :class:`SelfhealDetector`: how far the value is from a Holt-Winters one-step forecast
  (:mod:`learning.seasonal`, with a daily season when the values' times show one), as a
  z-score against the recent forecast errors; that raw score is calibrated into a conformal
  p-value against the detector's own last ``memory`` raw scores, kept between two tails
  (:func:`learning.evidence.bounded`): at most Chebyshev's bound ``1/z^2`` (true of any
  distribution: a deviation of 100 is strong evidence even against a short memory that has
  never seen one), at least the Gaussian tail (a record among a few values is no rarer than
  a Gaussian makes it), and the score is the p-value's
  negative log over the smallest p-value a memory of at least ``evidence`` scores can give
  (so "more extreme than anything in memory" scores 1 once the memory is that large, and
  being the most extreme of a few hundred is not yet a certainty). Until its model is
  fitted and has ``min_calibration`` raw scores it answers with the
  :class:`DeviationDetector` (its cold start). Beside the forecast, a value in a part of
  the range the stream has never visited (:class:`Territory`) scores 1, at most once a day.
* :class:`DeviationDetector`: how far the value, and its change from the last one, sit from
  the mean of a sliding window, in that window's standard deviations (changes enter their
  window winsorised at 6 deviations); each calibrated into a conformal p-value (kept
  between the same tails), the smaller p-value wins (Bonferroni-corrected), and the score is
  its negative log, scaled to [0, 1]. As the cold start (``early``), until its calibration
  holds enough deviations to rank against, it judges by Chebyshev's bound alone.
* Both apply a novelty gate: a score whose evidence (the negative log before it is capped
  at 1) does not exceed that of every step in the last ``gate`` steps is halved, so one
  episode raises one alarm rather than a volley, while a far larger deviation soon after a
  first still counts; :class:`SelfhealDetector` measures the gate as a day of its values'
  step once their times show it.
* :class:`StaticThreshold`, :class:`RollingZScore`: the simple baselines, scored the same way.

Range hints: NAB gives its detectors each file's minimum and maximum before the first row.
None of these needs them; :class:`SelfhealDetector` and :class:`DeviationDetector` take one
as ``value_range`` and then take a thousandth of the range as the resolution: every
deviation is shrunk by it (one smaller is none) and no spread is measured as smaller, which
is what a hint can honestly say about a stream; :class:`Territory` cuts its grid from it.
"""

from __future__ import annotations

import itertools
import math

from .evidence import Conformal, Gate, Moments, bounded, clip, resolution, z_score
from .seasonal import HoltWinters

__all__ = ["DETECTORS", "DeviationDetector", "RollingZScore", "SelfhealDetector",
           "StaticThreshold", "Territory"]


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
        magnitude: keep each p-value between the tails (see the module doc), so a far
            deviation counts as far; off, a p-value is a rank alone, at least
            ``1/(k + 1)``: the monitor's latency CUSUM wants a run of slow buckets, so one
            bucket's evidence must stay capped however slow it is.
    """

    EARLY_EVIDENCE = 100

    def __init__(self, window: int = 1000, calibration: int = 2000, gate: int = 100,
                 early: bool = False, clip_values: bool = False,
                 value_range: tuple[float, float] | None = None, magnitude: bool = True,
                 ) -> None:
        self.early, self.clip_values, self.magnitude = early, clip_values, magnitude
        floor = resolution(value_range)
        self.values = Moments(window, floor)
        self.changes = Moments(window, floor)
        self.cal_value = Conformal(calibration)
        self.cal_change = Conformal(calibration)
        self.gate = Gate(gate)
        self.last: float | None = None
        self.scale = math.log10(calibration + 1)

    def __call__(self, value: float, at: float | None = None) -> float:
        known = len(self.cal_value.sorted) + 1
        p = self.p_value(value)
        evidence = 0.0
        if p is not None:
            scale = (math.log10(max(known, self.EARLY_EVIDENCE)) if self.early
                     else self.scale)
            evidence = max(0.0, -math.log10(p) / scale)
        return self.gate(min(1.0, evidence), evidence)

    def p_value(self, value: float) -> float | None:
        """The value's p-value (the smaller of its two, Bonferroni-corrected), then it joins
        the window; None while the calibration is too short. For callers that combine
        p-values themselves (the monitor's CUSUM); :meth:`__call__` is this, scaled and gated."""
        change = 0.0 if self.last is None else value - self.last
        ps = []
        st = self.values.stats()
        if st is not None:
            z = z_score(value, st, self.values.floor)
            p = self._p(self.cal_value, z)
            if p is not None:
                ps.append(p)
        sc = self.changes.stats()
        if sc is not None:
            z = z_score(change, sc, self.changes.floor)
            p = self._p(self.cal_change, z)
            if p is not None:
                ps.append(p)
        # A change is a one-off: winsorised at 6 deviations, a jump does not inflate the
        # spread of changes for the whole window and then, leaving it, make ordinary
        # changes look large. Values likewise when ``clip_values`` (see the class doc).
        self.values.add(clip(value, st) if self.clip_values else value)
        self.changes.add(clip(change, sc))
        self.last = value
        return min(1.0, min(ps) * len(ps)) if ps else None

    def _p(self, calibration: Conformal, z: float) -> float | None:
        p = calibration.p(z)
        if not self.magnitude:
            return p
        if p is None:
            # Until the calibration holds enough deviations to rank against, an early
            # detector judges by Chebyshev's bound alone (true of any distribution), so a
            # series whose anomaly comes in its first hundred values is not blind to it (on
            # NAB's series as hourly means it was, from the 20th value to the 70th).
            return bounded(1.0, z) if self.early else None
        return bounded(p, z)


class Territory:
    """Whether a value enters a part of the range its stream has never visited.

    The range is cut into cells: a tenth is added to each side of the range of the first
    ``warm`` values, and that is cut into ``cells`` (so, without a hint, the warm-up's own
    values lie in cells 0 to ``cells - 1``), and the grid extends without bound either way.
    A value in a cell no earlier value reached is new territory; every later value in that
    cell is not.

    By default the cells are as many as Rice's rule gives a histogram of ``warm`` values
    (``2 * warm ** (1/3)``, at least 4): a grid the warm-up can fill, so that a cell left
    empty inside the range by chance is rare. Three days of hourly values (72) give 8 cells,
    of 5-minute values (864) 19, a warm-up of 1,000 values 20.

    So each part of the range raises at most one alarm, however long the stream, where a
    deviation from a forecast, calibrated against a memory of fixed length, alarms at a
    constant rate: the difference between a learning detector and a calibrated one, and most
    of what contextual detectors such as CAD OSE (which quantises the range into 8 levels
    and learns which follow which) earn on NAB (docs/learning.md, "New territory").

    With a range hint the grid is cut from the hint instead; the warm-up still only marks
    its cells visited. A warm-up whose values are all equal has no scale to cut: the grid
    waits for the first value that differs, which then joins the warm-up.

    O(1) a value; the memory is the set of visited cells."""

    PAD = 0.1

    def __init__(self, warm: int, cells: int | None = None,
                 value_range: tuple[float, float] | None = None) -> None:
        self.warm, self.fixed_cells = warm, cells
        self.hint = value_range
        self.warming: list[float] | None = []  # the warm-up's values; None once cut
        self.flat = False  # the warm-up is over but all its values were equal
        self.origin = self.width = 0.0
        self.visited: set[int] = set()

    def __call__(self, value: float) -> bool:
        if self.warming is not None:
            self.warming.append(value)
            if self.flat or len(self.warming) >= self.warm:
                self._cut()
            return False
        cell = self._cell(value)
        if cell in self.visited:
            return False
        self.visited.add(cell)
        return True

    def _cut(self) -> None:
        values = self.warming
        assert values is not None
        lo, hi = min(values), max(values)
        if not hi > lo:
            # no scale yet: wait for a value that differs (one copy of these is enough)
            self.warming, self.flat = values[:1], True
            return
        if self.hint is not None and self.hint[1] > self.hint[0]:
            lo, hi = self.hint
        pad = (hi - lo) * self.PAD
        self.origin, self.width = lo - pad, (hi - lo + 2 * pad) / self.cells
        if not (self.width > 0 and math.isfinite(self.width) and math.isfinite(self.origin)):
            self.warming, self.flat = values[:1], False  # a range past float's: try again later
            return
        # each warm-up value's own cell, not the span between them: a part of the range
        # the warm-up skipped (between the zeros and the bursts of a count) is still new
        # (NAB as hourly means: 63.5 against 60.6 with the span)
        self.visited = {self._cell(v) for v in values}
        self.warming = None

    @property
    def cells(self) -> int:
        """How many cells the warm-up's range (or the hint) is cut into."""
        if self.fixed_cells is not None:
            return self.fixed_cells
        return max(4, round(2.0 * self.warm ** (1.0 / 3.0)))

    def _cell(self, value: float) -> int:
        # clipped: a value 1e300 away from a grid of width 1e-3 is far, not an overflow
        return math.floor(max(-1e15, min(1e15, (value - self.origin) / self.width)))


class SelfhealDetector:
    """selfheal's streaming detector (see the module doc).

    Args:
        period: values per season; None to take a daily season from the values' times (when
            the first ``probe`` values have times and a day holds 4 to ``max_period`` of
            them), else none.
        memory: raw scores each p-value is judged against.
        window: forecast errors the raw score is measured against.
        gate: steps a score must beat to count in full, at most.
        gate_s: the same as a time: once the values' times show their step, a score must
            beat those of the last ``gate_s`` (at least ``MIN_GATE`` steps, at most
            ``gate``). One episode raises one alarm in the time it lasts, not in a count of
            values: 100 hourly values silenced four days after every alarm, and on NAB's
            real series as hourly means (a few hundred values each, as a month of hourly
            service metrics is) the gate of a day scored 58.5 where 100 values scored 51.7,
            without changing NAB's own score (the 5-minute series keep their 100).
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
        territory_s: how long the values whose range cuts the :class:`Territory` grid last
            (once the times show the step): three days, so a daily rhythm is seen more than
            once before its highs and lows count as home.
        territory: the most values that warm-up takes (all of it without times): 1,000
            minutely values are 17 hours, so a fine step is not blind for days.
    """

    MIN_GATE = 10

    def __init__(self, period: int | None = None, memory: int = 5000, window: int = 1000,
                 gate: int = 100, gate_s: float = 86400.0, season_s: float = 86400.0,
                 max_period: int = 288, probe: int = 20, min_calibration: int = 200,
                 evidence: int = 500, value_range: tuple[float, float] | None = None,
                 territory_s: float = 3 * 86400.0, territory: int = 1000) -> None:
        self.period, self.season_s, self.max_period, self.probe = (
            period, season_s, max_period, probe)
        self.gate_s = gate_s
        self.evidence = evidence
        self.cold = DeviationDetector(gate=gate, early=True, value_range=value_range)
        self.model: HoltWinters | None = None
        self.pending: list[tuple[float, float | None]] = []  # values before the period is known
        self.errors = Moments(window, resolution(value_range))
        self.calibration = Conformal(memory, min_calibration)
        self.gate = Gate(gate)
        self.territory_s = territory_s
        self.territory = Territory(territory, value_range=value_range)
        self.resting = 0  # values left before new territory may alarm again
        self.answering = False  # the forecast scored the last value (not the cold start)

    def __call__(self, value: float, at: float | None = None) -> float:
        score = self._deviation(value, at)
        # New territory scores in full, at most once in the gate's span (a day of values):
        # an excursion that crosses three new cells in an hour is one alarm, not three; and
        # it holds the forecast's gate, so the forecast's alarms in the same episode count
        # half (+2.2 on NAB's standard check held out, measured with 8 cells).
        self.resting -= 1
        if self.territory(value) and self.resting < 0:
            self.resting = self.gate.size
            if self.answering:
                self.gate.hold(1.0)
            return 1.0
        return score

    def _deviation(self, value: float, at: float | None) -> float:
        """The forecast's score (the cold start's until the model answers), gated."""
        forecast = None
        if self.model is None:
            self.pending.append((value, at))
            if self.period is not None or len(self.pending) >= self.probe or at is None:
                step = self._step()
                if step is not None:
                    size = max(self.MIN_GATE, min(self.gate.size, round(self.gate_s / step)))
                    self.gate.size = self.cold.gate.size = size
                    # a day-step's three values would be no warm-up: at least the probe's
                    self.territory.warm = min(self.territory.warm, max(
                        self.probe, round(self.territory_s / step)))
                self.model = HoltWinters(self._period(step))
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
                surprise = self.calibration.surprise(z_score(error, st, self.errors.floor),
                                                     self.evidence)
            self.errors.add(error)
        self.answering = surprise is not None
        if surprise is None:  # cold: no model, or not enough calibration yet
            return self.cold(value, at)
        return self.gate(min(1.0, surprise), surprise)

    def _step(self) -> float | None:
        """The values' step in seconds (the median gap of the first ``probe`` times), if
        they all have times."""
        times = [t for _, t in self.pending]
        if len(times) < 2 or any(t is None for t in times):
            return None
        gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)  # type: ignore[operator]
        return gaps[len(gaps) // 2] if gaps else None

    def _period(self, step: float | None) -> int:
        if self.period is not None:
            return self.period
        if step is None:
            return 0
        period = round(self.season_s / step)
        return period if 4 <= period <= self.max_period else 0


class StaticThreshold:
    """Baseline: mean and deviation learned once from the first ``learn`` values; the score is
    ``|z|`` against them, squashed into [0, 1) like :class:`RollingZScore`'s."""

    def __init__(self, learn: int = 500) -> None:
        self.learn = learn
        self.moments = Moments(learn)
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
        self.moments = Moments(window)

    def __call__(self, value: float, at: float | None = None) -> float:
        st = self.moments.stats()
        self.moments.add(value)
        if st is None:
            return 0.0
        return 1.0 - math.exp(-abs(value - st[0]) / st[1] / 4.0)


DETECTORS = {"selfheal": SelfhealDetector, "deviation": DeviationDetector,
             "static_threshold": StaticThreshold, "rolling_zscore": RollingZScore}
