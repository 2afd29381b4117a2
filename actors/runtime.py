"""Finding or creating selfheal's named actors: what a process builds at start.

Actors are named and detached in the ``selfheal`` namespace, so any Serve replica, job or
notebook connected to the cluster reaches the same one; Ray restarts them after a crash
(``max_restarts=-1``) and retries calls that were in flight (``max_task_retries=-1``).
"""

from __future__ import annotations

from typing import Any

from healing.cluster import ClusterPolicy
from healing.config import CircuitConfig
from learning.policy import Policy

from .circuit_actor import CircuitBreakerActor, config_to_dict
from .health_actor import HealthMonitorActor
from .monitor_actor import PredictiveMonitorActor
from .orchestrator_actor import RecoveryOrchestratorActor
from .ray_gateway import NAMESPACE, find_actor, init_ray, named_actor
from .scheduler_actor import TrainingSchedulerActor

__all__ = ["NAMESPACE", "circuit_actor", "circuit_named", "health_monitor", "init_ray",
           "orchestrator", "orchestrator_settings"]

def circuit_actor(name: str, config: CircuitConfig, policy: ClusterPolicy,
                  redis_url: str, audit: dict[str, Any] | None = None,
                  orchestrator: str | None = None) -> Any:
    """The actor for circuit ``name``, created on first use.

    ``audit`` (``spool_dir``, ``database_url``) makes it write every cluster-wide transition
    to the audit trail; ``orchestrator`` names the actor told when the circuit opens."""
    policy_dict = {f: getattr(policy, f) for f in policy.__dataclass_fields__}
    return named_actor(CircuitBreakerActor, f"circuit:{name}", name, config_to_dict(config),
                       policy_dict, redis_url, audit, orchestrator, max_task_retries=-1)


def health_monitor(name: str = "health", orchestrator: str | None = None,
                   redis_url: str | None = None) -> Any:
    """The cluster's health monitor (one per name), created on first use; ``orchestrator``
    names the actor told when a check goes unhealthy. With ``redis_url``, its registered
    checks survive a restart (kept under ``selfheal:{name}``)."""
    return named_actor(HealthMonitorActor, name, None, orchestrator, redis_url,
                       f"selfheal:{name}" if redis_url else None, max_task_retries=-1)


def predictive_monitor(redis_url: str, name: str = "monitor",
                       orchestrator: str | None = "orchestrator", *, start: bool = True,
                       **kwargs: Any) -> Any:
    """The cluster's predictive monitor (one per name), created on first use and, with
    ``start``, reading the metric streams from then on; it tells ``orchestrator`` of every
    anomaly (see :class:`~actors.monitor_actor.PredictiveMonitorActor`)."""
    # started by its constructor, so that Ray's restart of it starts it again, with what
    # its detectors had learnt (saved under selfheal:{name}:detectors)
    kwargs.setdefault("state_key", f"selfheal:{name}:detectors")
    kwargs.setdefault("slo_key", f"selfheal:{name}:slo")
    kwargs.setdefault("memory_key", f"selfheal:{name}:memory")
    return named_actor(PredictiveMonitorActor, name, redis_url, orchestrator,
                       max_task_retries=-1, max_concurrency=100, autostart=start, **kwargs)


def training_scheduler(cron: str, mlflow_uri: str, redis_url: str, history: list[str],
                       name: str = "training-scheduler", *, start: bool = True,
                       **kwargs: Any) -> Any:
    """The cluster's training scheduler (one per name), on ``cron`` (the settings'
    ``training_schedule``); see :class:`~actors.scheduler_actor.TrainingSchedulerActor`."""
    # started by its constructor, so that Ray's restart of it starts it again
    return named_actor(TrainingSchedulerActor, name, cron, mlflow_uri, redis_url, history,
                       max_concurrency=10, autostart=start, **kwargs)


def orchestrator(name: str = "orchestrator", *, policy: Policy | None = None,
                 **kwargs: Any) -> Any:
    """The recovery orchestrator (one per name), created on first use with ``kwargs``
    (see :class:`~actors.orchestrator_actor.RecoveryOrchestratorActor`). With ``policy``, its
    workflows, cool-down, error thresholds and step defaults are the policy's: the same
    object the simulator runs a replay under."""
    if policy is not None:
        kwargs = {**orchestrator_settings(policy), **kwargs}
    workflows = kwargs.pop("workflows", [])
    return named_actor(RecoveryOrchestratorActor, name, workflows, **kwargs)


def circuit_named(name: str) -> Any:
    """The running actor of circuit ``name`` (what a ``fallback`` step forces), or None."""
    return find_actor(f"circuit:{name}")


def orchestrator_settings(policy: Policy) -> dict[str, Any]:
    """What the orchestrator takes from ``policy`` (keyword arguments)."""
    return {"workflows": list(policy.workflows), "cooldown_s": policy.cooldown_s,
            "error_thresholds": {s: (t, policy.error_window_s)
                                 for s, t in policy.error_thresholds.items()},
            "error_min_calls": policy.error_min_calls, "error_z": policy.error_z,
            "recovery": policy.recovery}
