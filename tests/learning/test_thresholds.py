"""Thresholds chosen on labelled history, applied only on real change, audited, reversible."""

from __future__ import annotations

import random

import pytest

from healing import ConfigError
from learning.thresholds import AdaptiveThresholdManager


def samples(healthy, troubled):
    return [(v, False) for v in healthy] + [(v, True) for v in troubled]


def test_the_lowest_threshold_that_keeps_false_positives_within_target():
    m = AdaptiveThresholdManager(max_fpr=0.05, max_fnr=0.01)
    healthy = [i / 100 for i in range(100)]  # 0.00 .. 0.99
    troubled = [1.5] * 50
    c = m.choose("api", samples(healthy, troubled))
    # five healthy values (0.95..0.99) may be flagged: the threshold sits just above 0.94
    assert 0.94 < c.threshold <= 0.95
    assert c.false_positive_rate == 0.05 and c.false_negative_rate == 0.0 and c.meets_targets


def test_when_both_targets_cannot_hold_false_positives_win_and_it_says_so():
    rng = random.Random(3)
    healthy = [rng.gauss(0.02, 0.01) for _ in range(1000)]
    troubled = [rng.gauss(0.03, 0.01) for _ in range(200)]  # overlapping: not separable
    c = AdaptiveThresholdManager().choose("noisy", samples(healthy, troubled))
    assert c.false_positive_rate <= 0.05 and c.false_negative_rate > 0.01
    assert not c.meets_targets


def test_changes_under_twenty_percent_are_not_applied_and_applied_ones_can_be_reverted():
    m = AdaptiveThresholdManager()
    first = m.apply(m.choose("api", samples([0.1] * 95 + [0.2] * 5, [0.5])))
    assert first is not None and first.old is None and m.current["api"] == first.new
    again = m.choose("api", samples([0.11] * 95 + [0.21] * 5, [0.5]))  # +10 %
    assert m.apply(again) is None and m.current["api"] == first.new
    moved = m.apply(m.choose("api", samples([0.2] * 95 + [0.4] * 5, [0.9])))  # +100 %
    assert moved is not None and moved.old == first.new and "moved +100 %" in moved.reason
    back = m.revert("api")
    assert back.new == first.new and back.old == moved.new and m.current["api"] == first.new
    with pytest.raises(ConfigError, match="no earlier threshold"):
        m.revert("api")


def test_no_healthy_history_and_bad_targets_are_refused():
    with pytest.raises(ConfigError, match="healthy samples"):
        AdaptiveThresholdManager().choose("api", [(0.5, True)])
    with pytest.raises(ConfigError, match="max_fpr"):
        AdaptiveThresholdManager(max_fpr=1.5)
