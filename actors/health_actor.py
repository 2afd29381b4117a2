"""HealthMonitorActor: registered checks, run on their interval, with hysteresis.

A plain class made a named, detached actor by :mod:`actors.runtime`. Each check's probe runs
in a worker thread under its timeout; the result feeds a
:class:`~healing.health.HealthTracker`. Going unhealthy queues a ``health_check_failed``
trigger (for the recovery orchestrator to collect); coming back records the recovery.
``run_once`` runs a check now, which is how tests and operators drive it without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import asdict
from typing import Any

from healing.clock import Clock, SystemClock
from healing.health import CheckResult, HealthCheckFailed, HealthPolicy, HealthTracker
from healing.orchestration import TriggerEvent
from healing.workflow import Trigger

from .health_checks import CheckSpec, make_probe
from .ray_gateway import tell_orchestrator
from .stores.actor_state import ActorState
from .stores.redis_conn import connect

__all__ = ["HealthMonitorActor"]

MAX_EVENTS = 1_000


class _Check:
    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self.policy = HealthPolicy(**spec.policy)
        self.probe = make_probe(spec, self.policy.timeout_s)
        self.tracker = HealthTracker(spec.name, self.policy)
        self.task: asyncio.Task[None] | None = None


class HealthMonitorActor:
    def __init__(self, clock: Clock | None = None, orchestrator: str | None = None,
                 redis_url: str | None = None, state_prefix: str | None = None) -> None:
        self.clock = clock if clock is not None else SystemClock()
        self.orchestrator = orchestrator  # told of every check that goes unhealthy
        self._checks: dict[str, _Check] = {}
        self._triggers: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._recoveries: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        # With a Redis and a prefix, registered checks survive a restart of this actor; they
        # start running again as soon as the restarted actor's event loop does.
        self.state = ActorState(connect(redis_url), state_prefix) \
            if redis_url is not None and state_prefix else None
        self._saved = [CheckSpec(**spec) for spec in self.state.table("checks").values()] \
            if self.state is not None else []
        if self._saved:
            with contextlib.suppress(RuntimeError):  # no loop yet: the first call restores
                asyncio.get_running_loop().create_task(self._restore())

    async def _restore(self) -> None:
        saved, self._saved = self._saved, []
        for spec in saved:
            if spec.name not in self._checks:
                await self.register(spec)

    async def register(self, spec: CheckSpec, start: bool = True) -> dict[str, Any]:
        """Add (or replace) a check; ``start`` runs it on its interval from now on.

        Raises:
            ConfigError: the spec or its policy is invalid (nothing is registered).
        """
        check = _Check(spec)  # validates before anything changes
        await self.unregister(spec.name)
        self._checks[spec.name] = check
        if self.state is not None and spec.kind != "callable":  # a callable is not data
            self.state.put("checks", spec.name, {
                "name": spec.name, "kind": spec.kind, "target": spec.target,
                "policy": spec.policy, "service": spec.service})
        if start:
            check.task = asyncio.get_running_loop().create_task(self._loop(check))
        return self._status(check)

    async def unregister(self, name: str) -> None:
        if self.state is not None:
            self.state.delete("checks", name)
            self.state.delete("status", name)
        old = self._checks.pop(name, None)
        if old is not None and old.task is not None:
            old.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old.task

    async def run_once(self, name: str) -> dict[str, Any]:
        """Run one check now and return its status."""
        check = self._checks[name]
        clock = self.clock
        t0 = clock.now()
        error = ""
        try:
            await asyncio.wait_for(asyncio.to_thread(check.probe), check.policy.timeout_s)
            latency = clock.now() - t0
            result = (CheckResult.SLOW if latency >= check.policy.degraded_latency_s
                      else CheckResult.OK)
        except Exception as exc:  # a probe's every failure is a failed check
            latency = clock.now() - t0
            result = CheckResult.FAILED
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for event in check.tracker.observe(result, latency, clock.now(), clock.utcnow(), error):
            record = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                      for k, v in asdict(event).items()}
            if isinstance(event, HealthCheckFailed):
                self._triggers.append({"trigger": "health_check_failed", **record})
                self._trigger_recovery(check.spec.service or check.spec.name, event)
            else:
                self._recoveries.append(record)
        status = self._status(check)
        if self.state is not None:  # where the control API reads it, without asking us
            self.state.put("status", check.spec.name, status)
        return status

    def _trigger_recovery(self, service: str, event: HealthCheckFailed) -> None:
        # the trigger is in triggers() too, whether or not an orchestrator runs
        tell_orchestrator(self.orchestrator, TriggerEvent(
            Trigger.HEALTH_CHECK_FAILED, service, f"{event.check}: {event.last_error}"))

    async def status(self) -> dict[str, dict[str, Any]]:
        if self._saved:
            await self._restore()
        return {name: self._status(c) for name, c in self._checks.items()}

    async def triggers(self) -> list[dict[str, Any]]:
        return list(self._triggers)

    async def recoveries(self) -> list[dict[str, Any]]:
        return list(self._recoveries)

    async def ping(self) -> bool:
        return True

    async def _loop(self, check: _Check) -> None:
        while True:
            await self.run_once(check.spec.name)
            await self.clock.asleep(check.policy.interval_s)

    @staticmethod
    def _status(check: _Check) -> dict[str, Any]:
        t = check.tracker
        return {"name": check.spec.name, "kind": check.spec.kind, "state": t.state.value,
                "consecutive_failures": t.failures, "last_error": t.last_error,
                "last_latency_s": t.last_latency_s}
