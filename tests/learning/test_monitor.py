"""The predictive monitor: binomial CUSUM on each service's error rate, on a caller's clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from healing import ConfigError
from learning.monitor import MonitorPolicy, PredictiveMonitor


def feed(m, service, buckets, start=0.0, bucket_s=10.0):
    """buckets: (calls, errors) per bucket; returns the anomalies raised, in order."""
    out = []
    for k, (calls, errors) in enumerate(buckets):
        t = start + k * bucket_s
        m.observe(service, t, calls, errors)
        out += m.tick(t + bucket_s)
    return out


def test_nothing_is_raised_while_the_usual_rate_is_learnt():
    m = PredictiveMonitor(MonitorPolicy(warmup_calls=500))
    # 400 calls, all failing: still learning p0, so no alarm, however bad it looks
    assert feed(m, "svc", [(100, 100)] * 4) == []


def test_one_bad_bucket_adds_exactly_its_log_likelihood_ratio():
    m = PredictiveMonitor(MonitorPolicy(warmup_calls=1000, h=100))
    feed(m, "svc", [(1000, 10)])  # p0 = 11 / 1002
    p0 = 11 / 1002
    p1 = max(2 * p0, p0 + 0.01)
    feed(m, "svc", [(200, 8)], start=10)
    expected = 8 * math.log(p1 / p0) + 192 * math.log((1 - p1) / (1 - p0))
    assert m.services["svc"].cusum == pytest.approx(expected)


def test_a_slow_rise_is_raised_within_a_few_buckets_and_then_the_service_is_quiet():
    m = PredictiveMonitor(MonitorPolicy(quiet_s=300))
    rng = random.Random(4)
    healthy = [(200, sum(rng.random() < 0.002 for _ in range(200))) for _ in range(100)]
    assert feed(m, "api", healthy) == []
    # the rate climbs by half a point per bucket, as a leak does
    rising = [(200, sum(rng.random() < 0.002 + 0.005 * k for _ in range(200)))
              for k in range(1, 40)]
    found = feed(m, "api", rising, start=1000)
    assert len(found) >= 1
    first = found[0]
    assert first.service == "api" and first.feature == "error_rate"
    assert first.at <= 1000 + 6 * 10  # within six buckets of the rise
    assert all(b.at - a.at >= 300 for a, b in itertools.pairwise(found))


def test_noise_at_the_usual_rate_raises_nothing_over_a_day():
    m = PredictiveMonitor()
    rng = random.Random(9)
    day = [(30, sum(rng.random() < 0.03 for _ in range(30))) for _ in range(8640)]
    assert feed(m, "noisy", day) == []


def test_late_evidence_for_a_scored_bucket_is_dropped_and_services_are_separate():
    m = PredictiveMonitor(MonitorPolicy(warmup_calls=100))
    feed(m, "a", [(100, 1)])
    m.observe("a", 5.0, 1000, 1000)  # bucket 0 was scored at t=10
    assert m.services["a"].buckets == {}
    feed(m, "b", [(50, 0)])
    assert sorted(m.state()["services"]) == ["a", "b"]


@pytest.mark.parametrize("field,value", [("bucket_s", 0), ("h", -1), ("warmup_calls", 0),
                                         ("learn_rate", 0), ("quiet_s", -5)])
def test_bad_policies_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        MonitorPolicy(**{field: value})


def test_a_latency_spike_is_an_anomaly_once_the_service_has_a_history():
    m = PredictiveMonitor()
    rng = random.Random(11)
    found = []
    for k in range(900):  # two and a half hours of ordinary latency, 20 calls a bucket
        lat = [rng.gauss(0.1, 0.01) for _ in range(20)]
        m.observe("api", 10 * k, 20, 0, lat)
        found += m.tick(10 * k + 10)
    assert found == []
    m.observe("api", 9000, 20, 0, [rng.gauss(0.6, 0.05) for _ in range(20)])
    [a] = m.tick(9010)
    assert a.feature == "latency_p95" and a.value > 0.5 and a.score >= 0.85
