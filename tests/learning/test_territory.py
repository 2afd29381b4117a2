"""New territory (issue 15, sixth look): a value in a part of the range its stream never
visited alarms once, and the detector scores it in full, at most once a day."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.detectors import SelfhealDetector, Territory
from learning.evidence import Gate

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_a_value_in_a_cell_never_visited_alarms_once():
    t = Territory(warm=11, cells=8)
    assert not any(t(float(v)) for v in range(11))  # the warm-up: 0..10, padded by 1 each side
    assert t.width == 1.5 and t.origin == -1.0
    assert t(13.0)  # cell 9: above everything seen
    assert not t(13.2)  # the same cell: visited now
    assert not t(5.0)  # home
    assert t(-3.0)  # below
    assert t(100.0) and not t(100.5)


def test_a_part_of_the_range_the_warm_up_skipped_is_new():
    """The warm-up's values mark their own cells, not the span between them: between the
    zeros and the bursts of a count there is territory nobody has visited."""
    t = Territory(warm=20, cells=8)
    for i in range(20):
        t(10.0 if i % 5 == 0 else 0.0)
    assert t(5.0)  # halfway: never seen
    assert not t(10.0) and not t(0.0)


def test_a_flat_warm_up_waits_for_a_value_that_differs():
    t = Territory(warm=5, cells=8)
    assert not any(t(0.0) for _ in range(50))  # no scale to cut a grid from
    assert t.warming == [0.0]  # and it keeps one copy, not fifty
    assert not t(1.0)  # the first change joins the warm-up and gives the scale
    assert t.width == 1.2 / 8
    assert not t(1.0)
    assert t(3.0)


def test_a_range_hint_cuts_the_grid():
    t = Territory(warm=3, cells=8, value_range=(0.0, 100.0))
    for v in (0.0, 0.5, 1.0):
        t(v)
    assert t.width == 15.0  # the hint's range, padded by a tenth each side, in 8 cells
    assert not t(4.0)  # the warm-up's cell
    assert t(10.0)  # the next cell of the hint's grid (without the hint: 60 cells away)


@pytest.mark.parametrize(("step_s", "cells"), [(3600, 8), (300, 19), (60, 20), (None, 20),
                                               (86400, 5)])
def test_the_grid_has_as_many_cells_as_its_warm_up_can_fill(step_s, cells):
    """Rice's rule from the warm-up's size: three days of hourly values (72) fill 8 cells,
    of 5-minute values (864) 19; at most 1,000 values (20 cells), and 1,000 without times."""
    d = SelfhealDetector()
    for i in range(30):
        d(1.0 + (i % 3), None if step_s is None else step_s * i)
    assert d.territory.cells == cells


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(finite, max_size=300), warm=st.integers(min_value=1, max_value=40))
def test_each_cell_alarms_at_most_once_and_never_in_the_warm_up(xs, warm):
    t = Territory(warm=warm)
    said = [t(x) for x in xs]
    assert not any(said[:warm])
    if t.warming is not None:
        assert not any(said)  # the grid is not cut yet
        return
    cells = [t._cell(x) for x, new in zip(xs, said, strict=True) if new]
    assert len(cells) == len(set(cells))


def noisy_hours(days, seed=1, level=100.0):
    rng = random.Random(seed)
    return [level + 10 * math.sin(2 * math.pi * i / 24) + rng.gauss(0, 1)
            for i in range(24 * days)]


def test_a_slow_leak_the_forecast_follows_is_seen_when_it_leaves_the_range():
    """A ramp of a tenth of the daily swing a day is news to no forecast (each hour is close
    to the last), but after some days it reaches values the series never had."""
    base = noisy_hours(30)
    ramp = [x + max(0, i - 24 * 12) * 0.25 for i, x in enumerate(base)]
    d = SelfhealDetector()
    scores = [d(x, 3600.0 * i) for i, x in enumerate(ramp)]
    blind = SelfhealDetector(territory_s=1e12, territory=10 ** 9)  # a warm-up without end
    without = [blind(x, 3600.0 * i) for i, x in enumerate(ramp)]
    first = scores.index(1.0, 24 * 12)
    assert 24 * 12 < first < 24 * 16  # within four days of the start of the ramp
    assert max(without[24 * 12:first + 1]) < 1.0
    assert max(scores[:24 * 12]) < 1.0  # and not before it


def test_new_territory_is_one_alarm_a_day_and_holds_the_forecasts_gate():
    """An excursion crossing three new cells in an hour is one alarm, and the forecast's
    alarms in the same day must beat a full score to count in full."""
    d = SelfhealDetector()
    for i, x in enumerate(noisy_hours(20)):
        d(x, 3600.0 * i)
    t0 = 3600.0 * 24 * 20
    assert d.answering  # the forecast answers by now, so its gate is held
    climb = [d(v, t0 + 3600.0 * k) for k, v in enumerate((130.0, 145.0, 160.0))]
    assert climb[0] == 1.0
    assert climb[1] < 1.0 and climb[2] < 1.0  # new cells, but within the day
    later = [d(x, t0 + 3600.0 * (3 + k)) for k, x in enumerate(noisy_hours(2, seed=2))]
    assert d(400.0, t0 + 3600.0 * 51) == 1.0  # a day later: new territory again
    assert max(later[24:]) < 1.0


def test_a_hold_makes_the_steps_after_beat_it():
    gate = Gate(5)
    gate(0.2, 0.2)
    gate.hold(1.0)
    assert gate(0.9, 0.9) == 0.45  # below the hold: the same episode
    assert gate(1.0, 3.0) == 1.0  # far beyond it: news
    gate(0.1, 0.1)
    gate.hold(0.05)  # a hold below the step's own evidence changes nothing
    assert gate(0.08, 0.08) == 0.04  # the 3.0 two steps back still rules
