"""The runbooks a service gets when its catalogue declares none of its own.

Both worlds build their policy through here (``learning.policy.policy_from``), so a service
is healed the same way in a replay and in production:

* fallback: the service's strategy file where it has one; otherwise its other providers in
  order, then (never for prescriptive services) cached answers up to 5 min old; no fallback
  at all for a critical service or a life-critical one;
* workflows: a service with workflow files (its runbook) gets them for every trigger (a
  circuit opening, a failed health check, an error threshold and an anomaly are four views of
  one trouble; the orchestrator's cool-down holds back the same alarm, not the service, so
  a trouble that lasts can run it once per alarm in a cool-down); every other
  service gets a generic workflow per trigger: move traffic to the next provider and alert
  when a circuit opens (alert and keep probing when there is nowhere to go, or the service is
  critical); reconnect, then restart, when a health check fails; when errors climb, move to
  the next provider if there is one, or else scale, then restart; when a recurring failure is
  due (``learning.patterns``), a graceful restart five minutes before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from .catalogue import Service
from .config import FallbackTier, TierMethod
from .fallback import FallbackStrategy
from .integrity import AllOf, ConfidenceFloor, RequiredFields
from .safety import CRITICAL_SERVICES, ClinicalContext, Criticality, OperationType
from .workflow import (
    Criterion,
    FailureAction,
    Priority,
    RecoveryStep,
    RecoveryWorkflow,
    Trigger,
)

__all__ = ["fail_safe", "strategies_for", "workflows_for"]

_PRIORITY = {Criticality.LIFE_CRITICAL: Priority.CRITICAL, Criticality.HIGH: Priority.HIGH,
             Criticality.MEDIUM: Priority.MEDIUM, Criticality.LOW: Priority.LOW}
# an operator's manual trigger ("heal this service now") gets what an error threshold gets
_ANSWERED_BY_RUNBOOK = (Trigger.CIRCUIT_OPEN, Trigger.HEALTH_CHECK_FAILED,
                        Trigger.ERROR_THRESHOLD, Trigger.ANOMALY, Trigger.MEMORY_GROWTH,
                        Trigger.MANUAL)


def fail_safe(service: Service) -> bool:
    """A service that never gets a fallback: it fails explicitly, with guidance."""
    return service.name in CRITICAL_SERVICES or service.criticality is Criticality.LIFE_CRITICAL


def strategies_for(services: Mapping[str, Service],
                   declared: Iterable[FallbackStrategy]) -> tuple[FallbackStrategy, ...]:
    """Each service's fallback strategy: its declared one, or the generic one."""
    own = {s.service: s for s in declared}
    return tuple(own.get(name) or _generic_strategy(spec)
                 for name, spec in services.items() if not fail_safe(spec))


def workflows_for(services: Mapping[str, Service],
                  declared: Iterable[RecoveryWorkflow]) -> tuple[RecoveryWorkflow, ...]:
    """Every service's workflows: its runbook for every trigger, or the generic ones."""
    runbook: dict[str, RecoveryWorkflow] = {}
    extra = []
    for w in declared:
        if w.trigger in _ANSWERED_BY_RUNBOOK and w.service not in runbook:
            runbook[w.service] = w
        elif w.trigger not in _ANSWERED_BY_RUNBOOK:
            extra.append(w)  # a declared prevention or manual workflow stands as written
    flows = []
    for name, spec in services.items():
        for trigger, build in ((Trigger.CIRCUIT_OPEN, _on_circuit_open),
                               (Trigger.HEALTH_CHECK_FAILED, _on_health_check_failed),
                               (Trigger.ERROR_THRESHOLD, _on_error_threshold),
                               (Trigger.ANOMALY, _on_error_threshold),
                               (Trigger.MEMORY_GROWTH, _on_memory_growth),
                               (Trigger.MANUAL, _on_error_threshold)):
            if name in runbook:  # a service's own runbook answers whatever raised the alarm
                flows.append(dataclasses.replace(runbook[name], trigger=trigger))
            else:
                flows.append(build(spec, fail_safe(spec), trigger))
    covered = {(w.trigger, w.service) for w in extra}
    flows += extra
    flows += [_on_predicted(s) for s in services.values()
              if (Trigger.PREDICTED, s.name) not in covered]
    return tuple(flows)


def _generic_strategy(spec: Service) -> FallbackStrategy:
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


def _context(spec: Service) -> ClinicalContext:
    return ClinicalContext(spec.operation, spec.criticality)


def _flow(spec: Service, trigger: Trigger, steps: tuple[RecoveryStep, ...],
          rollback: tuple[RecoveryStep, ...] = (), timeout_s: float = 120.0) -> RecoveryWorkflow:
    return RecoveryWorkflow(f"{trigger.value}:{spec.name}", trigger, spec.name, steps, rollback,
                            timeout_s, _PRIORITY[spec.criticality], _context(spec))


def _alert(spec: Service) -> RecoveryStep:
    severity = "critical" if spec.criticality in (Criticality.LIFE_CRITICAL,
                                                 Criticality.HIGH) else "high"
    return RecoveryStep("alert", {"severity": severity, "channel": "pager"
                                  if severity == "critical" else "slack"}, timeout_s=5)


# Each builder takes the trigger it answers, for the one that answers several
# (_on_error_threshold); the others answer their own.

def _on_circuit_open(spec: Service, fail_safe: bool, _: Trigger) -> RecoveryWorkflow:
    if fail_safe or len(spec.providers) == 1:
        # nothing to move traffic to: tell people and wait for the primary
        return _flow(spec, Trigger.CIRCUIT_OPEN, (
            _alert(spec),
            RecoveryStep("retry", {"max_attempts": 3, "probe": True},
                         (Criterion("probe_succeeds"),), timeout_s=30)))
    return _flow(spec, Trigger.CIRCUIT_OPEN, (
        RecoveryStep("fallback", {"provider": spec.providers[1]}, timeout_s=10),
        _alert(spec)))


def _on_health_check_failed(spec: Service, fail_safe: bool, _: Trigger) -> RecoveryWorkflow:
    return _flow(spec, Trigger.HEALTH_CHECK_FAILED, (
        RecoveryStep("retry", {"max_attempts": 3}, (
            Criterion("health_check_passes", {"check": spec.name}),), timeout_s=10),
        RecoveryStep("restart", {"graceful": True, "delay_s": 10},
                     (Criterion("probe_succeeds"),), timeout_s=30),
        _alert(spec)))


def _on_error_threshold(spec: Service, fail_safe: bool, trigger: Trigger) -> RecoveryWorkflow:
    """Climbing errors; also an anomaly (the same alarm, seen by the model rather than the
    bound) and an operator's "heal this now", each under its own trigger."""
    if len(spec.providers) > 1 and not fail_safe:
        # errors from a service with somewhere else to go: move there first (it switches
        # back by itself once the primary answers); restarting it may not be the cure
        return _flow(spec, trigger, (
            RecoveryStep("fallback", {"provider": spec.providers[1]}, timeout_s=10),
            _alert(spec)))
    return _flow(spec, trigger, (
        _alert(spec),
        RecoveryStep("scale", {"instances": "+1"}, timeout_s=30),
        RecoveryStep("restart", {"graceful": True, "delay_s": 30},
                     (Criterion("error_rate_below", {"threshold": 0.05, "window_s": 20}),),
                     FailureAction.ROLLBACK, timeout_s=60)),
        rollback=(RecoveryStep("scale", {"instances": "-1"}, timeout_s=30),), timeout_s=150)


def _on_memory_growth(spec: Service, fail_safe: bool, _: Trigger) -> RecoveryWorkflow:
    """Memory forecast to run out, before any request fails: add a replica so that nothing
    is dropped, then restart gracefully (a fresh process starts from its baseline); take the
    extra replica back if the restart does not help."""
    return _flow(spec, Trigger.MEMORY_GROWTH, (
        RecoveryStep("alert", {"severity": "high", "channel": "slack"}, timeout_s=5),
        RecoveryStep("scale", {"instances": "+1"}, timeout_s=30),
        RecoveryStep("restart", {"graceful": True, "delay_s": 30},
                     (Criterion("error_rate_below", {"threshold": 0.05, "window_s": 20}),),
                     FailureAction.ROLLBACK, timeout_s=60)),
        rollback=(RecoveryStep("scale", {"instances": "-1"}, timeout_s=30),), timeout_s=150)


def _on_predicted(spec: Service) -> RecoveryWorkflow:
    """Ahead of a recurring failure: recycle the service's processes and pools, gracefully."""
    return RecoveryWorkflow(
        f"prevent:{spec.name}", Trigger.PREDICTED, spec.name,
        (RecoveryStep("restart", {"graceful": True, "delay_s": 30}, timeout_s=60),), (), 90.0,
        Priority.LOW, _context(spec))
