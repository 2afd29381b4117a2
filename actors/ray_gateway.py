"""The gateway to Ray: the namespace, starting or joining a cluster, and the calls every
actor needs on another (tell the orchestrator, restart a named actor). Modules that only need
these import them from here, not from Ray."""

from __future__ import annotations

import logging
import os

import ray

from healing.orchestration import TriggerEvent

__all__ = ["NAMESPACE", "init_ray", "restart_actor", "tell_orchestrator"]

_log = logging.getLogger("selfheal.ray")

NAMESPACE = "selfheal"


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             private: bool = False) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a quiet local Ray; ``private``
    always starts a new local one, whatever ``RAY_ADDRESS`` says (the demo's)."""
    if ray.is_initialized():
        return
    # Task events make the GCS grow without bound in long runs.
    os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
    if private:
        address = "local"
    ray.init(address=address or os.environ.get("RAY_ADDRESS"), namespace=NAMESPACE,
             num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)


def restart_actor(path: str) -> None:
    """Kill the named actor ``namespace/name`` so that Ray restarts it (its max_restarts)."""
    namespace, _, name = path.rpartition("/")
    ray.kill(ray.get_actor(name, namespace=namespace or None), no_restart=False)


def tell_orchestrator(name: str | None, event: TriggerEvent) -> bool:
    """Hand ``event`` to the orchestrator named ``name``, fire and forget: whoever raises a
    trigger (a circuit, a health check, the monitor) never waits for a recovery. False, and
    logged, when there is no such orchestrator; the caller keeps the trigger in its own
    records either way."""
    if name is None:
        return False
    try:
        orch = ray.get_actor(name, namespace=NAMESPACE)
        orch.trigger.remote(event)
    except Exception:  # not running (ValueError), or Ray itself is going away
        _log.warning("%s on %s: no orchestrator %r is running to heal it",
                     event.trigger.value, event.service, name)
        return False
    return True
