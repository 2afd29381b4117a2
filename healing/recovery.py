"""What a recovery step does, decided once for both worlds.

The executor (:mod:`healing.workflow`) decides which step runs next; this module decides what
each built-in step *does*, as plain values (effects), and how the evidence about a service is
judged. The live orchestrator (``actors.recovery_actions``) and the simulator
(``simulation.recovery_actions``) each interpret these effects in their world and decide nothing of
their own: a simulated replay then heals exactly as production would, which is what makes a
replay an honest gate for promoting a model.

Effects:

* :class:`SendAlert`: page or message someone (deduplicated per workflow and service);
* :class:`RetryProbe`: probe the service's primary under a retry policy;
* :class:`RouteTo`: send the service's traffic to a fallback tier, or back (``tier=None``);
* :class:`SetCircuit`: force a circuit open (traffic leaves the provider) or reset it;
* :class:`SwitchBack`: probe the primary every ``every_s``, and apply ``then`` once it answers;
* :class:`ScaleTo`: a deployment to a replica count (:meth:`ScaleTo.target` does the sum);
* :class:`Restart`: a deployment's replicas (gracefully or not), or a named actor;
* :class:`WarmCache`: share recent good answers across processes (never prescriptive).

Judgements: :class:`ErrorThresholdRule` (when errors raise a trigger: the Wilson lower bound,
so a quiet service needs real evidence) and :func:`error_rate_below` (the success criterion).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import check_count, check_positive
from .errors import ConfigError, SelfHealError
from .orchestration import TriggerEvent
from .retry import RetryPolicy
from .workflow import RecoveryStep, RecoveryWorkflow, Trigger

__all__ = [
    "Effect",
    "ErrorThresholdRule",
    "NoCircuit",
    "RecoveryPolicy",
    "Restart",
    "RetryProbe",
    "RouteTo",
    "ScaleTo",
    "SendAlert",
    "SetCircuit",
    "SwitchBack",
    "WarmCache",
    "circuit_of",
    "describe",
    "error_rate_below",
    "plan_step",
    "wilson_lower",
    "wilson_upper",
]

READ_REPLICA_TIER = "alternative_provider:read_replica"


@dataclass(frozen=True)
class RecoveryPolicy:
    """The defaults a step's config does not set, the same in both worlds."""

    retry_max_attempts: int = 3
    retry_exponential_base: float = 2.0
    retry_base_delay_s: float = 1.0
    recheck_s: float = 10.0  # switch-back probes after a fallback
    scale_min: int = 1
    scale_max: int = 32

    def __post_init__(self) -> None:
        check_count("retry_max_attempts", self.retry_max_attempts)
        check_positive("retry_base_delay_s", self.retry_base_delay_s)
        check_positive("recheck_s", self.recheck_s)
        check_count("scale_min", self.scale_min)
        check_count("scale_max", self.scale_max, self.scale_min)
        if not self.retry_exponential_base >= 1:
            raise ConfigError("retry_exponential_base", self.retry_exponential_base,
                              "must be at least 1")


class NoCircuit(SelfHealError):
    """A ``fallback: {provider}`` step with no circuit to move traffic off."""


# -- effects ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendAlert:
    service: str
    severity: str
    channel: str
    summary: str
    dedup_key: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RetryProbe:
    service: str
    policy: RetryPolicy


@dataclass(frozen=True, slots=True)
class RouteTo:
    service: str
    tier: str | None  # None: back to the primary
    reason: str = ""
    # the route ends by itself after this long (see SetCircuit.trial_after_s); None: never
    for_s: float | None = None


@dataclass(frozen=True, slots=True)
class SetCircuit:
    circuit: str  # "service:provider"
    open: bool  # True: forced open (traffic leaves); False: reset
    reason: str
    # A forced open that ends by itself: after this long the breaker lets its trial calls
    # through (half-open), so the primary gets its traffic back when it answers, whether or
    # not anything can probe it. None: open until reset.
    trial_after_s: float | None = None

    @property
    def provider(self) -> str:
        return self.circuit.split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class SwitchBack:
    service: str
    provider: str | None  # the provider whose answer means "back"; None: the service's own
    every_s: float
    then: RouteTo | SetCircuit


@dataclass(frozen=True, slots=True)
class ScaleTo:
    deployment: str
    instances: str  # "+1", "-1" or "3"
    min: int
    max: int

    def target(self, current: int) -> int:
        text = self.instances.strip()
        wanted = current + int(text) if text[0] in "+-" else int(text)
        return max(self.min, min(self.max, wanted))


@dataclass(frozen=True, slots=True)
class Restart:
    deployment: str | None
    actor: str | None  # "namespace/name": a named actor, restarted by Ray
    graceful: bool
    delay_s: float


@dataclass(frozen=True, slots=True)
class WarmCache:
    service: str
    ttl_s: float
    operations: tuple[str, ...] | None
    timeout_s: float


Effect = SendAlert | RetryProbe | RouteTo | SetCircuit | SwitchBack | ScaleTo | Restart | \
    WarmCache


def describe(effect: Effect) -> dict[str, Any]:
    """An effect as plain JSON values, as each world records it in the step's result (so the
    audit trail says what a step did, and the two worlds can be compared)."""
    out: dict[str, Any] = {"effect": type(effect).__name__}
    for f in dataclasses.fields(effect):
        v = getattr(effect, f.name)
        if isinstance(v, RouteTo | SetCircuit):
            v = describe(v)
        elif isinstance(v, RetryPolicy):
            v = {"max_attempts": v.max_attempts, "base_delay_s": v.base_delay_s,
                 "exponential_base": v.exponential_base}
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, Mapping):
            v = dict(v)
        out[f.name] = v
    return out


def circuit_of(event: TriggerEvent, service: str, primary: str | None) -> str:
    """The circuit a ``fallback: {provider}`` step moves traffic off: the one a circuit or
    health trigger names, else the service's primary's."""
    named = event.trigger in (Trigger.CIRCUIT_OPEN, Trigger.HEALTH_CHECK_FAILED)
    if named and ":" in (event.detail or ""):
        return event.detail
    if primary:
        return f"{service}:{primary}"
    raise NoCircuit("fallback {provider} moves traffic off the circuit that opened: it needs "
                    "a circuit_open trigger naming it, or the service's primary provider")


def plan_step(step: RecoveryStep, workflow: RecoveryWorkflow, event: TriggerEvent,
              policy: RecoveryPolicy, primary: str | None = None) -> tuple[Effect, ...]:
    """What a built-in step does, in order. Raises :class:`NoCircuit`, or KeyError for an
    action that is not built in (a deployment's own runs in its own runner)."""
    cfg, service = step.config, workflow.service
    if step.action == "alert":
        summary = cfg.get("message") or (f"{workflow.id}: {event.trigger.value} "
                                         f"({event.detail or service})")
        return (SendAlert(service, str(cfg["severity"]), str(cfg["channel"]), summary,
                          cfg.get("dedup_key") or f"{workflow.id}:{service}",
                          {"workflow": workflow.id, "trigger": event.trigger.value}),)
    if step.action == "retry":
        return (RetryProbe(service, RetryPolicy(
            max_attempts=int(cfg.get("max_attempts", policy.retry_max_attempts)),
            exponential_base=float(cfg.get("exponential_base", policy.retry_exponential_base)),
            base_delay_s=float(cfg.get("base_delay_s", policy.retry_base_delay_s)))),)
    if step.action == "fallback":
        return _fallback(cfg, workflow, event, policy, primary)
    if step.action == "cache_warm":
        ops = cfg.get("operations")
        # Half the step's time for the two rounds; the rest is the driver's margin.
        return (WarmCache(service, float(cfg["ttl_s"]), tuple(ops) if ops else None,
                          step.timeout_s / 2),)
    if step.action == "scale":
        return (ScaleTo(str(cfg.get("deployment") or service), str(cfg["instances"]),
                        int(cfg.get("min", policy.scale_min)),
                        int(cfg.get("max", policy.scale_max))),)
    if step.action == "restart":
        actor = str(cfg["actor"]) if cfg.get("actor") else None
        return (Restart(None if actor else str(cfg.get("deployment") or service), actor,
                        bool(cfg.get("graceful", True)), float(cfg.get("delay_s", 0))),)
    raise KeyError(step.action)


def _fallback(cfg: Mapping[str, Any], workflow: RecoveryWorkflow, event: TriggerEvent,
              policy: RecoveryPolicy, primary: str | None) -> tuple[Effect, ...]:
    service = workflow.service
    every = float(cfg.get("recheck_s", policy.recheck_s))
    tier = cfg.get("tier") or (READ_REPLICA_TIER if cfg.get("read_replica") else None)
    if tier is not None:
        if tier == "primary":  # a rollback: traffic back
            return (RouteTo(service, None, f"{workflow.id}: rolled back"),)
        return (RouteTo(service, str(tier), f"{workflow.id}: {event.trigger.value}",
                        for_s=every),
                SwitchBack(service, None, every, RouteTo(service, None,
                                                         "primary recovered, traffic back")))
    circuit = circuit_of(event, service, primary)
    if cfg.get("provider") == "primary":
        return (SetCircuit(circuit, False, f"{workflow.id}: rolled back"),)
    provider = circuit.split(":", 1)[1]
    # The switch-back below needs a probe of the primary, which a deployment may not have;
    # the breaker's own trial calls after ``every`` seconds bring the traffic back either way.
    return (SetCircuit(circuit, True, f"{workflow.id}: traffic moved to {cfg['provider']}",
                       trial_after_s=every),
            SwitchBack(service, provider, every,
                       SetCircuit(circuit, False, f"{workflow.id}: primary recovered, "
                                                  "traffic back")))


# -- judgements -------------------------------------------------------------------------------

def wilson_lower(errors: float, calls: float, z: float) -> float:
    """The Wilson score interval's lower bound for a rate of ``errors`` in ``calls``."""
    if calls <= 0:
        return 0.0
    p = min(1.0, errors / calls)
    denom = 1 + z * z / calls
    centre = p + z * z / (2 * calls)
    margin = z * math.sqrt(p * (1 - p) / calls + z * z / (4 * calls * calls))
    # In [0, p] by its algebra; rounding can put it a hair outside (1e-19 above 0 errors).
    return min(p, max(0.0, (centre - margin) / denom))


def wilson_upper(errors: float, calls: float, z: float) -> float:
    """The Wilson score interval's upper bound: 1 for no calls (no evidence either way)."""
    if calls <= 0:
        return 1.0
    return 1.0 - wilson_lower(calls - min(errors, calls), calls, z)


@dataclass(frozen=True)
class ErrorThresholdRule:
    """When a service's errors raise an ``error_threshold`` trigger: over ``window_s``, at
    least ``min_calls`` calls, and the one-sided lower confidence bound of the error rate
    (Wilson, ``z``: 2.326 is 99 %) above ``threshold``. A quiet service then needs real
    evidence, not two failures in three calls.

    And the errors must still be happening: over the last ``recent_s`` of the window (a
    sixth of it), the rate's *upper* bound must be above the threshold too, as in the
    multiwindow alerts of Google's SRE workbook (a long window for evidence, a short one so
    that an alert stops once the problem has). A 30 s window still holds the errors of a
    failure that ended 20 s ago: in a chaos run a workflow started 34 s after the provider
    came back, when only errors from before its breakers closed were left to trigger it, and
    forced the healthy provider open for 10 s, failing its life-critical requests
    (docs/chaos.md). The short window's upper bound, not its rate, so that a few calls (a
    quiet service) never hold back a trigger the long window has evidence for; no recent
    calls, none."""

    threshold: float
    window_s: float = 30.0
    min_calls: int = 10
    z: float = 2.326
    recent_share: float = 1.0 / 6.0

    @property
    def recent_s(self) -> float:
        return self.window_s * self.recent_share

    def fires(self, errors: float, calls: float, recent_errors: float | None = None,
              recent_calls: float | None = None) -> bool:
        """``errors`` in ``calls`` over the window, and (if known) ``recent_errors`` in
        ``recent_calls`` over its last ``recent_s``."""
        if not (calls >= self.min_calls and wilson_lower(errors, calls, self.z) > self.threshold):
            return False
        if recent_calls is None or recent_errors is None:
            return True
        return wilson_upper(recent_errors, recent_calls, self.z) > self.threshold

    def describe(self, errors: float, calls: float) -> str:
        return (f"error rate {errors / calls:.0%} ({errors:.0f} of {calls:.0f}) over "
                f"{self.window_s:g} s; its lower confidence bound is above "
                f"{self.threshold:.0%}")


def error_rate_below(errors: float, calls: float, threshold: float) -> bool:
    """The ``error_rate_below`` success criterion: no calls is no evidence of health."""
    return calls > 0 and errors / calls < threshold
