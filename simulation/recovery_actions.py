"""Recovery in the simulated world: the real executor, driven on the simulated clock, and one
interpreter of :mod:`healing.recovery`'s effects.

Nothing here decides: which step runs next is the executor's (:func:`healing.workflow.execute`),
what a step does is :func:`healing.recovery.plan_step`'s, and how evidence is judged is
:func:`healing.recovery.error_rate_below`'s, the same functions the live orchestrator uses.
This module only says what each effect physically does to the simulated world and how long
it takes there.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from healing.orchestration import TriggerEvent
from healing.recovery import (
    Effect,
    NoCircuit,
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
from healing.routing import Route
from healing.workflow import (
    CheckCriteria,
    Criterion,
    RecoveryWorkflow,
    RunAction,
    StepFinished,
    StepOutcome,
    StepRecord,
    WorkflowResult,
    execute,
)

from .world import RESTART_WARMUP_S

if TYPE_CHECKING:
    from .engine import Simulation

__all__ = ["WorkflowRun"]

# How long effects take in the simulated world (the live ones take what they take).
_ALERT_S, _ROUTE_S, _WARM_S = 0.2, 0.05, 0.5


class WorkflowRun:
    """One workflow run, driving the real executor with simulated actions."""

    def __init__(self, sim: Simulation, workflow: RecoveryWorkflow, event: TriggerEvent) -> None:
        self.sim, self.workflow, self.event = sim, workflow, event
        self.run_id = f"{workflow.id}#{len(sim.run_summaries) + 1}"
        self.plan = execute(workflow, sim.clock.now(), sim.validator)
        self.summary = {"run_id": self.run_id, "workflow": workflow.id,
                        "service": workflow.service, "trigger": event.trigger.value,
                        "started_s": round(sim.clock.now(), 3)}
        sim.run_summaries.append(self.summary)

    def start(self) -> None:
        self._send(None)

    def _send(self, reply: Any) -> None:
        while True:
            try:
                cmd = self.plan.send(reply)
            except StopIteration as stop:
                self._finish(stop.value)
                return
            if isinstance(cmd, StepFinished):  # written down now, as the live driver does
                self._record(cmd.record)
                reply = None
                continue
            if isinstance(cmd, CheckCriteria):
                if cmd.wait_s > 0:  # judge the window after the step, when it has passed
                    self.sim.after(cmd.wait_s, functools.partial(self._judge, cmd.criteria))
                    return
                reply = all(self._holds(c) for c in cmd.criteria)
                continue
            assert isinstance(cmd, RunAction)
            self.sim.record_step(self, "started", cmd.index, cmd.step.action, cmd.step.config,
                                 None, None, 0.0, None, cmd.rollback)
            _Action(self, cmd).start()
            return

    def _judge(self, criteria: tuple[Criterion, ...]) -> None:
        self._send(all(self._holds(c) for c in criteria))

    def _finish(self, result: WorkflowResult) -> None:
        sim = self.sim
        self.summary.update(ended=result.ended, succeeded=result.succeeded,
                            ended_s=round(sim.clock.now(), 3))
        sim.queue.finish(self.event, sim.clock.now())
        sim._admit()

    def _record(self, rec: StepRecord) -> None:
        self.sim.record_step(self, rec.status.value, rec.index, rec.action, rec.config,
                             rec.result, rec.error, rec.duration_s, dict(rec.validation),
                             rec.rollback)

    def _holds(self, c: Criterion) -> bool:
        """The evidence the simulated world shows, judged as the live system judges it."""
        sim, service = self.sim, self.workflow.service
        now = sim.clock.now()
        if c.kind == "probe_succeeds":
            try:
                r = sim.guard.call(service, sim.caller(service, None),
                                   context=self.workflow.context)
            except Exception:
                return False
            return r is not None
        if c.kind == "health_check_passes":
            check = str(c.params["check"])
            return check in sim.scenario.services and sim.world.probe(check, None, now)
        if c.kind == "error_rate_below":
            window = int(float(c.params["window_s"]))
            log = sim.logs[service]
            sec = int(now)
            calls = sum(log.calls[max(0, sec - window):sec + 1])
            errors = sum(log.errors[max(0, sec - window):sec + 1])
            return error_rate_below(errors, calls, float(c.params["threshold"]))
        return False


class _Action:
    """One step's action in the simulated world: a generator yielding the delays it waits."""

    def __init__(self, run: WorkflowRun, cmd: RunAction) -> None:
        self.run, self.cmd = run, cmd
        self.sim = run.sim
        self.started = self.sim.clock.now()
        self.done = False

    def start(self) -> None:
        self.gen = self._body()
        self.sim.after(self.cmd.timeout_s, self._timeout)
        self._resume()

    def _resume(self) -> None:
        if self.done:
            return
        try:
            delay = next(self.gen)
        except StopIteration as stop:
            self._deliver(True, stop.value, None)
            return
        except _StepFailed as exc:
            self._deliver(False, None, str(exc))
            return
        self.sim.after(delay, self._resume)

    def _timeout(self) -> None:
        if not self.done:
            self._deliver(False, None, f"timed out after {self.cmd.timeout_s:g} s", True)

    def _deliver(self, ok: bool, result: Any, error: str | None, timed_out: bool = False) -> None:
        self.done = True
        now = self.sim.clock.now()
        self.run._send(StepOutcome(ok, result, error, now - self.started, timed_out, now))

    def _body(self) -> Generator[float, None, Any]:
        sim, wf = self.sim, self.run.workflow
        spec = sim.scenario.services[wf.service]
        try:
            effects = plan_step(self.cmd.step, wf, self.run.event, sim.policy.recovery,
                                spec.primary)
        except NoCircuit as exc:
            raise _StepFailed(str(exc)) from None
        except KeyError:
            raise _StepFailed(f"no runner for action {self.cmd.step.action!r} in the "
                              "simulator") from None
        result: dict[str, Any] = {"effects": [describe(e) for e in effects]}
        if any(isinstance(e, RouteTo | SetCircuit) for e in effects):
            yield _ROUTE_S
        for effect in effects:
            result.update((yield from self._apply(effect)))
        return result

    def _apply(self, e: Effect) -> Generator[float, None, dict[str, Any]]:
        sim = self.sim
        world = sim.world
        if isinstance(e, SendAlert):
            yield _ALERT_S
            return {"dedup_key": e.dedup_key, "channels": [e.channel]}
        if isinstance(e, RetryProbe):
            for attempt in range(1, e.policy.max_attempts + 1):
                now = sim.clock.now()
                world.clear(e.service, "retry", now)  # a reconnect ends a lost connection
                if world.probe(e.service, None, now):
                    return {"attempts": attempt}
                if attempt < e.policy.max_attempts:
                    yield sim.rng.uniform(0.0, e.policy.backoff_cap_s(attempt))
            raise _StepFailed(f"{e.policy.max_attempts} attempts failed")
        if isinstance(e, RouteTo | SetCircuit):
            return self._switch(e)
        if isinstance(e, SwitchBack):
            self._watch(e)
            return {"switches_back": True}
        if isinstance(e, WarmCache):
            yield _WARM_S
            return {"entries": len(sim.guard.cache.recent(e.service, sim.clock.now(),
                                                          e.ttl_s))}
        if isinstance(e, ScaleTo):
            state = world.services[e.deployment]
            wanted = e.target(state.replicas)
            yield RESTART_WARMUP_S
            before = state.replicas
            world.scale(e.deployment, wanted, sim.clock.now())
            return {"deployment": e.deployment, "from": before, "to": wanted}
        if isinstance(e, Restart):
            return (yield from self._restart(e))
        raise _StepFailed(f"the simulator cannot {type(e).__name__}")

    def _restart(self, e: Restart) -> Generator[float, None, dict[str, Any]]:
        # As serve_control does it: a graceful restart adds a fresh replica, waits the delay,
        # then replaces every old one; an abrupt one stops them all first.
        sim, world = self.sim, self.sim.world
        service = e.deployment or self.run.workflow.service
        now = sim.clock.now()
        if not e.graceful:
            world.stop(service, now, now + RESTART_WARMUP_S)
            yield RESTART_WARMUP_S
            cleared = world.restart(service, sim.clock.now())
            return {"graceful": False, "cleared": len(cleared)}
        yield RESTART_WARMUP_S
        world.surge(service)
        yield e.delay_s
        cleared = world.restart(service, sim.clock.now(), surge=1)
        return {"graceful": True, "cleared": len(cleared)}

    def _switch(self, e: RouteTo | SetCircuit) -> dict[str, Any]:
        """Move traffic as the effect says, and keep the world's books on where it went."""
        sim = self.sim
        service = self.run.workflow.service
        state = sim.world.services[service]
        primary = sim.scenario.services[service].primary
        if isinstance(e, RouteTo):
            if e.tier is None:
                sim.guard.routes.clear(service)
                state.moved = False
                return {"route": None}
            now = sim.clock.wall()
            route = Route(e.tier, self.run.workflow.id, now,
                          None if e.for_s is None else now + e.for_s)
            sim.guard.routes.set(service, route)
            state.moved = True
            if e.for_s is not None:  # the route ends: traffic goes back to the primary
                def expire() -> None:
                    if sim.guard.routes.get(service) is route:
                        sim.guard.routes.clear(service)
                        state.moved = False
                sim.after(e.for_s, expire)
            return {"route": e.tier}
        breaker = sim.breakers.get(service, e.provider)
        if e.open:
            now = sim.clock.now()
            breaker.force_open(now, e.reason,
                               None if e.trial_after_s is None else now + e.trial_after_s)
            state.moved = e.provider == primary
            if state.moved and e.trial_after_s is not None:
                # the force ends in trial calls on the primary (from then on the breaker's
                # own state says whether traffic is off it: World.off_primary), unless a
                # later force (another run's) took over meanwhile
                forced = object()
                state.moved_by = forced

                def ended() -> None:
                    if state.moved_by is forced:
                        state.moved = False
                sim.after(e.trial_after_s, ended)
        else:
            breaker.reset(sim.clock.now(), e.reason)
            if e.provider == primary:
                state.moved = False
        return {"circuit": breaker.name, "state": breaker.state.name}

    def _watch(self, e: SwitchBack) -> None:
        """Probe the primary every ``every_s``; apply ``then`` once it answers."""
        sim = self.sim
        provider = e.provider or sim.scenario.services[e.service].primary

        def probe() -> None:
            if sim.world.probe(e.service, provider, sim.clock.now()):
                self._switch(e.then)
            else:
                sim.after(e.every_s, probe)
        sim.after(e.every_s, probe)


class _StepFailed(Exception):
    """A simulated action failed; its message becomes the step's error."""

