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


def test_misses_count_by_episode_so_a_slow_fault_is_caught_by_its_peak():
    """A degradation's first buckets sit among the healthy ones; it is caught as soon as
    one of its buckets is over the threshold. Counted by bucket, both targets look
    impossible; by episode, they hold."""
    from learning.training import Bucket

    rng = random.Random(4)

    def stretch(k):
        healthy = [Bucket(10.0 * i, 100, round(100 * rng.uniform(0, 0.02)), False)
                   for i in range(300)]
        ramp = [Bucket(3000.0 + 10 * i, 100, 2 * i, True) for i in range(20)]  # 0 % to 38 %
        return healthy + ramp + healthy[:50]

    history = [stretch(k) for k in range(5)]
    m = AdaptiveThresholdManager()
    c = m.choose_on_history("api", history)
    assert c.episodes == 5 and c.false_negative_rate == 0.0 and c.meets_targets
    assert c.false_positive_rate <= 0.05 and "both targets hold" in c.describe()
    by_sample = m.choose("api", [(b.errors / b.calls, b.troubled) for s in history for b in s])
    assert by_sample.false_negative_rate > 0.01 and not by_sample.meets_targets


def test_where_both_cannot_hold_the_trade_off_is_reported():
    rng = random.Random(5)
    healthy = [rng.gauss(0.02, 0.01) for _ in range(1000)]
    peaks = [rng.gauss(0.03, 0.005) for _ in range(50)]  # incidents barely above normal
    c = AdaptiveThresholdManager().choose("noisy", samples(healthy, peaks), peaks)
    assert not c.meets_targets and c.false_positive_rate <= 0.05
    assert c.fnr_threshold is not None and c.fnr_threshold < c.threshold
    assert c.fnr_threshold_fpr > 0.05  # holding the misses would cost the false positives
    assert sum(p < c.fnr_threshold for p in peaks) / len(peaks) <= 0.01
    assert "both cannot hold: misses under 1 % need" in c.describe()


def test_a_service_with_no_errors_most_of_the_time_gets_no_hair_trigger():
    """Most buckets of a healthy database have no error at all, some one stray error: the
    lowest threshold with 5 % of healthy buckets over it is just above zero, which would start
    a recovery at every stray error. Counted by alarm, the stray errors are hundreds of false
    alarms against two true ones: the threshold goes above them."""
    from learning.training import Bucket

    rng = random.Random(6)

    def day(outage_at):
        out = []
        for i in range(2000):
            t = 10.0 * i
            if outage_at <= i < outage_at + 30:
                out.append(Bucket(t, 20, 12, True))  # 60 % errors
            else:
                out.append(Bucket(t, 20, 1 if rng.random() < 0.02 else 0, False))
        return out

    m = AdaptiveThresholdManager()
    c = m.choose_on_history("database", [day(700), day(1500)])
    assert c.threshold > 1 / 20  # above what one stray error in a bucket makes
    assert c.false_alarms == 0 and c.false_alarm_share == 0.0
    assert c.false_negative_rate == 0.0 and c.meets_targets
    assert "0 false alarms, 0% of alarms" in c.describe()
    # counted by bucket only, the same history gives the hair trigger
    by_sample = m.choose("database", [(b.errors / b.calls, b.troubled)
                                      for d in (day(700), day(1500)) for b in d])
    assert by_sample.threshold < 1e-9
