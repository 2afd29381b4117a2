"""What recovery steps do, decided once: effects and judgements, without any world."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from healing.orchestration import TriggerEvent
from healing.recovery import (
    ErrorThresholdRule,
    NoCircuit,
    RecoveryPolicy,
    Restart,
    RetryProbe,
    RouteTo,
    ScaleTo,
    SendAlert,
    SetCircuit,
    SwitchBack,
    WarmCache,
    circuit_of,
    describe,
    error_rate_below,
    plan_step,
    wilson_lower,
    wilson_upper,
)
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger

POLICY = RecoveryPolicy()


def wf(*steps, service="clinical_reasoning", trigger=Trigger.CIRCUIT_OPEN):
    return RecoveryWorkflow("w", trigger, service, tuple(steps), (), 60.0, "high")


def plan(step, event=None, primary=None, policy=POLICY):
    w = wf(step)
    event = event or TriggerEvent(Trigger.CIRCUIT_OPEN, w.service, f"{w.service}:gemini:pro")
    return plan_step(step, w, event, policy, primary)


def test_retry_takes_the_policys_defaults_and_the_steps_own():
    [r] = plan(RecoveryStep("retry", {}))
    assert isinstance(r, RetryProbe) and r.policy.max_attempts == 3
    assert r.policy.base_delay_s == POLICY.retry_base_delay_s == 1.0
    [r] = plan(RecoveryStep("retry", {"max_attempts": 5, "base_delay_s": 0.2}))
    assert (r.policy.max_attempts, r.policy.base_delay_s) == (5, 0.2)


def test_fallback_to_a_provider_forces_the_named_circuit_open_and_switches_back():
    moved, back = plan(RecoveryStep("fallback", {"provider": "deepseek", "recheck_s": 3}))
    # the force ends by itself after the recheck period: trial calls bring traffic back
    # even where nothing can probe the primary
    assert moved == SetCircuit("clinical_reasoning:gemini:pro", True,
                               "w: traffic moved to deepseek", trial_after_s=3)
    assert isinstance(back, SwitchBack) and back.every_s == 3 and back.provider == "gemini:pro"
    assert back.then.open is False and back.then.circuit == moved.circuit
    [rollback] = plan(RecoveryStep("fallback", {"provider": "primary"}))
    assert rollback.open is False


def test_the_circuit_comes_from_a_naming_trigger_or_the_primary():
    threshold = TriggerEvent(Trigger.ERROR_THRESHOLD, "svc", "error rate 40%")
    assert circuit_of(threshold, "svc", "p1") == "svc:p1"
    assert circuit_of(TriggerEvent(Trigger.CIRCUIT_OPEN, "svc", "svc:p2"), "svc", "p1") == \
        "svc:p2"
    with pytest.raises(NoCircuit, match="circuit_open trigger"):
        circuit_of(threshold, "svc", None)


def test_fallback_to_a_tier_routes_and_read_replica_is_a_tier():
    route, back = plan(RecoveryStep("fallback", {"tier": "degraded_mode"}))
    # the route ends by itself after the recheck period, as a forced circuit does
    assert route == RouteTo("clinical_reasoning", "degraded_mode", "w: circuit_open",
                            for_s=POLICY.recheck_s)
    assert back.then == RouteTo("clinical_reasoning", None, "primary recovered, traffic back")
    assert back.every_s == POLICY.recheck_s
    [route, _] = plan(RecoveryStep("fallback", {"read_replica": True}))
    assert route.tier == "alternative_provider:read_replica"
    [clear] = plan(RecoveryStep("fallback", {"tier": "primary"}))
    assert clear.tier is None


@pytest.mark.parametrize("instances,current,expected", [
    ("+1", 2, 3), ("-1", 2, 1), ("-1", 1, 1), ("5", 1, 5), ("+40", 2, 32), (" 0 ", 3, 1)])
def test_scale_sums_within_the_bounds(instances, current, expected):
    [s] = plan(RecoveryStep("scale", {"instances": instances}))
    assert isinstance(s, ScaleTo) and s.deployment == "clinical_reasoning"
    assert s.target(current) == expected


def test_restart_alert_and_cache_warm():
    [r] = plan(RecoveryStep("restart", {"graceful": False, "delay_s": 4}))
    assert r == Restart("clinical_reasoning", None, False, 4.0)
    [r] = plan(RecoveryStep("restart", {"actor": "selfheal/monitor"}))
    assert r.actor == "selfheal/monitor" and r.deployment is None
    [a] = plan(RecoveryStep("alert", {"severity": "high", "channel": "slack"}))
    assert isinstance(a, SendAlert) and a.dedup_key == "w:clinical_reasoning"
    assert "clinical_reasoning:gemini:pro" in a.summary
    [c] = plan(RecoveryStep("cache_warm", {"ttl_s": 300}, timeout_s=20))
    assert c == WarmCache("clinical_reasoning", 300.0, None, 10.0)


def test_an_action_that_is_not_built_in_is_not_planned():
    from healing.workflow import ACTIONS, ActionSpec

    ACTIONS["page_the_ward"] = ActionSpec("page_the_ward")
    try:
        with pytest.raises(KeyError):
            plan(RecoveryStep("page_the_ward", {}))
    finally:
        del ACTIONS["page_the_ward"]


def test_every_effect_describes_itself_as_json():
    steps = [RecoveryStep("retry", {}), RecoveryStep("fallback", {"provider": "deepseek"}),
             RecoveryStep("fallback", {"tier": "degraded_mode"}),
             RecoveryStep("scale", {"instances": "+1"}), RecoveryStep("restart", {}),
             RecoveryStep("alert", {"severity": "high", "channel": "slack"}),
             RecoveryStep("cache_warm", {"ttl_s": 60, "operations": ["diagnostic"]})]
    described = [describe(e) for s in steps for e in plan(s)]
    assert json.loads(json.dumps(described)) == described
    assert {d["effect"] for d in described} == {
        "RetryProbe", "SetCircuit", "SwitchBack", "RouteTo", "ScaleTo", "Restart", "SendAlert",
        "WarmCache"}


def test_no_evidence_is_not_health():
    assert not error_rate_below(0, 0, 0.5)
    assert error_rate_below(1, 100, 0.05) and not error_rate_below(5, 100, 0.05)


def test_the_error_threshold_needs_evidence():
    rule = ErrorThresholdRule(0.10)
    assert not rule.fires(2, 3)  # 67 % of three calls: not enough calls to say
    assert not rule.fires(3, 20)  # 15 %, but its lower bound is not above 10 %
    assert rule.fires(70, 180) and "39%" in rule.describe(70, 180)


@example(errors=0, extra=0, calls=441)  # once gave 8.6e-19 for no errors at all
@given(errors=st.integers(0, 500), extra=st.integers(0, 500), calls=st.integers(0, 1000))
def test_the_rule_is_monotone_and_needs_its_minimum(errors, extra, calls):
    rule = ErrorThresholdRule(0.2, min_calls=10)
    errors = min(errors, calls)
    more = min(errors + extra, calls)
    if calls < 10:
        assert not rule.fires(errors, calls)
    if rule.fires(errors, calls):
        assert rule.fires(more, calls)  # more errors in the same calls never un-fire it
    assert 0.0 <= wilson_lower(errors, calls, 2.326) <= (errors / calls if calls else 0.0)
    assert (errors / calls if calls else 1.0) <= wilson_upper(errors, calls, 2.326) <= 1.0


def test_the_error_threshold_fires_only_while_the_errors_are_still_happening():
    """In a chaos run a workflow started 34 s after the provider came back, when only the
    errors a 30 s window still held were left, and forced the healthy provider open. The
    last sixth of the window must not show, with confidence, a rate below the threshold."""
    rule = ErrorThresholdRule(0.10, window_s=30.0)
    assert rule.recent_s == 5.0
    assert rule.fires(450, 3400)  # 13 % over 30 s: evidence, if nothing else is known
    assert not rule.fires(450, 3400, 0, 560)  # none in the last 5 s of 560 calls: it ended
    assert rule.fires(450, 3400, 90, 560)  # 16 % in the last 5 s: still happening
    assert rule.fires(450, 3400, 0, 4)  # 4 recent calls prove nothing either way
    assert rule.fires(450, 3400, 0, 0)  # nor do none


@given(errors=st.integers(0, 500), calls=st.integers(10, 1000), recent=st.integers(0, 200),
       recent_errors=st.integers(0, 200))
def test_the_recent_window_can_only_hold_a_trigger_back(errors, calls, recent, recent_errors):
    rule = ErrorThresholdRule(0.2, min_calls=10)
    errors, recent_errors = min(errors, calls), min(recent_errors, recent)
    if rule.fires(errors, calls, recent_errors, recent):
        assert rule.fires(errors, calls)
    if rule.fires(errors, calls) and recent_errors == recent:
        assert rule.fires(errors, calls, recent_errors, recent)  # all failing: still fires
