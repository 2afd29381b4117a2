"""Memory forecast to its limit (learning.resources): a leak is seen while memory climbs,
long before requests fail; a garbage collector's sawtooth, noise and a slow warm-up are
not."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healing import ConfigError
from learning.resources import MemoryGrowth


def feed(detector, samples, target="api/r1", service="api"):
    alerts = []
    for t, used in samples:
        detector.observe(target, service, t, used, 1.0)
        alerts += detector.check(t)
    return alerts


def test_a_steady_climb_is_forecast_to_its_limit_and_alerted_once():
    rng = random.Random(1)
    d = MemoryGrowth()
    healthy = [(t, 0.5 + rng.gauss(0, 0.005)) for t in range(0, 1800, 10)]
    assert feed(d, healthy) == []
    climb = [(1800 + t, 0.5 + 0.01 * t / 60 + rng.gauss(0, 0.005)) for t in range(0, 1200, 10)]
    [alert] = feed(d, climb)
    assert 1800 < alert.at <= 1800 + 600  # within ten minutes of the climb's start
    f = alert.forecast
    assert f.slope_per_s * 60 == pytest.approx(0.01, rel=0.35)
    # from about half the limit at 1 % a minute: the limit in about 50 minutes
    assert 30 * 60 < f.seconds_to_limit < 60 * 60
    assert "of its limit" in alert.describe() and alert.service == "api"
    # a restart: memory back to its baseline; the climb after it is a new alert
    back = [(3000 + t, 0.45 + rng.gauss(0, 0.005)) for t in range(0, 900, 10)]
    assert feed(d, back) == []
    again = [(3900 + t, 0.45 + 0.01 * t / 60 + rng.gauss(0, 0.005)) for t in range(0, 600, 10)]
    assert len(feed(d, again)) == 1


def test_a_sawtooth_noise_and_a_slow_warm_up_are_no_leak():
    d = MemoryGrowth()
    # a collector: 60 % to 80 % and back every two minutes, for an hour
    saw = [(t, 0.6 + 0.2 * ((t % 120) / 120)) for t in range(0, 3600, 10)]
    assert feed(d, saw, "saw/r1") == []
    rng = random.Random(2)
    noisy = [(t, 0.7 + rng.gauss(0, 0.03)) for t in range(0, 3600, 10)]
    assert feed(d, noisy, "noisy/r1") == []
    # a cache warming 0.3 % a minute from 40 %: the limit is over three hours away
    warm = [(t, 0.4 + 0.003 * t / 60) for t in range(0, 3600, 10)]
    assert feed(d, warm, "warm/r1") == []


def test_too_few_samples_forecast_nothing_and_a_forgotten_target_starts_over():
    d = MemoryGrowth()
    feed(d, [(t, 0.5 + 0.02 * t / 60) for t in range(0, 170, 10)])  # 17 samples, 160 s
    assert d.forecast("api/r1") is None
    d.forget("api/r1")
    assert d.forecast("api/r1") is None and d.check(60) == []


@given(st.floats(0.05, 0.6), st.floats(1e-5, 1e-3), st.integers(6, 60))
def test_on_an_exact_line_the_forecast_is_the_line(base, slope, n):
    d = MemoryGrowth(window_s=10_000, min_span_s=10)
    for k in range(n):
        d.observe("t", "s", k * 10.0, base + slope * k * 10.0, 1.0)
    f = d.forecast("t")
    now_used = base + slope * (n - 1) * 10.0
    assert f.slope_per_s == pytest.approx(slope, rel=1e-6)
    assert f.r2 == pytest.approx(1.0, abs=1e-9)
    assert f.used == pytest.approx(now_used, rel=1e-9)
    assert f.seconds_to_limit == pytest.approx(max(0.0, (1 - now_used) / slope), rel=1e-6,
                                               abs=1e-6)
    assert not math.isnan(f.seconds_to_limit)


@pytest.mark.parametrize("field,value", [("window_s", 0), ("horizon_s", -1),
                                         ("min_samples", 2), ("min_r2", 1.5)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        MemoryGrowth(**{field: value})


def test_a_bad_limit_is_refused():
    with pytest.raises(ConfigError, match="limit"):
        MemoryGrowth().observe("t", "s", 0.0, 1.0, 0.0)
