"""Health hysteresis: no flapping, a trigger on the way down, a recovery on the way up."""

from __future__ import annotations

import pytest

from healing import ConfigError, ManualClock
from healing.health import (
    CheckResult,
    HealthCheckFailed,
    HealthPolicy,
    HealthRecovered,
    HealthState,
    HealthTracker,
)

OK, SLOW, FAIL = CheckResult.OK, CheckResult.SLOW, CheckResult.FAILED


def feed(t: HealthTracker, clock: ManualClock, results):
    events, states = [], []
    for r in results:
        clock.advance(10)
        events += t.observe(r, 0.01, clock.now(), clock.utcnow(), "refused" if r is FAIL else "")
        states.append(t.state)
    return states, events


def test_one_failure_degrades_fall_failures_make_unhealthy_and_trigger_once():
    clock = ManualClock()
    t = HealthTracker("db", HealthPolicy(fall=3, rise=2))
    states, events = feed(t, clock, [FAIL, FAIL, FAIL, FAIL])
    assert states == [HealthState.DEGRADED, HealthState.DEGRADED, HealthState.UNHEALTHY,
                      HealthState.UNHEALTHY]
    assert [type(e) for e in events] == [HealthCheckFailed]
    assert events[0].consecutive_failures == 3 and events[0].last_error == "refused"


def test_recovery_needs_rise_good_results_and_reports_the_downtime():
    clock = ManualClock()
    t = HealthTracker("db", HealthPolicy(fall=2, rise=2))
    feed(t, clock, [FAIL, FAIL])
    states, events = feed(t, clock, [OK, FAIL, OK, OK])
    assert states == [HealthState.UNHEALTHY, HealthState.UNHEALTHY, HealthState.UNHEALTHY,
                      HealthState.HEALTHY]
    [rec] = events
    assert isinstance(rec, HealthRecovered) and rec.down_for_s == 40.0


def test_alternating_results_do_not_flap_between_healthy_and_unhealthy():
    clock = ManualClock()
    t = HealthTracker("api", HealthPolicy(fall=3, rise=2))
    states, events = feed(t, clock, [FAIL, OK, FAIL, OK, FAIL, OK])
    assert HealthState.UNHEALTHY not in states and events == []


def test_slow_answers_degrade_but_never_make_unhealthy():
    clock = ManualClock()
    t = HealthTracker("api", HealthPolicy(fall=2))
    states, _ = feed(t, clock, [SLOW, SLOW, SLOW])
    assert states == [HealthState.DEGRADED] * 3


def test_policy_is_validated():
    with pytest.raises(ConfigError, match="fall"):
        HealthPolicy(fall=0)
