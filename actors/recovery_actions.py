"""Recovery steps carried out on the running system, and the evidence their criteria need.

What each built-in step does is decided in :mod:`healing.recovery` (the simulator uses the
same plan); :class:`LiveEffects` only carries the planned effects out here, and
:class:`LiveEvidence` reads what the core judges criteria by. An action runner is
``async (ctx) -> result`` and raises on failure; the orchestrator times it out, audits it and
measures it. :func:`builtin_actions` provides:

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from healing import Clock, SystemClock
from healing.orchestration import TriggerEvent
from healing.recovery import (
    Effect,
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
    describe,
    error_rate_below,
    plan_step,
)
from healing.retry import Retrier
from healing.workflow import Criterion, RecoveryStep, RecoveryWorkflow, Trigger

from .alerts import AlertManager
from .cluster_control import ControlBus
from .ray_gateway import restart_actor

__all__ = ["ActionContext", "ActionNotAvailable", "ActionRegistry", "LiveEffects", "LiveEvidence",
           "builtin_actions"]


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


class LiveEffects:
    """Carries out :mod:`healing.recovery`'s effects on the running system, and nothing else:
    every decision (which circuit, which tier, how many replicas, how long to wait between
    retries, when to switch back) was made in the core, the same for the simulator."""

    def __init__(self, *, alerts: AlertManager | None, circuit_for: Callable[[str], Any] | None,
                 probes: Mapping[str, Probe], control: ControlBus | None,
                 clock: Clock) -> None:
        self.alerts, self.circuit_for, self.probes = alerts, circuit_for, probes
        self.control, self.clock = control, clock

    # Every effect the core can plan, and the method that carries it out here.
    HANDLERS: ClassVar[dict[type, str]] = {
        SendAlert: "_alert", RetryProbe: "_retry", RouteTo: "_route", SetCircuit: "_circuit",
        SwitchBack: "_switch_back", WarmCache: "_warm_cache", ScaleTo: "_scale",
        Restart: "_restart"}

    async def apply(self, effect: Effect, step_timeout_s: float) -> dict[str, Any]:
        handler = getattr(self, self.HANDLERS[type(effect)])
        return await handler(effect, step_timeout_s)  # type: ignore[no-any-return]

    async def _alert(self, e: SendAlert, _t: float) -> dict[str, Any]:
        if self.alerts is None:
            raise ActionNotAvailable("alert needs an alert router")
        sent = self.alerts.trigger(e.service, e.severity, e.channel, e.summary,
                                   dedup_key=e.dedup_key, details=dict(e.details))
        return {"dedup_key": sent.dedup_key, "channels": list(sent.channels)}

    async def _retry(self, e: RetryProbe, _t: float) -> dict[str, Any]:
        probe = self.probes.get(e.service)
        if probe is None:
            raise ActionNotAvailable(f"no probe registered for {e.service!r}")
        attempts = []

        async def once() -> Any:
            attempts.append(1)
            return await _call(probe)
        await Retrier(e.policy, self.clock).acall(once)
        return {"attempts": len(attempts)}

    async def _route(self, e: RouteTo, _t: float) -> dict[str, Any]:
        if self.control is None:
            raise ActionNotAvailable("fallback {tier} needs Redis (the cluster's routes)")
        if e.tier is None:
            return {"route": None, "cleared": self.control.clear_route(e.service)}
        return {"route": e.tier, "processes": self.control.set_route(e.service, e.tier,
                                                                    e.reason, e.for_s)}

    async def _circuit(self, e: SetCircuit, _t: float) -> dict[str, Any]:
        if self.circuit_for is None:
            raise ActionNotAvailable("fallback {provider} needs the circuit actors")
        actor = self.circuit_for(e.circuit)
        now = self.clock.wall()
        until = None if e.trial_after_s is None else now + e.trial_after_s
        view = await (actor.force_open.remote(now, e.reason, until) if e.open
                      else actor.reset.remote(now, e.reason))
        return {"circuit": e.circuit, "state": view["state"]}

    async def _switch_back(self, e: SwitchBack, _t: float) -> dict[str, Any]:
        """Switch back by itself once the primary answers its probe again."""
        probe = self.probes.get(f"{e.service}:{e.provider}" if e.provider else e.service)
        if probe is None:
            return {"switches_back": False}

        async def back() -> None:
            await self.apply(e.then, 0.0)
        task = asyncio.get_running_loop().create_task(
            _switch_back(probe, e.every_s, back, self.clock))
        _WATCHES.add(task)
        task.add_done_callback(_WATCHES.discard)
        return {"switches_back": True}

    async def _warm_cache(self, e: WarmCache, _t: float) -> dict[str, Any]:
        if self.control is None:
            raise ActionNotAvailable("cache_warm needs Redis (the cluster's control channel)")
        return await self.control.warm_cache(e.service, ttl_s=e.ttl_s, timeout_s=e.timeout_s,
                                             operations=list(e.operations)
                                             if e.operations else None)

    async def _scale(self, e: ScaleTo, step_timeout_s: float) -> dict[str, Any]:
        from .serve_control import replica_count, scale_deployment  # noqa: PLC0415

        current = replica_count(e.deployment)
        wanted = e.target(current)
        await scale_deployment(e.deployment, wanted, step_timeout_s, self.clock)
        return {"deployment": e.deployment, "from": current, "to": wanted}

    async def _restart(self, e: Restart, step_timeout_s: float) -> dict[str, Any]:
        if e.actor:  # a named actor: Ray restarts it (max_restarts)
            restart_actor(e.actor)
            return {"actor": e.actor}
        from .serve_control import restart_deployment  # noqa: PLC0415

        return await restart_deployment(str(e.deployment), e.delay_s, e.graceful,
                                        step_timeout_s, self.clock)


def builtin_actions(*, alerts: AlertManager | None, circuit_for: Callable[[str], Any] | None,
                    probes: Mapping[str, Probe], control: ControlBus | None = None,
                    policy: RecoveryPolicy | None = None,
                    primaries: Mapping[str, str] | None = None,
                    page_gate: Callable[[SendAlert], SendAlert] | None = None
                    ) -> ActionRegistry:
    """The seed's six actions, each planned by the core and carried out by
    :class:`LiveEffects`. ``primaries`` names services' primary providers (for a fallback
    whose trigger names no circuit); ``page_gate`` turns an alert that would page into a
    ticket unless the two-key pager agrees (``actors.paging``), except for a manual run."""
    policy = policy or RecoveryPolicy()
    primaries = dict(primaries or {})
    reg = ActionRegistry()

    async def planned(ctx: ActionContext) -> dict[str, Any]:
        live = LiveEffects(alerts=alerts, circuit_for=circuit_for, probes=probes,
                           control=control, clock=ctx.clock)
        try:
            effects = plan_step(ctx.step, ctx.workflow, ctx.event, policy,
                                primaries.get(ctx.workflow.service))
        except NoCircuit as exc:
            raise ActionNotAvailable(str(exc)) from None
        if page_gate is not None and ctx.event.trigger is not Trigger.MANUAL:
            effects = tuple(page_gate(e) if isinstance(e, SendAlert) else e for e in effects)
        result: dict[str, Any] = {"effects": [describe(e) for e in effects]}
        for effect in effects:
            result.update(await live.apply(effect, ctx.step.timeout_s))
        return result

    for name in ("retry", "fallback", "scale", "restart"):
        reg.register(name, planned)
    if alerts is not None:
        reg.register("alert", planned)
    if control is not None:
        reg.register("cache_warm", planned)
    return reg


_WATCHES: set[asyncio.Task[None]] = set()  # keeps switch-back tasks alive until they end


async def _switch_back(probe: Probe, every_s: float, back: Callable[[], Awaitable[Any]],
                       clock: Clock, limit: int = 10_000) -> None:
    """Probe the primary every ``every_s``; switch traffic back the first time it answers."""
    for _ in range(limit):
        await clock.asleep(every_s)
        try:
            await _call(probe)
        except Exception:
            continue
        await back()
        return


class LiveEvidence:
    """What the running system shows about a service, for the core to judge criteria by.

    ``error_rate_below`` reads the service's metric stream: events in the last ``window_s``,
    successes re-weighted by the recorder's sample rate (errors are always recorded), judged
    by :func:`healing.recovery.error_rate_below` (no events: no evidence of health).
    """

    def __init__(self, answering: Callable[[str], Probe | None], health_monitor: Any = None,
                 redis_url: str | None = None, sample_rate: float = 0.1,
                 clock: Clock | None = None) -> None:
        self.answering = answering  # service -> a probe of it as its callers see it, or None
        self.health_monitor = health_monitor
        self.redis_url = redis_url
        self.sample_rate = sample_rate
        self.clock = clock or SystemClock()

    async def holds(self, criterion: Criterion, service: str) -> bool:
        if criterion.kind == "probe_succeeds":
            probe = self.answering(service)
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
            errors, calls = self.counts(service, float(criterion.params["window_s"]),
                                        self.clock.wall())
            return error_rate_below(errors, calls, float(criterion.params["threshold"]))
        return False  # a criterion nobody can evaluate is not met

    def counts(self, service: str, window_s: float, now: float) -> tuple[float, float]:
        """Errors and calls (successes re-weighted by the sample rate) in the window."""
        return self.windows(service, (window_s,), now)[0]

    def windows(self, service: str, windows_s: tuple[float, ...], now: float
                ) -> list[tuple[float, float]]:
        """:meth:`counts` for each window ending ``now``, from one read of the stream."""
        from .stores.metric_stream import first_id, read_events  # noqa: PLC0415
        from .stores.redis_conn import connect  # noqa: PLC0415

        # from the longest window's start only: the whole stream (up to its cap of 10,000
        # entries) took 400 ms to read and parse here, per service and beat of the
        # error-threshold watch, on the orchestrator's event loop; the window, 5 ms
        events = read_events(connect(self.redis_url), service,  # type: ignore[arg-type]
                             first=first_id(now - max(windows_s)))
        out = []
        for window_s in windows_s:
            recent = [e for e in events if e[0] >= now - window_s]
            errors = sum(1 for e in recent if not e[2] or e[3] is not None)
            successes = len(recent) - errors
            out.append((float(errors), errors + successes / max(self.sample_rate, 1e-9)))
        return out


async def _call(probe: Probe) -> Any:
    """Probes may be plain or async (a Serve handle must be awaited on an event loop)."""
    result = probe()
    return await result if inspect.isawaitable(result) else result
