"""One-step-ahead forecasts of a metric from Holt-Winters exponential smoothing, streaming.

A Holt-Winters fit costs tens of milliseconds to seconds (statsmodels estimates its smoothing
weights by optimisation; we measured ~4 s on 10k points here with estimated initial
states), far too much to pay per value. So the model is *fitted on a schedule* and *updated
per value*: every ``refit`` values, statsmodels' ``ExponentialSmoothing`` (additive season,
no trend: a trend extrapolated into the next value is how a leak gets forecast as normal)
is fitted on the last ``history`` values, and between fits the same model's recursions carry
its state forward one value at a time, in O(1):

    forecast  = level + season[phase]
    level'    = alpha * (y - season[phase]) + (1 - alpha) * level
    season'   = gamma * (y - level) + (1 - gamma) * season[phase]

which are statsmodels' own recursions, so between fits the forecasts are the ones its fitted
model would have made (tested against ``fittedvalues``).

The season's length is given in values (``period``; 0 for none, then it is simple
exponential smoothing). It is fitted only once two whole seasons have been seen.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any

import numpy as np

__all__ = ["HoltWinters"]


class HoltWinters:
    """Streaming one-step forecasts (see the module doc).

    Args:
        period: values per season (say 288 for a daily season of 5-minute values); 0 for none.
        refit: values between fits (default: a season, at least 500).
        history: values each fit sees (default: three seasons, at least 1000).
        min_values: values before the first fit without a season.
    """

    def __init__(self, period: int = 0, refit: int | None = None, history: int | None = None,
                 min_values: int = 50) -> None:
        if period < 0 or period == 1:
            raise ValueError(f"period: must be 0 (no season) or at least 2, got {period}")
        self.period = period
        self.refit = refit if refit is not None else max(period, 500)
        self.history = history if history is not None else max(3 * period, 1000)
        if self.refit < 1 or self.history < max(2 * period, min_values):
            raise ValueError(f"refit ({self.refit}) must be >= 1 and history "
                             f"({self.history}) must hold two seasons")
        self.min_values = max(2 * period, min_values)
        self.values: deque[float] = deque(maxlen=self.history)
        self.seen = 0
        self.fits = 0
        self.level: float | None = None
        self.season: list[float] = []
        self.phase = 0
        self.alpha = self.gamma = 0.0

    def forecast(self) -> float | None:
        """The forecast of the next value, or None before the first fit."""
        if self.level is None:
            return None
        return self.level + (self.season[self.phase] if self.season else 0.0)

    def update(self, value: float) -> None:
        """Take the next value: carry the state forward, and refit when it is time."""
        if self.level is not None:
            level = self.level
            if self.season:
                s = self.season[self.phase]
                self.level = self.alpha * (value - s) + (1 - self.alpha) * level
                self.season[self.phase] = self.gamma * (value - level) + (1 - self.gamma) * s
                self.phase = (self.phase + 1) % self.period
            else:
                self.level = self.alpha * value + (1 - self.alpha) * level
        self.values.append(value)
        self.seen += 1
        if len(self.values) >= self.min_values and (self.level is None
                                                    or self.seen % self.refit == 0):
            self._fit()

    def _fit(self) -> None:
        # imported on first fit: importing statsmodels costs ~1.9 s here, which every Ray
        # worker and CLI call that never fits a model (the monitor, the simulator) would pay
        from statsmodels.tsa.holtwinters import ExponentialSmoothing  # noqa: PLC0415

        y = np.asarray(self.values, dtype=float)
        if np.ptp(y) == 0.0:  # nothing to estimate: a constant forecasts itself
            self.level, self.season, self.phase, self.alpha, self.gamma = (
                float(y[-1]), [0.0] * self.period, 0, 1.0, 0.0)
            self.fits += 1
            return
        try:
            with warnings.catch_warnings():
                # a weight at its bound is a legitimate answer ("no seasonal change")
                warnings.simplefilter("ignore")
                model = ExponentialSmoothing(
                    y, seasonal="add" if self.period else None,
                    seasonal_periods=self.period or None, initialization_method="heuristic")
                alpha, gamma, level, season = _estimate(model)
        except (ValueError, np.linalg.LinAlgError):
            return  # keep the state it has; the next refit tries again
        if not all(math.isfinite(v) for v in (alpha, gamma, level, *season)):
            return
        # carry the estimated start through the fitted values, as statsmodels' own fitted
        # values do (the same arithmetic in the same order, so the same state to the bit),
        # to the state the next value is forecast from
        a_c, g_c, phase = 1 - alpha, 1 - gamma, 0
        for v in y.tolist():
            if season:
                s = season[phase]
                level, season[phase] = (alpha * v - alpha * s + a_c * level,
                                        gamma * v - gamma * level + g_c * s)
                phase = (phase + 1) % self.period
            else:
                level = alpha * v + a_c * level
        self.alpha, self.gamma, self.level = alpha, gamma, level
        self.season, self.phase = season[phase:] + season[:phase], 0
        self.fits += 1


def _estimate(model: Any) -> tuple[float, float, float, list[float]]:
    """The smoothing weights and the start state that ``model.fit(use_brute=False)`` estimates.

    From the heuristic start, not statsmodels' brute-force grid over the weights first: that
    grid was half the detector's time, and no NAB or service-corpus score moved by more than
    0.1 without it. And without the fitted values, forecasts and results tables that ``fit``
    builds after estimating (a Python loop over numpy scalars, then pandas): they were a third
    of the detector's time, and the state they end in is computed by ``_fit`` in about a tenth of
    it. That step is statsmodels' own, which it does not export; where it is not there (a
    statsmodels that moved it), the public ``fit`` answers the same, slower.
    tests/learning/test_seasonal.py holds the two to the same answer.
    """
    try:
        start = _estimated_start(model)
    except (ImportError, AttributeError, TypeError):
        fit = model.fit(use_brute=False)
        start = (fit.params["smoothing_level"], fit.params.get("smoothing_seasonal"),
                 fit.params["initial_level"], fit.params.get("initial_seasons"))
    alpha, gamma, level, season = start
    if not model.seasonal_periods:  # no season: statsmodels leaves its weight unset (nan)
        return float(alpha), 0.0, float(level), []
    return float(alpha), float(gamma), float(level), [float(s) for s in season]


def _estimated_start(model: Any) -> tuple[Any, Any, Any, Any]:
    """statsmodels' estimation step, as its ``fit(use_brute=False)`` calls it."""
    from statsmodels.tsa.holtwinters.model import _OptConfig  # noqa: PLC0415
    config = _OptConfig()
    config.alpha = config.beta = config.gamma = None  # all estimated
    config.phi = 1.0  # no damping: there is no trend
    config.level = config.trend = config.seasonal = config.params = None
    config.mle_retvals = config.mask = None
    config.y = model._y
    res = model._optimize_parameters(config, False, "L-BFGS-B", {})
    return res.alpha, res.gamma, res.level, res.seasonal
