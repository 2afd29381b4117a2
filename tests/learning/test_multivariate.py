"""The multivariate detector: the forest walked here scores as scikit-learn's does, and its
CUSUM alarms on a lasting shift of a service's metrics, not on noise or one odd row."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from learning.multivariate import ForestScorer, MultivariateDetector


def test_the_trees_walked_here_score_exactly_as_sklearn():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(600, 4)) * [1, 10, 0.1, 5]
    forest = IsolationForest(n_estimators=30, max_samples=100, max_features=3,
                             random_state=1).fit(train)
    probe = np.vstack([rng.normal(size=(200, 4)) * [1, 10, 0.1, 5],
                       rng.normal(size=(20, 4)) * 8])
    scorer = ForestScorer(forest)
    ours = [scorer(row) for row in probe.tolist()]
    np.testing.assert_allclose(ours, -forest.score_samples(probe), rtol=1e-12)


def rows(n, seed, shift=(0.0, 0.0, 0.0, 0.0)):
    rng = random.Random(seed)
    # error rate, p95 latency (s), throughput (calls/s), in-flight calls
    return [(max(0.0, rng.gauss(0.01, 0.003)) + shift[0], rng.gauss(0.2, 0.02) + shift[1],
             rng.gauss(50, 3) + shift[2], rng.gauss(10, 1) + shift[3]) for _ in range(n)]


def test_noise_never_alarms_and_the_forest_is_refitted_on_schedule():
    d = MultivariateDetector(refit=360, history=720)
    verdicts = [d(r) for r in rows(3000, seed=1)]
    assert verdicts[:170] == [None] * 170  # fitted at 120 rows, calibrated 50 rows later
    judged = [v for v in verdicts if v is not None]
    assert len(judged) == 3000 - 170 and not any(v.alarm for v in judged)
    assert d.fits == 1 + 3000 // 360
    # calibrated: on noise, p-values are spread over (0, 1], not piled at either end
    ps = sorted(v.p for v in judged)
    assert 0.35 < ps[len(ps) // 2] < 0.65


def test_a_lasting_saturation_is_caught_in_a_few_rows_and_one_odd_row_is_not():
    d = MultivariateDetector()
    for r in rows(1000, seed=2):
        d(r)
    # one row of a saturating service: throughput a little down, latency and in-flight
    # calls a little up, together (each 3 to 5 deviations off)
    odd = d((0.01, 0.28, 42, 15))
    assert odd is not None and odd.p < 0.01 and not odd.alarm
    for r in rows(30, seed=9):
        d(r)
    saturating = [d(r) for r in rows(40, seed=3, shift=(0.0, 0.08, -8, 5))]
    first = next(i for i, v in enumerate(saturating) if v.alarm)
    assert first < 15
    assert saturating[first].cusum >= 20
    nxt = saturating[first + 1]  # the sum starts again from 0 after an alarm
    assert nxt.cusum == pytest.approx(max(0.0, -math.log(nxt.p) - 2.0))


@pytest.mark.parametrize("kwargs", [{"h": 0}, {"drift": 1.0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        MultivariateDetector(**kwargs)


def test_rows_that_are_not_measurements_are_neither_judged_nor_learnt():
    d = MultivariateDetector()
    for r in rows(300, seed=4):
        d(r)
    seen = d.seen
    for bad in [(float("nan"), 0.2, 50, 10), (0.01, float("inf"), 50, 10), (0.01, 0.2, 1e39, 10)]:
        assert d(bad) is None
    assert d.seen == seen and len(d.rows) == 300
