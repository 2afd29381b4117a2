"""The streaming detectors: scores in [0, 1], no look-ahead, and they see what they should."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.detectors import DETECTORS, DeviationDetector, SelfhealDetector
from learning.evidence import Gate, bounded

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


def test_a_large_jump_early_in_a_short_series_scores_as_high_as_it_is_large():
    """Issue 15: a 4x jump in request rate 100 values into a series scored like any record
    among a few dozen values (0.7), while a rolling z-score saw z ≈ 100. Chebyshev's bound
    keeps the magnitude: the jump scores 1, an ordinary record of the same memory does not."""
    rng = random.Random(5)
    series = [1000 * (1 + rng.gauss(0, 0.03)) for _ in range(100)]
    d = SelfhealDetector()
    ordinary = [d(x, 60.0 * i) for i, x in enumerate(series)]
    jump = d(4000.0, 60.0 * 100)
    assert jump == 1.0
    assert max(ordinary[70:]) < 0.9  # records among a hundred ordinary values are not certain


def test_being_the_most_extreme_of_a_few_is_weak_evidence():
    """The model's calibration answers only with 200 raw scores, and a record is scaled as
    if against 500: the first weekend of an hourly series is no longer a full-score alarm."""
    d = SelfhealDetector()
    rng = random.Random(6)
    scores = [d(100 + 50 * math.sin(2 * math.pi * i / 24) * (0.6 if (i // 24) % 7 >= 5 else 1)
                + rng.gauss(0, 3), 3600.0 * i) for i in range(24 * 14)]
    assert d.model is not None and d.model.period == 24
    assert max(scores[100:]) < 1.0


@pytest.mark.parametrize("make", [SelfhealDetector, DeviationDetector])
def test_a_range_hint_sets_the_smallest_deviation_that_counts(make):
    """With the range known, a wobble far below a thousandth of it is no news, even on a
    series that never moved before; without the hint the first wobble is a record."""
    hinted, blind = make(value_range=(0.0, 1000.0)), make()
    for i in range(600):
        hinted(500.0, 60.0 * i)
        blind(500.0, 60.0 * i)
    assert hinted(500.01, 60.0 * 600) < 0.1 < blind(500.01, 60.0 * 600)


@pytest.mark.parametrize("bad", [(1.0, 0.0), (0.0, math.inf), (math.nan, 1.0)])
def test_a_bad_range_hint_is_refused(bad):
    with pytest.raises(ValueError, match="value_range"):
        SelfhealDetector(value_range=bad)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(min_value=0, max_value=1), max_size=300),
       size=st.integers(min_value=1, max_value=50))
def test_the_gate_halves_exactly_what_does_not_beat_the_last_steps(scores, size):
    """The O(1) gate is the plain definition: halve unless above every one of the last
    ``size`` scores."""
    gate = Gate(size)
    for i, s in enumerate(scores):
        before = max(scores[max(0, i - size):i], default=0.0)
        assert gate(s) == (s if s > before else s * 0.5)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.floats(min_value=0, max_value=1),
                                st.floats(min_value=0, max_value=50)), max_size=300),
       size=st.integers(min_value=1, max_value=50))
def test_the_gate_compares_the_evidence_it_is_given_not_the_capped_score(pairs, size):
    gate = Gate(size)
    for i, (s, e) in enumerate(pairs):
        before = max((ev for _, ev in pairs[max(0, i - size):i]), default=0.0)
        assert gate(s, e) == (s if e > before else s * 0.5)


def test_a_far_larger_deviation_soon_after_a_first_counts_in_full():
    """Scores are capped at 1, so two spikes both "certain" tied, and the gate halved the
    second however much larger it was (on NAB's network-in series, hourly: a burst 4x the
    largest before it, an hour after a smaller one, scored 0.5)."""
    rng = random.Random(3)
    d = SelfhealDetector()
    for i in range(400):
        d(100 + rng.gauss(0, 1), 3600.0 * i)
    assert d(160, 3600.0 * 400) == 1.0
    d(100, 3600.0 * 401)
    assert d(10_000, 3600.0 * 402) == 1.0  # far beyond the first: news
    d(100, 3600.0 * 403)
    assert d(150, 3600.0 * 404) <= 0.5  # smaller than the first: the same episode


def test_the_cold_start_judges_by_chebyshev_before_its_calibration_fills():
    """An anomaly among the first values of a series (before the cold start has the 50
    deviations it ranks against) is seen by its size, not missed."""
    rng = random.Random(4)
    series = [50 + rng.gauss(0, 1) for _ in range(40)]
    early, plain = DeviationDetector(early=True), DeviationDetector()
    for x in series:
        early(x)
        plain(x)
    assert early(90) > 0.8  # a 40-deviation jump at the 41st value
    assert plain(90) == 0.0  # the un-early detector waits for its calibration
    quiet = DeviationDetector(early=True)
    assert max(quiet(x) for x in series) < 0.8  # ordinary values are not alarms


@settings(max_examples=300, deadline=None)
@given(p=st.floats(min_value=1e-12, max_value=1.0),
       z=st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_a_p_value_is_kept_between_the_gaussian_tail_and_chebyshevs_bound(p, z):
    gaussian = math.erfc(z / math.sqrt(2.0))
    b = bounded(p, z)
    assert gaussian <= b <= max(p, gaussian)  # never rarer than a Gaussian makes it
    if z > 1.0:
        assert b <= 1.0 / (z * z)  # Chebyshev: any distribution
    else:
        assert b == max(p, gaussian)


def test_a_record_of_two_spreads_among_a_few_values_is_not_an_alarm():
    """Issue 15: among 84 hourly values, the night's dip two spreads down was a record, and a
    rank among 84 scored it 0.81; NAB's short hourly series raised false alarms at every
    such dip. A record of seventeen spreads still is one."""
    xs = [((i * 37) % 101) / 50.0 - 1.0 for i in range(84)]  # spread 0.59, all within 1.73 of it
    mild, far = DeviationDetector(early=True, gate=24), DeviationDetector(early=True, gate=24)
    for x in xs:
        mild(x)
        far(x)
    assert mild(1.2) < 0.6  # 2.1 spreads: above every value so far, and no more
    assert far(10.0) > 0.9  # 17 spreads


@pytest.mark.parametrize(("step_s", "size"), [(3600, 24), (300, 100), (60, 100),
                                              (86400, 10), (None, 100)])
def test_the_gate_lasts_a_day_of_the_values_step(step_s, size):
    d = SelfhealDetector()
    for i in range(30):
        d(1.0 + (i % 3), None if step_s is None else step_s * i)
    assert d.gate.size == d.cold.gate.size == size
