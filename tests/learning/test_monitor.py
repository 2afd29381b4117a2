"""The predictive monitor: binomial CUSUM on each service's error rate, on a caller's clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _two_faults(calm_s, gap_buckets=12):
    """A healthy hour, a 30 s burst of errors (a hang reset, say), ``gap_buckets`` healthy
    buckets, then a lasting 20 % of errors (a leak); returns the anomalies' times from the
    burst's start."""
    m = PredictiveMonitor(MonitorPolicy(calm_s=calm_s, multivariate_s=0))
    rng = random.Random(3)

    def healthy(n):
        return [(100, sum(rng.random() < 0.002 for _ in range(100))) for _ in range(n)]

    assert feed(m, "cr", healthy(360)) == []
    buckets = [(100, 60)] * 3 + healthy(gap_buckets) + [
        (100, sum(rng.random() < 0.2 for _ in range(100))) for _ in range(30)]
    return [a.at - 3600 for a in feed(m, "cr", buckets, start=3600)]


def test_once_an_episode_is_over_the_quiet_ends_and_the_next_fault_is_seen():
    # the burst is raised; 60 s of calm buckets after it end the quiet, so the leak that
    # starts two minutes after the burst is raised within two buckets of its start
    burst, leak = _two_faults(calm_s=60.0)
    assert burst <= 20 and 150 < leak <= 170
    # with the quiet held its whole five minutes (the behaviour before), the leak is not
    # raised until the quiet is over
    burst_held, *later = _two_faults(calm_s=0.0)
    assert burst_held == burst and (not later or later[0] >= burst + 300)


def test_an_episode_that_goes_on_keeps_the_quiet():
    m = PredictiveMonitor(MonitorPolicy(multivariate_s=0))
    rng = random.Random(8)
    assert feed(m, "cr", [(100, sum(rng.random() < 0.002 for _ in range(100)))
                          for _ in range(360)]) == []
    # ten minutes of a fault at 30 %: one alarm per quiet, not one a minute
    found = feed(m, "cr", [(100, sum(rng.random() < 0.3 for _ in range(100)))
                           for _ in range(60)], start=3600)
    assert len(found) == 2 and found[1].at - found[0].at >= 300


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 200), st.floats(0, 1)), min_size=60, max_size=400),
       st.sampled_from([10.0, 30.0, 60.0, 120.0]))
def test_after_an_alarm_the_next_needs_calm_s_of_calm_buckets_first(rows, calm_s):
    m = PredictiveMonitor(MonitorPolicy(calm_s=calm_s, warmup_calls=100, multivariate_s=0))
    found = feed(m, "svc", [(calls, round(calls * share)) for calls, share in rows])
    # the quiet ends no sooner than calm_s after an alarm, and the next alarm is a bucket
    # after that at the earliest
    for a, b in itertools.pairwise(found):
        assert b.at - a.at >= calm_s + 10.0


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
                                         ("learn_rate", 0), ("quiet_s", -5), ("calm_s", -1),
                                         ("calm_s", math.nan)])
def test_bad_policies_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        MonitorPolicy(**{field: value})


def api_bucket(m, rng, k, calls=20, mean=0.1, sd=0.02, errors=0):
    lat = [max(0.01, rng.gauss(mean, sd)) for _ in range(calls)]
    m.observe("api", 10 * k, calls, errors, lat)
    return m.tick(10 * k + 10)


def test_a_lasting_latency_rise_is_an_anomaly_and_one_slow_bucket_or_noise_is_not():
    m = PredictiveMonitor(MonitorPolicy(multivariate_s=0))
    rng = random.Random(11)
    found = []
    for k in range(1800):  # five hours of ordinary latency, 20 calls a bucket
        found += api_bucket(m, rng, k)
    assert found == []  # five hours of noise: its slowest buckets are not alarms
    assert api_bucket(m, rng, 1800, mean=0.6) == []  # one slow bucket is not an incident
    for k in range(1801, 1900):
        if found := api_bucket(m, rng, k, mean=0.16):
            break
    [a] = found
    assert a.feature == "latency_p95" and a.value > 0.16 and a.score >= 0.5
    assert k - 1801 < 10  # a run of slow buckets is caught within 10 buckets
    # faster than usual is no evidence of trouble
    quiet = PredictiveMonitor(MonitorPolicy(multivariate_s=0))
    assert [x for k in range(1200) for x in api_bucket(quiet, rng, k)] == []
    assert [x for k in range(1200, 1260) for x in api_bucket(quiet, rng, k, mean=0.02,
                                                            sd=0.002)] == []


def test_a_service_whose_metrics_are_each_a_little_off_at_once_is_an_anomaly():
    """Saturation: fewer calls answered, each a little slower, none failing. No one metric
    is alarming; together they are, and the anomaly says what they were."""
    m = PredictiveMonitor()
    rng = random.Random(5)
    found = []
    for k in range(1800):  # five hours: the forest is fitted at two, calibrated by three
        found += api_bucket(m, rng, k, calls=max(1, int(rng.gauss(20, 4))))
    assert found == []
    assert m.services["api"].together.fits == 1
    for k in range(1800, 1980):
        if found := api_bucket(m, rng, k, calls=max(1, int(rng.gauss(15, 4))), mean=0.115):
            break
    [a] = found
    assert a.feature == "metrics_together"
    figures = dict(a.context)
    assert set(figures) == {"error_rate", "latency_p95", "throughput", "in_flight"}
    assert figures["throughput"] < 2.0 and figures["error_rate"] == 0.0
    assert "throughput" in a.detail
    assert (k - 1800) * 10 <= 20 * 60  # within twenty minutes of rows


def test_the_multivariate_row_must_be_whole_buckets():
    with pytest.raises(ConfigError, match="multivariate_s"):
        MonitorPolicy(multivariate_s=15)
    assert MonitorPolicy(multivariate_s=0).multivariate_s == 0  # off


def test_a_constant_latency_raises_nothing():
    """Rounding noise in a constant series' running sums is not evidence (it once was)."""
    m = PredictiveMonitor()
    for k in range(1500):
        m.observe("api", 10 * k, 20, 0, [0.01] * 20)
        assert m.tick(10 * k + 10) == []
