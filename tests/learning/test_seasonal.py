"""Holt-Winters forecasts, fitted on a schedule and carried forward per value."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from learning import seasonal
from learning.seasonal import HoltWinters


def daily(n, period=48, seed=0):
    rng = random.Random(seed)
    return [50 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 1) for i in range(n)]


def test_between_fits_the_forecasts_are_the_fitted_models_own():
    y = daily(600)
    hw = HoltWinters(period=48, refit=10_000, history=400)  # one fit, at value 96
    forecasts = []
    for v in y:
        forecasts.append(hw.forecast())
        hw.update(v)
    assert hw.fits == 1 and forecasts[95] is None and forecasts[96] is not None
    # statsmodels, fitted with the same weights from the same state, on the rest: its
    # one-step-ahead fitted values must be ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = ExponentialSmoothing(np.array(y[:96]), seasonal="add", seasonal_periods=48,
                                     initialization_method="heuristic").fit()
        again = ExponentialSmoothing(
            np.array(y[96:]), seasonal="add", seasonal_periods=48,
            initialization_method="known", initial_level=float(first.level[-1]),
            initial_seasonal=np.asarray(first.season)[-48:],
        ).fit(smoothing_level=first.params["smoothing_level"],
              smoothing_seasonal=first.params["smoothing_seasonal"], optimized=False)
    np.testing.assert_allclose(forecasts[96:], again.fittedvalues, rtol=1e-9, atol=1e-9)


def test_it_refits_on_its_schedule_and_forecasts_the_season():
    hw = HoltWinters(period=48, refit=100, history=200)
    y = daily(1000)
    errors = []
    for v in y:
        f = hw.forecast()
        if f is not None:
            errors.append(abs(v - f))
        hw.update(v)
    assert hw.fits == 11  # the first at value 96 (two seasons), then at 100, 200, ... 1000
    # the sine is forecast, not chased: errors are the noise's size, not the swing's
    assert sum(errors[-500:]) / 500 < 2.0


def test_without_a_season_it_is_simple_exponential_smoothing():
    hw = HoltWinters(period=0)
    for v in [10.0] * 49:
        hw.update(v)
    assert hw.forecast() is None  # 50 values before the first fit
    hw.update(10.0)
    assert hw.forecast() == pytest.approx(10.0)
    assert hw.season == []


def test_a_constant_series_forecasts_itself():
    hw = HoltWinters(period=24)
    for _ in range(60):
        hw.update(7.0)
    assert hw.forecast() == 7.0


@pytest.mark.parametrize("kwargs", [{"period": 1}, {"period": -3},
                                    {"period": 100, "history": 150}, {"refit": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        HoltWinters(**kwargs)


def _public_fit(y, period):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ExponentialSmoothing(
            np.array(y), seasonal="add" if period else None, seasonal_periods=period or None,
            initialization_method="heuristic").fit(use_brute=False)


@pytest.mark.parametrize("period", [0, 24, 48])
def test_a_fit_ends_in_the_state_statsmodels_fit_ends_in_to_the_bit(period):
    # the fit skips statsmodels' fitted values and carries the state itself (a third of the
    # detector's time): same weights, same last level, same next season, not merely close
    rng = random.Random(period)
    y = [v + (15.0 if i > 700 else 0.0) + rng.expovariate(0.5)
         for i, v in enumerate(daily(1000, period or 48, seed=period))]
    hw = HoltWinters(period=period, refit=10_000, history=1000, min_values=1000)
    for v in y:
        hw.update(v)
    assert hw.fits == 1
    fit = _public_fit(y, period)
    assert hw.alpha == fit.params["smoothing_level"]
    assert hw.level == np.asarray(fit.level)[-1]
    if period:
        assert hw.gamma == fit.params["smoothing_seasonal"]
        assert hw.season == np.asarray(fit.season)[-period:].tolist()
    assert hw.forecast() == fit.forecast(1)[0]


@pytest.mark.parametrize("period", [0, 24])
def test_without_statsmodels_inner_step_the_public_fit_gives_the_same_state(monkeypatch, period):
    # a statsmodels that moved the estimation step it does not export: the public fit answers
    y = daily(1000, period or 48, seed=3)
    fast = HoltWinters(period=period, refit=10_000, history=1000, min_values=1000)
    for v in y:
        fast.update(v)
    def moved(model):
        raise AttributeError("'ExponentialSmoothing' object has no attribute "
                             "'_optimize_parameters'")

    monkeypatch.setattr(seasonal, "_estimated_start", moved)
    slow = HoltWinters(period=period, refit=10_000, history=1000, min_values=1000)
    for v in y:
        slow.update(v)
    assert slow.fits == fast.fits == 1
    assert (slow.alpha, slow.gamma, slow.level, slow.season) == (
        fast.alpha, fast.gamma, fast.level, fast.season)
