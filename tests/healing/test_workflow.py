"""Workflows: validated when built; executed step by step on a simulated clock."""

from __future__ import annotations

import pytest

from healing import ClinicalContext, ConfigError, ManualClock
from healing.orchestration import Admission, RecoveryQueue, TriggerEvent
from healing.workflow import (
    CheckCriteria,
    Criterion,
    FailureAction,
    Priority,
    RecoveryStep,
    RecoveryWorkflow,
    RunAction,
    StepOutcome,
    StepStatus,
    Trigger,
    execute,
)

ALERT = RecoveryStep("alert", {"severity": "high", "channel": "slack"})


def wf(*steps, rollback=(), timeout_s=60.0, context=None, **kw):
    return RecoveryWorkflow("wf", kw.pop("trigger", "circuit_open"), kw.pop("service", "svc"),
                            tuple(steps), tuple(rollback), timeout_s,
                            kw.pop("priority", Priority.HIGH),
                            context or ClinicalContext("informational", "medium"))


def drive(workflow, clock, results, criteria=None):
    """The test driver: each action takes ``results[action] = (ok, seconds)``."""
    log = []
    plan = execute(workflow, clock.now())
    reply = None
    try:
        while True:
            cmd = plan.send(reply)
            if isinstance(cmd, RunAction):
                ok, seconds = results.get(cmd.step.action, (True, 1.0))
                timed_out = seconds > cmd.timeout_s
                clock.advance(min(seconds, cmd.timeout_s))
                log.append((cmd.step.action, clock.now(), cmd.rollback))
                reply = StepOutcome(ok and not timed_out, result={"done": cmd.step.action},
                                    error=None if ok else "it broke",
                                    duration_s=min(seconds, cmd.timeout_s),
                                    timed_out=timed_out, now=clock.now())
            elif isinstance(cmd, CheckCriteria):
                clock.advance(cmd.wait_s)
                log.append(("check", clock.now(), False))
                reply = (criteria or (lambda c: True))(cmd.criteria)
    except StopIteration as stop:
        return stop.value, log


def test_an_error_rate_criterion_judges_the_window_after_the_step_on_the_workflows_time():
    clock = ManualClock()
    restart = RecoveryStep("restart", {"delay_s": 5},
                           (Criterion("error_rate_below", {"threshold": 0.05,
                                                           "window_s": 30}),), timeout_s=20)
    probe = RecoveryStep("retry", {}, (Criterion("probe_succeeds"),), timeout_s=20)
    result, log = drive(wf(restart, probe, ALERT, timeout_s=45), clock,
                        {"restart": (True, 10.0), "retry": (True, 2.0), "alert": (True, 1.0)})
    # restart ends at 10 s; its criterion is judged at 40 s, after the 30 s that follow it;
    # the probe's criterion needs no wait
    assert [(a, t) for a, t, _ in log] == [("restart", 10.0), ("check", 40.0),
                                           ("retry", 42.0), ("check", 42.0), ("alert", 43.0)]
    assert result.succeeded
    # the wait counts against the workflow: with 5 s left, the retry gets 5 s, not 20
    clock = ManualClock()
    result, log = drive(wf(restart, probe, ALERT, timeout_s=45), clock,
                        {"restart": (True, 10.0), "retry": (True, 8.0), "alert": (True, 1.0)})
    assert [s.status.value for s in result.steps][:2] == ["succeeded", "timed_out"]


def test_steps_run_in_order_on_the_clock():
    clock = ManualClock()
    w = wf(RecoveryStep("fallback", {"provider": "deepseek"}),
           RecoveryStep("cache_warm", {"ttl_s": 300}), ALERT)
    result, log = drive(w, clock, {"fallback": (True, 2.0), "cache_warm": (True, 5.0)})
    assert result.succeeded and result.ended == "completed"
    assert log == [("fallback", 2.0, False), ("cache_warm", 7.0, False), ("alert", 8.0, False)]
    assert [r.status for r in result.steps] == [StepStatus.SUCCEEDED] * 3


def test_failed_success_criteria_fail_the_step():
    clock = ManualClock()
    crit = (Criterion("health_check_passes", {"check": "db"}),)
    w = wf(RecoveryStep("retry", {"max_attempts": 3}, crit, FailureAction.ABORT), ALERT)
    result, _ = drive(w, clock, {}, criteria=lambda c: False)
    assert result.ended == "aborted" and not result.succeeded
    assert [r.status for r in result.steps] == [StepStatus.FAILED, StepStatus.SKIPPED]
    assert result.steps[0].error == "success criteria not met"


def test_continue_goes_on_after_a_failed_step():
    clock = ManualClock()
    w = wf(RecoveryStep("retry", {}, failure_action="continue"), ALERT)
    result, _ = drive(w, clock, {"retry": (False, 1.0)})
    assert [r.status for r in result.steps] == [StepStatus.FAILED, StepStatus.SUCCEEDED]
    assert result.ended == "completed" and not result.succeeded


def test_rollback_runs_the_rollback_steps_in_reverse():
    clock = ManualClock()
    undo_fallback = RecoveryStep("fallback", {"provider": "primary"})
    undo_scale = RecoveryStep("scale", {"instances": "-1"})
    w = wf(RecoveryStep("scale", {"instances": "+1"}),
           RecoveryStep("restart", {"graceful": True}, failure_action=FailureAction.ROLLBACK),
           ALERT, rollback=(undo_fallback, undo_scale))
    result, log = drive(w, clock, {"restart": (False, 1.0)})
    assert result.ended == "rolled_back"
    assert [(a, rb) for a, _, rb in log] == [("scale", False), ("restart", False),
                                             ("scale", True), ("fallback", True)]
    assert [r.status for r in result.steps] == [
        StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.ROLLED_BACK,
        StepStatus.ROLLED_BACK]


def test_a_step_is_cut_off_by_its_own_timeout_and_the_workflow_by_its_timeout():
    clock = ManualClock()
    alert = RecoveryStep("alert", {"severity": "high", "channel": "slack"}, timeout_s=12.0)
    w = wf(RecoveryStep("restart", {"delay_s": 60}, timeout_s=10.0), alert,
           RecoveryStep("scale", {"instances": 2}, timeout_s=12.0), timeout_s=12.0)
    result, log = drive(w, clock, {"restart": (True, 99.0), "alert": (True, 5.0)})
    assert result.steps[0].status is StepStatus.TIMED_OUT
    assert log[0][1] == 10.0  # stopped at its own 10 s
    assert log[1][1] == 12.0  # the alert only had the 2 s left
    assert result.ended == "timed_out"
    assert result.steps[-1].status is StepStatus.SKIPPED


@pytest.mark.parametrize("context,action,config,rule", [
    (ClinicalContext("prescriptive", "high"), "cache_warm", {"ttl_s": 60},
     "rule_1_no_cache_for_prescriptive"),
    (ClinicalContext("diagnostic", "life_critical"), "fallback", {"provider": "b"},
     "rule_2_no_fallback_for_life_critical"),
])
def test_a_step_refused_by_clinical_safety_is_skipped_and_recorded(context, action, config,
                                                                    rule):
    clock = ManualClock()
    w = wf(RecoveryStep(action, config), ALERT, context=context)
    result, log = drive(w, clock, {})
    assert [a for a, _, _ in log] == ["alert"]  # the refused step never ran
    refused = result.steps[0]
    assert refused.status is StepStatus.REFUSED and refused.validation["rule"] == rule
    assert refused.error


@pytest.mark.parametrize("build,field", [
    (lambda: RecoveryStep("reboot_universe"), "action"),
    (lambda: RecoveryStep("alert", {"severity": "high"}), "alert.config"),
    (lambda: RecoveryStep("fallback", {}), "fallback.config"),
    (lambda: RecoveryStep("scale", {"instances": 1, "colour": "red"}), "scale.config"),
    (lambda: RecoveryStep("alert", {"severity": "h", "channel": "c"}, timeout_s=-5),
     "timeout_s"),
    (lambda: wf(ALERT, timeout_s=-1), "timeout_s"),
    (lambda: wf(RecoveryStep("retry", {}, failure_action="rollback")),
     "steps[0].failure_action"),
    (lambda: wf(ALERT, rollback=(ALERT,)), "rollback_steps"),
    (lambda: wf(ALERT, trigger="sunspots"), "trigger"),
    (lambda: wf(ALERT, priority="urgent"), "priority"),
    (lambda: wf(RecoveryStep("restart", {}, timeout_s=90.0)), "steps[0].timeout_s"),
    (lambda: Criterion("vibes_good"), "success_criteria.kind"),
    (lambda: Criterion("error_rate_below", {"threshold": 0.1}),
     "success_criteria.error_rate_below"),
])
def test_invalid_workflows_are_errors_naming_the_field(build, field):
    with pytest.raises(ConfigError) as err:
        build()
    assert err.value.field == field


# -- the orchestrator's queue ----------------------------------------------------------

def queue(cooldown_s=300.0):
    flows = [
        wf(ALERT, trigger="circuit_open", service="ai", priority="high"),
        wf(ALERT, trigger="health_check_failed", service="db", priority="critical"),
        wf(ALERT, trigger="error_threshold", service="api", priority="low"),
        wf(ALERT, trigger="manual", service="ai", priority="medium"),
    ]
    return RecoveryQueue(flows, cooldown_s)


def test_critical_runs_before_high_before_low_whatever_the_arrival_order():
    q = queue()
    for t, s in (("error_threshold", "api"), ("circuit_open", "ai"),
                 ("health_check_failed", "db")):
        assert q.submit(TriggerEvent(Trigger(t), s), 0.0) is Admission.QUEUED
    order = [q.next()[0].service for _ in range(3)]
    assert order == ["db", "ai", "api"] and q.next() is None


def test_repeated_triggers_for_a_service_being_healed_are_coalesced():
    q = queue()
    q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 0.0)
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 1.0) is Admission.COALESCED
    q.next()
    assert q.running == {"ai"}
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 2.0) is Admission.COALESCED
    assert len(q) == 0 and q.coalesced["ai"] == 2


def test_cool_down_refuses_the_same_alarm_but_hears_an_operator():
    q = queue(cooldown_s=300.0)
    q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 0.0)
    q.finish(q.next()[1], 100.0)
    assert q.cooling_down("ai", Trigger.CIRCUIT_OPEN, 399.0)
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 399.0) is Admission.COOLING_DOWN
    assert q.submit(TriggerEvent(Trigger.MANUAL, "ai"), 399.0) is Admission.QUEUED
    q.finish(q.next()[1], 400.0)
    # after the operator's run, every automatic trigger of the service waits its cool-down
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 699.0) is Admission.COOLING_DOWN
    assert q.cooling_down("ai", Trigger.HEALTH_CHECK_FAILED, 699.0)
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 700.0) is Admission.QUEUED


def test_a_different_alarm_is_heard_during_a_cool_down_and_an_anomaly_is_the_error_alarm():
    """A run for an error spike must not swallow the circuit opening of an outage that
    follows it (a chaos run lost an outage's recovery run and its alert so)."""
    flows = [wf(ALERT, trigger=t, service="ai") for t in
             ("error_threshold", "anomaly", "circuit_open", "health_check_failed")]
    q = RecoveryQueue(flows, 120.0)
    assert q.submit(TriggerEvent(Trigger.ERROR_THRESHOLD, "ai"), 0.0) is Admission.QUEUED
    q.finish(q.next()[1], 1.0)
    assert q.submit(TriggerEvent(Trigger.ERROR_THRESHOLD, "ai"), 30.0) is Admission.COOLING_DOWN
    assert q.submit(TriggerEvent(Trigger.ANOMALY, "ai"), 30.0) is Admission.COOLING_DOWN
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 30.0) is Admission.QUEUED
    q.finish(q.next()[1], 31.0)
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 60.0) is Admission.COOLING_DOWN
    assert q.submit(TriggerEvent(Trigger.HEALTH_CHECK_FAILED, "ai"), 60.0) is Admission.QUEUED
    q.finish(q.next()[1], 61.0)
    # each alarm's cool-down runs from its own run's end
    assert q.submit(TriggerEvent(Trigger.ANOMALY, "ai"), 121.0) is Admission.QUEUED
    assert q.submit(TriggerEvent(Trigger.CIRCUIT_OPEN, "ai"), 121.0) is Admission.COALESCED
    q.finish(q.next()[1], 122.0)
    assert q.cooling_down("ai", Trigger.CIRCUIT_OPEN, 150.0)
    assert not q.cooling_down("ai", Trigger.CIRCUIT_OPEN, 151.0)


def test_a_trigger_without_a_workflow_is_said_so():
    assert queue().submit(TriggerEvent(Trigger.ANOMALY, "ai"), 0.0) is Admission.NO_WORKFLOW
