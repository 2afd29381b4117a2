"""The ``default`` policy: how a scenario's services are guarded, watched and healed.

It is the configuration a deployment would start from, built for any set of services rather
than tuned to the scenario library:

* breakers: a 30 s time window, at least 10 calls, open at 50 % failures, 30 s in OPEN,
  3 trial calls (the shipped defaults count 100 calls, which at 1 request/s is 100 s of
  harm before anything trips);
* fallback: the shipped strategies where a service has one; otherwise the service's other
  providers in order, then (never for prescriptive services) cached answers up to 5 min old;
  no fallback at all for a critical service or a life-critical one;
* health checks every 5 s on each of a service's providers, unhealthy after 3 failures in a
  row (only the primary's failure starts a workflow; an alternative's is an alert);
* error threshold: checked every 5 s over the last 30 s, raised when the 99 % lower
  confidence bound of the error rate passes ``max(10 %, 3 x the service's normal rate)``,
  so a low-traffic service needs real evidence and a noisy one its own bar;
* the predictive monitor (``learning.monitor``) on each service's error rate in 10 s buckets;
  its anomalies are triggers like the others (the error-threshold workflow answers them);
* workflows: a service with a shipped workflow (its runbook) gets it for every trigger (a
  circuit opening, a failed health check and an error threshold are three views of one
  trouble, and after one run the cool-down would silence the others anyway); every other
  service gets a generic workflow per trigger: move traffic to the next provider and alert
  when a circuit opens (alert and keep probing when there is nowhere to go, or the service
  is critical); reconnect, then restart, when a health check fails; when errors climb, move
  to the next provider if there is one, or else scale, then restart; when a recurring
  failure is due (``learning.patterns``, refitted hourly on the run's own detections), a
  graceful restart five minutes before it.
"""

from __future__ import annotations

import dataclasses

from healing.config import CircuitConfig, FallbackTier, TierMethod, WindowType
from healing.fallback import FallbackStrategy
from healing.health import HealthPolicy
from healing.integrity import AllOf, ConfidenceFloor, RequiredFields
from healing.safety import CRITICAL_SERVICES, ClinicalContext, Criticality, OperationType
from healing.strategies import default_strategies
from healing.workflow import (
    Criterion,
    FailureAction,
    Priority,
    RecoveryStep,
    RecoveryWorkflow,
    Trigger,
)
from healing.workflow_files import load_workflows
from learning.policy import Policy

from .scenario import Scenario, ServiceSpec

__all__ = ["Policy", "default_policy"]  # Policy lives in learning.policy: both worlds use it

_PRIORITY = {Criticality.LIFE_CRITICAL: Priority.CRITICAL, Criticality.HIGH: Priority.HIGH,
             Criticality.MEDIUM: Priority.MEDIUM, Criticality.LOW: Priority.LOW}


def default_policy(scenario: Scenario) -> Policy:
    shipped_strategies = {s.service: s for s in default_strategies()}
    strategies = []
    for name, spec in scenario.services.items():
        if _fail_safe(name, spec):
            continue
        strategies.append(shipped_strategies.get(name) or _generic_strategy(spec))
    shipped = {w.service: w for w in load_workflows() if w.service in scenario.services}
    flows = []
    for name, spec in scenario.services.items():
        for trigger, build in ((Trigger.CIRCUIT_OPEN, _on_circuit_open),
                               (Trigger.HEALTH_CHECK_FAILED, _on_health_check_failed),
                               (Trigger.ERROR_THRESHOLD, _on_error_threshold),
                               (Trigger.ANOMALY, _on_error_threshold)):
            if name in shipped:  # a service's own runbook answers whatever raised the alarm
                flows.append(dataclasses.replace(shipped[name], trigger=trigger))
            else:
                flows.append(build(spec, _fail_safe(name, spec)))
    flows += [_on_predicted(spec) for spec in scenario.services.values()]
    return Policy(
        circuit=CircuitConfig(window_type=WindowType.TIME, window_size=30,
                              minimum_number_of_calls=10, failure_rate_threshold=0.5,
                              wait_in_open_s=30.0, permitted_calls_in_half_open=3),
        health=HealthPolicy(interval_s=5.0, timeout_s=2.0, fall=3, rise=2),
        strategies=tuple(strategies), workflows=tuple(flows),
        error_thresholds={n: max(0.10, 3 * s.error_rate) for n, s in scenario.services.items()})


def _fail_safe(name: str, spec: ServiceSpec) -> bool:
    return name in CRITICAL_SERVICES or spec.criticality is Criticality.LIFE_CRITICAL


def _generic_strategy(spec: ServiceSpec) -> FallbackStrategy:
    tiers = [FallbackTier(i + 1, TierMethod.ALTERNATIVE_PROVIDER, provider=p)
             for i, p in enumerate(spec.providers[1:])]
    if spec.operation is not OperationType.PRESCRIPTIVE:
        tiers.append(FallbackTier(len(tiers) + 1, TierMethod.CACHED_DATA,
                                  max_staleness_s=300.0, stale_data_warning=True))
    return FallbackStrategy(
        service=spec.name, tiers=tuple(tiers),
        integrity_check=AllOf(RequiredFields("answer"), ConfidenceFloor(0.7)),
        stale_data_warning=True, operation_types=frozenset({spec.operation}),
        description=f"generic: {spec.name}'s other providers, then cached answers")


def _context(spec: ServiceSpec) -> ClinicalContext:
    return ClinicalContext(spec.operation, spec.criticality)


def _flow(spec: ServiceSpec, trigger: Trigger, steps: tuple[RecoveryStep, ...],
          rollback: tuple[RecoveryStep, ...] = (), timeout_s: float = 120.0) -> RecoveryWorkflow:
    return RecoveryWorkflow(f"{trigger.value}:{spec.name}", trigger, spec.name, steps, rollback,
                            timeout_s, _PRIORITY[spec.criticality], _context(spec))


def _alert(spec: ServiceSpec) -> RecoveryStep:
    severity = "critical" if spec.criticality in (Criticality.LIFE_CRITICAL,
                                                 Criticality.HIGH) else "high"
    return RecoveryStep("alert", {"severity": severity, "channel": "pager"
                                  if severity == "critical" else "slack"}, timeout_s=5)


def _on_circuit_open(spec: ServiceSpec, fail_safe: bool) -> RecoveryWorkflow:
    if fail_safe or len(spec.providers) == 1:
        # nothing to move traffic to: tell people and wait for the primary
        return _flow(spec, Trigger.CIRCUIT_OPEN, (
            _alert(spec),
            RecoveryStep("retry", {"max_attempts": 3, "probe": True},
                         (Criterion("probe_succeeds"),), timeout_s=30)))
    return _flow(spec, Trigger.CIRCUIT_OPEN, (
        RecoveryStep("fallback", {"provider": spec.providers[1]}, timeout_s=10),
        _alert(spec)))


def _on_health_check_failed(spec: ServiceSpec, fail_safe: bool) -> RecoveryWorkflow:
    return _flow(spec, Trigger.HEALTH_CHECK_FAILED, (
        RecoveryStep("retry", {"max_attempts": 3}, (
            Criterion("health_check_passes", {"check": spec.name}),), timeout_s=10),
        RecoveryStep("restart", {"graceful": True, "delay_s": 10},
                     (Criterion("probe_succeeds"),), timeout_s=30),
        _alert(spec)))


def _on_error_threshold(spec: ServiceSpec, fail_safe: bool) -> RecoveryWorkflow:
    if len(spec.providers) > 1 and not fail_safe:
        # errors from a service with somewhere else to go: move there first (it switches
        # back by itself once the primary answers); restarting it may not be the cure
        return _flow(spec, Trigger.ERROR_THRESHOLD, (
            RecoveryStep("fallback", {"provider": spec.providers[1]}, timeout_s=10),
            _alert(spec)))
    return _flow(spec, Trigger.ERROR_THRESHOLD, (
        _alert(spec),
        RecoveryStep("scale", {"instances": "+1"}, timeout_s=30),
        RecoveryStep("restart", {"graceful": True, "delay_s": 30},
                     (Criterion("error_rate_below", {"threshold": 0.05, "window_s": 20}),),
                     FailureAction.ROLLBACK, timeout_s=60)),
        rollback=(RecoveryStep("scale", {"instances": "-1"}, timeout_s=30),), timeout_s=150)


def _on_predicted(spec: ServiceSpec) -> RecoveryWorkflow:
    """Ahead of a recurring failure: recycle the service's processes and pools, gracefully."""
    return RecoveryWorkflow(
        f"prevent:{spec.name}", Trigger.PREDICTED, spec.name,
        (RecoveryStep("restart", {"graceful": True, "delay_s": 30}, timeout_s=60),), (), 90.0,
        Priority.LOW, _context(spec))
