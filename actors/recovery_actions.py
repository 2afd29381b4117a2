"""What recovery steps do in the world, and how their success criteria are judged.

An action runner is ``async (ctx) -> result`` and raises on failure; the orchestrator times
it out, audits it and measures it. :func:`builtin_actions` provides:

* ``alert``: an alert through :class:`~actors.alerts.AlertManager` (dedup key per workflow
  and service, so a re-run re-raises the same alert);
* ``retry``: the service's registered probe, under the core's retry policy;
* ``fallback`` with ``provider``: moves traffic off the failing provider cluster-wide by
  forcing its circuit open (every process's guard then answers from the next tier, the
  alternative provider); ``provider: primary`` (a rollback) resets the circuit;
* ``fallback`` with ``tier`` (or ``read_replica: true``, short for the tier
  ``alternative_provider:read_replica``): routes the service's traffic to that tier in every
  process (:mod:`actors.cluster_control`); ``tier: primary`` (a rollback) clears the route;
* both forms switch back on their own once the service's primary probe answers again
  (every ``recheck_s``, default 10 s);
* ``cache_warm``: shares every process's recent good answers (at most ``ttl_s`` old) for the
  service with every process's fallback cache; never for a prescriptive workflow;
* ``scale``: a Ray Serve deployment (``deployment: app/name``, default the service name)
  to ``+1``, ``-1`` or an absolute count, within ``min``/``max``;
* ``restart``: a Serve deployment's replicas, gracefully (see ``serve_control``), or a named
  actor (``actor: namespace/name``).

A deployment adds its own with :meth:`ActionRegistry.register`; the workflow files validate
their config like the built-in ones (``healing.workflow.register_action``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from healing import Clock, RetryPolicy
from healing.orchestration import TriggerEvent
from healing.retry import Retrier
from healing.workflow import Criterion, RecoveryStep, RecoveryWorkflow

from .alerts import AlertManager
from .cluster_control import ControlBus

__all__ = ["ActionContext", "ActionNotAvailable", "ActionRegistry", "World", "builtin_actions"]


class ActionNotAvailable(RuntimeError):
    """A workflow asked for an action this deployment has no runner for."""


@dataclass(frozen=True)
class ActionContext:
    workflow: RecoveryWorkflow
    event: TriggerEvent
    step: RecoveryStep
    rollback: bool
    clock: Clock


Runner = Callable[[ActionContext], Awaitable[Any]]


class ActionRegistry:
    def __init__(self) -> None:
        self._runners: dict[str, Runner] = {}

    def register(self, name: str, runner: Runner) -> None:
        self._runners[name] = runner

    def names(self) -> set[str]:
        return set(self._runners)

    async def run(self, ctx: ActionContext) -> Any:
        runner = self._runners.get(ctx.step.action)
        if runner is None:
            raise ActionNotAvailable(f"no runner for action {ctx.step.action!r} in this "
                                     f"deployment (have {sorted(self._runners)})")
        return await runner(ctx)


Probe = Callable[[], Any]


def builtin_actions(*, alerts: AlertManager | None, circuit_for: Callable[[str], Any] | None,
                    probes: Mapping[str, Probe],
                    control: ControlBus | None = None) -> ActionRegistry:
    reg = ActionRegistry()

    if alerts is not None:
        async def alert(ctx: ActionContext) -> dict[str, Any]:
            cfg = ctx.step.config
            summary = cfg.get("message") or (f"{ctx.workflow.id}: {ctx.event.trigger.value} "
                                             f"({ctx.event.detail or ctx.event.service})")
            key = cfg.get("dedup_key") or f"{ctx.workflow.id}:{ctx.workflow.service}"
            sent = alerts.trigger(ctx.workflow.service, cfg["severity"], cfg["channel"],
                                  summary, dedup_key=key,
                                  details={"workflow": ctx.workflow.id,
                                           "trigger": ctx.event.trigger.value})
            return {"dedup_key": sent.dedup_key, "channels": list(sent.channels)}
        reg.register("alert", alert)

    async def retry(ctx: ActionContext) -> dict[str, Any]:
        probe = probes.get(ctx.workflow.service)
        if probe is None:
            raise ActionNotAvailable(f"no probe registered for {ctx.workflow.service!r}")
        cfg = ctx.step.config
        policy = RetryPolicy(max_attempts=int(cfg.get("max_attempts", 3)),
                             exponential_base=float(cfg.get("exponential_base", 2)),
                             base_delay_s=float(cfg.get("base_delay_s", 0.1)))
        attempts = []

        async def once() -> Any:
            attempts.append(1)
            return await _call(probe)
        await Retrier(policy, ctx.clock).acall(once)
        return {"attempts": len(attempts)}
    reg.register("retry", retry)

    def watch(probe: Probe | None, every_s: float, back: Callable[[], Awaitable[Any]]) -> bool:
        """Switch back by itself once the primary answers its probe again."""
        if probe is None:
            return False
        task = asyncio.get_running_loop().create_task(_switch_back(probe, every_s, back))
        _WATCHES.add(task)
        task.add_done_callback(_WATCHES.discard)
        return True

    async def fallback(ctx: ActionContext) -> dict[str, Any]:
        cfg, service = ctx.step.config, ctx.workflow.service
        recheck = float(cfg.get("recheck_s", 10.0))
        tier = cfg.get("tier") or ("alternative_provider:read_replica"
                                   if cfg.get("read_replica") else None)
        if tier is not None:
            if control is None:
                raise ActionNotAvailable("fallback {tier} needs Redis (the cluster's routes)")
            if tier == "primary":
                return {"route": None, "cleared": control.clear_route(service)}
            heard = control.set_route(service, str(tier), f"{ctx.workflow.id}: "
                                      f"{ctx.event.trigger.value}")

            async def back() -> None:
                control.clear_route(service)
            return {"route": tier, "processes": heard,
                    "switches_back": watch(probes.get(service), recheck, back)}
        provider, circuit = cfg.get("provider"), ctx.event.detail
        if circuit_for is None or not circuit:
            raise ActionNotAvailable("fallback {provider} moves traffic off the circuit that "
                                     "opened: it needs a circuit_open trigger and circuit actors")
        actor = circuit_for(circuit)
        if provider == "primary":
            view = await actor.reset.remote(time.time(), f"{ctx.workflow.id}: rolled back")
            return {"circuit": circuit, "state": view["state"]}
        view = await actor.force_open.remote(
            time.time(), f"{ctx.workflow.id}: traffic moved to {provider}")

        async def reset() -> None:
            await actor.reset.remote(time.time(),
                                     f"{ctx.workflow.id}: primary recovered, traffic back")
        return {"circuit": circuit, "state": view["state"],
                "switches_back": watch(probes.get(circuit), recheck, reset)}
    reg.register("fallback", fallback)

    if control is not None:
        async def cache_warm(ctx: ActionContext) -> dict[str, Any]:
            cfg = ctx.step.config
            ops = cfg.get("operations")
            # Half the step's time for the two rounds; the rest is the orchestrator's margin.
            return await control.warm_cache(ctx.workflow.service, ttl_s=float(cfg["ttl_s"]),
                                            timeout_s=ctx.step.timeout_s / 2,
                                            operations=list(ops) if ops else None)
        reg.register("cache_warm", cache_warm)

    async def scale(ctx: ActionContext) -> dict[str, Any]:
        from .serve_control import apply_instances, replica_count, scale_deployment  # noqa: PLC0415

        cfg = ctx.step.config
        target = cfg.get("deployment") or ctx.workflow.service
        current = replica_count(target)
        wanted = apply_instances(current, cfg["instances"], int(cfg.get("min", 1)),
                                 int(cfg.get("max", 32)))
        await scale_deployment(target, wanted, ctx.step.timeout_s)
        return {"deployment": target, "from": current, "to": wanted}
    reg.register("scale", scale)

    async def restart(ctx: ActionContext) -> dict[str, Any]:
        cfg = ctx.step.config
        if cfg.get("actor"):  # a named actor: Ray restarts it (max_restarts)
            import ray  # noqa: PLC0415

            namespace, _, name = str(cfg["actor"]).rpartition("/")
            ray.kill(ray.get_actor(name, namespace=namespace or None), no_restart=False)
            return {"actor": cfg["actor"]}
        from .serve_control import restart_deployment  # noqa: PLC0415

        return await restart_deployment(cfg.get("deployment") or ctx.workflow.service,
                                        float(cfg.get("delay_s", 0)),
                                        bool(cfg.get("graceful", True)), ctx.step.timeout_s)
    reg.register("restart", restart)
    return reg


_WATCHES: set[asyncio.Task[None]] = set()  # keeps switch-back tasks alive until they end


async def _switch_back(probe: Probe, every_s: float, back: Callable[[], Awaitable[Any]],
                       limit: int = 10_000) -> None:
    """Probe the primary every ``every_s``; switch traffic back the first time it answers."""
    for _ in range(limit):
        await asyncio.sleep(every_s)
        try:
            await _call(probe)
        except Exception:
            continue
        await back()
        return


class World:
    """Judges success criteria against the running system.

    ``error_rate_below`` reads the service's metric stream: events in the last ``window_s``,
    successes re-weighted by the recorder's sample rate (errors are always recorded). With no
    events in the window there is no evidence of health, so the criterion is not met.
    """

    def __init__(self, probes: Mapping[str, Probe], health_monitor: Any = None,
                 redis_url: str | None = None, sample_rate: float = 0.1) -> None:
        self.probes = probes
        self.health_monitor = health_monitor
        self.redis_url = redis_url
        self.sample_rate = sample_rate

    async def holds(self, criterion: Criterion, service: str) -> bool:
        if criterion.kind == "probe_succeeds":
            probe = self.probes.get(service)
            if probe is None:
                return False
            try:
                await _call(probe)
            except Exception:
                return False
            return True
        if criterion.kind == "health_check_passes" and self.health_monitor is not None:
            status = await self.health_monitor.run_once.remote(criterion.params["check"])
            return bool(status["state"] == "healthy")
        if criterion.kind == "error_rate_below" and self.redis_url is not None:
            rate = self.error_rate(service, float(criterion.params["window_s"]), time.time())
            return rate is not None and rate < float(criterion.params["threshold"])
        return False  # a criterion nobody can evaluate is not met

    def error_rate(self, service: str, window_s: float, now: float) -> float | None:
        from .stores.metric_stream import read_events  # noqa: PLC0415
        from .stores.redis_conn import connect  # noqa: PLC0415

        events = [e for e in read_events(connect(self.redis_url), service)  # type: ignore[arg-type]
                  if e[0] >= now - window_s]
        errors = sum(1 for e in events if not e[2] or e[3] is not None)
        successes = len(events) - errors
        weighted = errors + successes / max(self.sample_rate, 1e-9)
        return None if weighted == 0 else errors / weighted


async def _call(probe: Probe) -> Any:
    """Probes may be plain or async (a Serve handle must be awaited on an event loop)."""
    result = probe()
    return await result if inspect.isawaitable(result) else result
