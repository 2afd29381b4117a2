"""The streaming detectors: scores in [0, 1], no look-ahead, and they see what they should."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.detectors import DETECTORS, SelfhealDetector

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1,
                  max_size=400)



@pytest.mark.parametrize("name", sorted(DETECTORS))
@settings(max_examples=40, deadline=None)
@given(xs=values, extra=values)
def test_scores_are_in_range_and_never_depend_on_the_future(name, xs, extra):
    make = DETECTORS[name]
    a = make()
    first = [a(x) for x in xs]
    b = make()
    both = [b(x) for x in xs + extra]
    assert both[:len(xs)] == first  # appending the future changed nothing in the past
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in both)


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("scale", [1e-300, 1e154, 1e200, 1e300])
def test_finite_values_of_any_size_give_scores_in_range(name, scale):
    """Squares overflow past ~1e154 and differences past ~9e307; no score may be NaN."""
    rng = random.Random(2)
    step = DETECTORS[name]()
    scores = [step(rng.gauss(0, 1) * scale, 300.0 * i) for i in range(700)]
    scores.append(step(1.0, 300.0 * 700))  # and back to ordinary sizes
    assert all(0.0 <= s <= 1.0 for s in scores)  # NaN fails this too


def noisy(n, seed=1):
    rng = random.Random(seed)
    return [100 + 10 * math.sin(i / 20) + rng.gauss(0, 1) for i in range(n)]


def test_a_spike_scores_high_and_ordinary_points_low():
    d = SelfhealDetector()
    series = noisy(3000)
    normal = [d(x) for x in series]
    spike = d(series[-1] + 40)
    after = [d(x) for x in noisy(200, seed=2)]
    assert spike > 0.6
    assert sorted(normal[1000:])[int(0.99 * 2000)] < 0.5  # 99th percentile of ordinary
    assert max(after) < spike


def test_a_level_shift_is_seen_at_its_start_not_for_ever():
    d = SelfhealDetector()
    scores = [d(x) for x in noisy(3000)] + [d(x + 30) for x in noisy(1500, seed=3)]
    assert max(scores[3000:3010]) > 0.6
    # the new level became normal: ordinary again (a 1-in-1000 wobble may still stand out)
    assert sorted(scores[-300:])[int(0.95 * 300)] < 0.5


def test_a_constant_series_and_its_first_change():
    d = SelfhealDetector()
    flat = [d(5.0) for _ in range(2000)]
    assert max(flat) == 0.0
    assert d(6.0) > 0.6


def test_the_daily_season_comes_from_the_values_times():
    """A value usual for its time of day is not news; the same value at the wrong hour is."""
    rng = random.Random(4)
    step = 1800.0  # half-hourly: 48 values a day

    def value(i):
        return 100 + 50 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 2)

    d = SelfhealDetector()
    scores = [d(value(i), i * step) for i in range(48 * 30)]
    assert d.model is not None and d.model.period == 48
    i = 48 * 30
    # the daily peak, on time: ordinary
    peak = i + 12 - i % 48
    for k in range(i, peak):
        d(value(k), k * step)
    on_time = d(150.0, peak * step)
    # the same peak twelve hours late, where the trough should be
    for k in range(peak + 1, peak + 24):
        d(value(k), k * step)
    late = d(150.0, (peak + 24) * step)
    assert on_time < 0.5 < late
    assert sorted(scores[500:])[int(0.99 * len(scores[500:]))] < 0.6
    # without times the same detector cannot know the season
    blind = SelfhealDetector()
    for i in range(200):
        blind(value(i))
    assert blind.model is not None and blind.model.period == 0


def test_the_cold_start_answers_before_the_model_is_fitted():
    d = SelfhealDetector(period=48)
    series = noisy(90)
    [d(x) for x in series]
    assert d.model is not None and d.model.forecast() is None  # 96 values before a fit
    assert d(series[-1] + 40) > 0.6  # the deviation detector saw the spike anyway
