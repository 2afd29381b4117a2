"""The NAB scorer, on tiny corpora whose scores can be worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from learning.nab import (
    PROFILES,
    Corpus,
    NabFile,
    hourly_means,
    raw_at,
    score_corpus,
    score_file,
    score_held_out,
)

STANDARD = PROFILES[0]


def corpus(n=100, windows=((50, 59),), probation=10):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [t0 + timedelta(minutes=5 * i) for i in range(n)]
    return Corpus([NabFile("f.csv", stamps, [0.0] * n, list(windows), probation)])


def scores(n=100, fire=()):
    return [[1.0 if i in fire else 0.0 for i in range(n)]]


def s(y):
    return 2 / (1 + math.exp(5 * y)) - 1


def test_never_detecting_scores_0_and_the_left_edge_of_every_window_scores_100():
    c = corpus(windows=((30, 39), (60, 69)))
    assert score_corpus(c, scores(), STANDARD)[0] == pytest.approx(0.0)
    assert score_corpus(c, scores(fire={30, 60}), STANDARD)[0] == pytest.approx(100.0)


def test_a_late_detection_earns_less_and_only_the_first_in_a_window_counts():
    c = corpus()
    # at the window's middle row (55 of 50..59): y = -(59 - 55 + 1) / 10 = -0.5
    expected = 100 * (s(-0.5) / s(-1) + 1) / 2  # from -1 (the miss) towards +1
    assert score_corpus(c, scores(fire={55}), STANDARD)[0] == pytest.approx(expected)
    # a second detection in the same window neither adds nor costs
    assert score_corpus(c, scores(fire={55, 57}), STANDARD)[0] == pytest.approx(expected)


def test_false_positives_cost_by_distance_after_the_window_and_fully_before_it():
    c = corpus()
    best = score_corpus(c, scores(fire={50}), STANDARD)[0]
    # before the first window: a full A_FP (0.11) off a range of 2
    before = score_corpus(c, scores(fire={50, 20}), STANDARD)[0]
    assert best - before == pytest.approx(100 * 0.11 / 2)
    # right after the window (y = 1/10): almost free; three widths on: a full A_FP
    near = score_corpus(c, scores(fire={50, 60}), STANDARD)[0]
    assert best - near == pytest.approx(100 * -0.11 * s(0.1) / 2)
    far = score_corpus(c, scores(fire={50, 95}), STANDARD)[0]
    assert best - far == pytest.approx(100 * 0.11 * -s(3.6) / 2, rel=1e-3)


def test_the_probationary_rows_are_not_scored():
    c = corpus(probation=30)
    assert score_corpus(c, scores(fire={5, 50}), STANDARD)[0] == pytest.approx(100.0)


def test_the_threshold_is_chosen_for_the_whole_corpus():
    c = corpus()
    ramp = [[0.9 if i == 50 else (0.95 if i == 20 else 0.1) for i in range(100)]]
    # firing at 0.95 costs a false positive; at 0.9 it also catches the window: worth it
    score, threshold = score_corpus(c, ramp, STANDARD)
    assert threshold == 0.9 and score == pytest.approx(100 * (2 - 0.11) / 2)


def test_scores_must_match_the_rows():
    with pytest.raises(ValueError, match="99 scores for 100 rows"):
        score_corpus(corpus(), [[0.0] * 99], STANDARD)


def test_held_out_each_category_is_scored_at_the_threshold_the_others_chose():
    base = corpus().files[0]
    c = Corpus([NabFile(name, base.timestamps, base.values, base.windows, base.probation)
                for name in ("a/1.csv", "a/2.csv", "b/1.csv")])
    # category a's detector fires at 0.9 in the window; b's fires at 0.5 in the window, so
    # on the whole corpus 0.5 is best, but held out, b is scored at a's 0.9 and misses
    hit_a = [0.9 if i == 50 else 0.0 for i in range(100)]
    hit_b = [0.5 if i == 50 else 0.0 for i in range(100)]
    sc = [hit_a, hit_a, hit_b]
    assert score_corpus(c, sc, STANDARD) == (pytest.approx(100.0), 0.5)
    assert raw_at(c, sc, STANDARD, 0.9) == pytest.approx(1 + 1 - 1)
    # a is held out against b (threshold 0.5: a's 0.9 fires), b against a (0.9: b misses)
    assert score_held_out(c, sc, STANDARD) == pytest.approx(100 * (1 + 1 - 1 + 3) / 6)


def test_range_hints_give_each_detector_its_files_minimum_and_maximum():
    seen = []

    def make(value_range=None):
        seen.append(value_range)
        return lambda value, at: 0.0

    c = corpus()
    c.files[0].values[:3] = [-2.0, 7.5, 1.0]
    score_file(c.files[0], make)
    score_file(c.files[0], make, hints=True)
    assert seen == [None, (-2.0, 7.5)]


def test_hourly_means_average_each_hour_and_keep_the_windows_on_their_hours():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    n = 12 * 200  # 200 hours of 5-minute values
    five = NabFile("real/a.csv", [t0 + timedelta(minutes=5 * i) for i in range(n)],
                   [float(i % 12 + 12 * (i // 12)) for i in range(n)],
                   [(12 * 100 + 5, 12 * 110 + 3), (12 * 10, 12 * 12)], 360)
    hourly_file = NabFile("real/b.csv", [t0 + timedelta(hours=i) for i in range(50)],
                          [1.0] * 50, [], 7)
    out = hourly_means(Corpus([five, hourly_file])).files
    assert [f.name for f in out] == ["real/a.csv"]  # only 5-minute series are averaged
    f = out[0]
    assert len(f.values) == 200 and f.timestamps[3] == t0 + timedelta(hours=3)
    assert f.values[0] == sum(range(12)) / 12 and f.values[5] == 60 + 5.5
    assert f.probation == 30
    # a window keeps the hours its rows fall in; one in the new probation is dropped
    assert f.windows == [(100, 110)]
