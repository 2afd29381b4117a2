"""Recovery workflows (seed 1.1): typed, validated, and executed as a decision machine.

A :class:`RecoveryWorkflow` is an ordered list of :class:`RecoveryStep` — an action, its
config, declarative success criteria and what to do if it fails (continue, abort, roll back)
— with rollback steps, a timeout and a priority. Workflows are validated when built: an
unknown action, a missing config key, a negative timeout or a rollback with nothing to roll
back is a :class:`~healing.errors.ConfigError` naming the field.

:func:`execute` is the one executor. It is a generator that yields commands
(:class:`RunAction`, :class:`CheckCriteria`) and receives their results; a driver carries
them out on wall time (the orchestrator actor), on simulated time (the simulator) or in a
plain loop (tests). Before each step the clinical safety validator clears it for the
service's clinical context; a refused step is skipped and recorded with the reason. Every
step's fate is a :class:`StepRecord`, in order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import _check, as_enum, check_positive
from .errors import ConfigError
from .safety import ClinicalContext, ClinicalSafetyValidator, OperationType, RecoveryAction

__all__ = [
    "ACTIONS",
    "ActionSpec",
    "CheckCriteria",
    "Criterion",
    "FailureAction",
    "Priority",
    "RecoveryStep",
    "RecoveryWorkflow",
    "RunAction",
    "StepOutcome",
    "StepFinished",
    "StepRecord",
    "StepStatus",
    "Trigger",
    "WorkflowResult",
    "execute",
]


class Trigger(enum.Enum):
    CIRCUIT_OPEN = "circuit_open"
    HEALTH_CHECK_FAILED = "health_check_failed"
    ERROR_THRESHOLD = "error_threshold"
    ANOMALY = "anomaly"
    PREDICTED = "predicted"  # a recurring failure is due (learning.patterns)
    MEMORY_GROWTH = "memory_growth"  # memory forecast to reach its limit (learning.resources)
    MANUAL = "manual"


class Priority(enum.IntEnum):
    """Lower runs first."""

    CRITICAL = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3


class FailureAction(enum.Enum):
    CONTINUE = "continue"
    ABORT = "abort"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What an action's config must and may hold."""

    name: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    one_of: frozenset[str] = frozenset()  # at least one of these keys
    # Checks the values once the keys are right; raises ConfigError naming the key.
    check: Callable[[Mapping[str, Any]], None] | None = None


def _check_instances(cfg: Mapping[str, Any]) -> None:
    text = str(cfg["instances"]).strip()
    _check(bool(re.fullmatch(r"[+-]?\d+", text)), "scale.config.instances", cfg["instances"],
           "must be like +1, -1 (relative) or 3 (absolute)")


def _check_fallback(cfg: Mapping[str, Any]) -> None:
    _check(len(cfg.keys() & {"provider", "tier", "read_replica"}) == 1, "fallback.config",
           dict(cfg), "must name exactly one of provider, tier, read_replica")
    for key in ("provider", "tier"):
        if key in cfg:
            _check(isinstance(cfg[key], str) and bool(cfg[key]), f"fallback.config.{key}",
                   cfg[key], "must be a name")
    if "read_replica" in cfg:
        _check(cfg["read_replica"] is True, "fallback.config.read_replica",
               cfg["read_replica"], "must be true")
    if "recheck_s" in cfg:
        check_positive("fallback.config.recheck_s", cfg["recheck_s"])


def _check_cache_warm(cfg: Mapping[str, Any]) -> None:
    check_positive("cache_warm.config.ttl_s", cfg["ttl_s"])
    ops = cfg.get("operations")
    if ops is not None:
        allowed = {o.value for o in OperationType} - {OperationType.PRESCRIPTIVE.value}
        _check(isinstance(ops, list | tuple) and bool(ops) and set(ops) <= allowed,
               "cache_warm.config.operations", ops,
               f"must list some of {sorted(allowed)} (prescriptive answers are never cached)")


# The seed's six actions; deployments add their own with register_action().
ACTIONS: dict[str, ActionSpec] = {
    "retry": ActionSpec("retry", optional=frozenset(
        {"max_attempts", "exponential_base", "base_delay_s", "probe"})),
    "fallback": ActionSpec("fallback", one_of=frozenset({"provider", "read_replica", "tier"}),
                           optional=frozenset({"provider", "read_replica", "tier",
                                               "recheck_s"}), check=_check_fallback),
    "cache_warm": ActionSpec("cache_warm", required=frozenset({"ttl_s"}),
                             optional=frozenset({"operations"}), check=_check_cache_warm),
    "scale": ActionSpec("scale", required=frozenset({"instances"}),
                        optional=frozenset({"deployment", "min", "max"}),
                        check=_check_instances),
    "restart": ActionSpec("restart", optional=frozenset(
        {"graceful", "delay_s", "deployment", "actor"})),
    "alert": ActionSpec("alert", required=frozenset({"severity", "channel"}),
                        optional=frozenset({"message", "dedup_key"})),
}


def register_action(spec: ActionSpec) -> None:
    """Let workflows use a deployment's own action, validated like the built-in ones."""
    _check(isinstance(spec, ActionSpec), "action", spec, "must be an ActionSpec")
    ACTIONS[spec.name] = spec


CRITERIA = {"health_check_passes": {"check"}, "error_rate_below": {"threshold", "window_s"},
            "probe_succeeds": set()}


@dataclass(frozen=True, slots=True)
class Criterion:
    """A declarative success criterion, evaluated by the driver's world."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CRITERIA:
            raise ConfigError("success_criteria.kind", self.kind,
                              f"must be one of {sorted(CRITERIA)}")
        missing = CRITERIA[self.kind] - set(self.params)
        if missing:
            raise ConfigError(f"success_criteria.{self.kind}", dict(self.params),
                              f"is missing {sorted(missing)}")


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    action: str
    config: Mapping[str, Any] = field(default_factory=dict)
    success_criteria: tuple[Criterion, ...] = ()
    failure_action: FailureAction = FailureAction.CONTINUE
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        spec = ACTIONS.get(self.action)
        if spec is None:
            raise ConfigError("action", self.action, f"must be one of {sorted(ACTIONS)}")
        keys = set(self.config)
        missing = spec.required - keys
        if missing:
            raise ConfigError(f"{self.action}.config", dict(self.config),
                              f"is missing {sorted(missing)}")
        if spec.one_of and not spec.one_of & keys:
            raise ConfigError(f"{self.action}.config", dict(self.config),
                              f"needs one of {sorted(spec.one_of)}")
        unknown = keys - spec.required - spec.optional
        if unknown:
            raise ConfigError(f"{self.action}.config", dict(self.config),
                              f"has unknown key(s) {sorted(unknown)}")
        if spec.check is not None:
            spec.check(self.config)
        if not isinstance(self.failure_action, FailureAction):
            object.__setattr__(self, "failure_action", as_enum(FailureAction,
                                                               self.failure_action,
                                                               "failure_action"))
        check_positive("timeout_s", self.timeout_s)


@dataclass(frozen=True, slots=True)
class RecoveryWorkflow:
    id: str
    trigger: Trigger
    service: str
    steps: tuple[RecoveryStep, ...]
    rollback_steps: tuple[RecoveryStep, ...] = ()
    timeout_s: float = 60.0
    priority: Priority = Priority.MEDIUM
    context: ClinicalContext = field(default_factory=ClinicalContext)

    def __post_init__(self) -> None:
        _check(isinstance(self.id, str) and bool(self.id), "id", self.id, "must be a name")
        _check(isinstance(self.service, str) and bool(self.service), "service", self.service,
               "must be a name")
        object.__setattr__(self, "trigger", as_enum(Trigger, self.trigger, "trigger"))
        if not isinstance(self.priority, Priority):
            try:
                object.__setattr__(self, "priority", Priority[str(self.priority).upper()])
            except KeyError:
                raise ConfigError("priority", self.priority,
                                  f"must be one of {[p.name.lower() for p in Priority]}") from None
        check_positive("timeout_s", self.timeout_s)
        _check(len(self.steps) > 0, "steps", self.steps, "must hold at least one step")
        for i, s in enumerate(self.steps):
            _check(s.timeout_s <= self.timeout_s, f"steps[{i}].timeout_s", s.timeout_s,
                   f"must fit in the workflow's timeout_s ({self.timeout_s})")
        wants_rollback = [i for i, s in enumerate(self.steps)
                          if s.failure_action is FailureAction.ROLLBACK]
        if wants_rollback and not self.rollback_steps:
            raise ConfigError(f"steps[{wants_rollback[0]}].failure_action", "rollback",
                              "needs rollback_steps, but the workflow has none")
        if self.rollback_steps and not wants_rollback:
            raise ConfigError("rollback_steps", [s.action for s in self.rollback_steps],
                              "would never run: no step has failure_action rollback")


# -- execution -------------------------------------------------------------------------


class StepStatus(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REFUSED = "refused"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SKIPPED = "skipped"  # never reached: the workflow ended first


@dataclass(frozen=True, slots=True)
class RunAction:
    """Command: run ``step``'s action within ``timeout_s``; send back a StepOutcome."""

    index: int
    step: RecoveryStep
    timeout_s: float
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class CheckCriteria:
    """Command: wait ``wait_s``, then evaluate ``criteria``; send back True if every one holds.

    A criterion over a window of time (``error_rate_below``) judges the window that *follows*
    the step: evidence from before the action cannot show that it worked. ``wait_s`` is the
    longest such window; the executor counts it against the workflow's time.
    """

    index: int
    criteria: tuple[Criterion, ...]
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StepOutcome:
    ok: bool
    result: Any = None
    error: str | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    now: float = 0.0  # the driver's clock when the action ended


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step's fate, for the audit trail and the workflow's history."""

    index: int
    action: str
    status: StepStatus
    config: Mapping[str, Any]
    result: Any
    error: str | None
    duration_s: float
    validation: Mapping[str, Any]
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    workflow_id: str
    service: str
    succeeded: bool
    ended: str  # "completed", "aborted", "rolled_back", "timed_out"
    steps: tuple[StepRecord, ...]


@dataclass(frozen=True, slots=True)
class StepFinished:
    """Notice: a step's record is final (send back nothing). Drivers write it down at once,
    so a driver that dies mid-workflow has already recorded every step that finished."""

    record: StepRecord


Plan = Generator[RunAction | CheckCriteria | StepFinished, Any, WorkflowResult]


def execute(workflow: RecoveryWorkflow, start: float,
            validator: ClinicalSafetyValidator | None = None) -> Plan:
    """Run ``workflow`` from monotonic time ``start``; yields commands, returns the result.

    Every step's record is also yielded as a :class:`StepFinished` as soon as it is final,
    in the order of the result's ``steps``.

    Each step gets ``min(step.timeout_s, time left in the workflow)``. A step succeeds when
    its action succeeds and its success criteria hold. On failure its ``failure_action``
    decides: continue, abort, or roll back (the rollback steps, in reverse order).
    """
    validator = validator if validator is not None else ClinicalSafetyValidator()
    deadline = start + workflow.timeout_s
    records: list[StepRecord] = []
    now = start
    ended = "completed"
    succeeded = True
    for i, step in enumerate(workflow.steps):
        validation = _clear(step, workflow, validator)
        if not validation["allowed"]:
            records.append(StepRecord(i, step.action, StepStatus.REFUSED, step.config, None,
                                      validation["reason"], 0.0, validation))
            yield StepFinished(records[-1])
            continue
        left = deadline - now
        if left <= 0:
            ended, succeeded = "timed_out", False
            yield from _finished(records, _skipped(workflow.steps, i, validation))
            break
        outcome: StepOutcome = yield RunAction(i, step, min(step.timeout_s, left))
        now = max(now, outcome.now)
        ok = outcome.ok and not outcome.timed_out
        if ok and step.success_criteria:
            wait = max((float(c.params["window_s"]) for c in step.success_criteria
                        if c.kind == "error_rate_below"), default=0.0)
            ok = bool((yield CheckCriteria(i, step.success_criteria, wait)))
            now += wait
            error = None if ok else "success criteria not met"
        else:
            error = outcome.error if not ok else None
        status = (StepStatus.SUCCEEDED if ok else
                  StepStatus.TIMED_OUT if outcome.timed_out else StepStatus.FAILED)
        records.append(StepRecord(i, step.action, status, step.config, outcome.result,
                                  error or ("timed out" if outcome.timed_out else None),
                                  outcome.duration_s, validation))
        yield StepFinished(records[-1])
        if ok:
            continue
        if now >= deadline:
            ended, succeeded = "timed_out", False
            yield from _finished(records, _skipped(workflow.steps, i + 1, validation))
            break
        if step.failure_action is FailureAction.CONTINUE:
            succeeded = False
            continue
        succeeded = False
        if step.failure_action is FailureAction.ABORT:
            ended = "aborted"
            yield from _finished(records, _skipped(workflow.steps, i + 1, validation))
            break
        ended = "rolled_back"
        yield from _finished(records, _skipped(workflow.steps, i + 1, validation))
        for j, rb in reversed(list(enumerate(workflow.rollback_steps))):
            out: StepOutcome = yield RunAction(j, rb, rb.timeout_s, rollback=True)
            records.append(StepRecord(j, rb.action, StepStatus.ROLLED_BACK if out.ok
                                      else StepStatus.ROLLBACK_FAILED, rb.config, out.result,
                                      out.error, out.duration_s, {"allowed": True,
                                                                  "rule": "rollback"},
                                      rollback=True))
            yield StepFinished(records[-1])
        break
    return WorkflowResult(workflow.id, workflow.service, succeeded, ended, tuple(records))


_SEED_ACTIONS = frozenset(a.value for a in RecoveryAction)


def _clear(step: RecoveryStep, workflow: RecoveryWorkflow,
           validator: ClinicalSafetyValidator) -> dict[str, Any]:
    """The clinical safety verdict on ``step``, as recorded with it."""
    if step.action not in _SEED_ACTIONS:  # a deployment's own action: its own checks apply
        return {"allowed": True, "rule": "custom action", "reason": ""}
    v = validator.validate_recovery_action(step.action, workflow.context, workflow.service)
    return {"allowed": v.allowed, "rule": v.rule, "reason": v.reason,
            "requires_validation": v.requires_validation}


def _finished(records: list[StepRecord],
              done: list[StepRecord]) -> Generator[StepFinished, Any, None]:
    for rec in done:
        records.append(rec)
        yield StepFinished(rec)


def _skipped(steps: tuple[RecoveryStep, ...], start: int,
             validation: Mapping[str, Any]) -> list[StepRecord]:
    return [StepRecord(k, s.action, StepStatus.SKIPPED, s.config, None, None, 0.0, validation)
            for k, s in enumerate(steps) if k >= start]
