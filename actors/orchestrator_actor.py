"""RecoveryOrchestratorActor: takes triggers, runs recovery workflows, audits every step.

A plain class made a named, detached actor. Triggering never blocks the caller: ``trigger``
admits the event to the :class:`~healing.orchestration.RecoveryQueue` (priority, one
workflow per service, coalescing, cool-down) and returns at once; workflows run as tasks on
the actor's event loop, one per service at a time, different services side by side.

Each workflow runs through the one executor (:func:`healing.workflow.execute`); this module
is its asyncio driver. Each action runs under its step's timeout. Every step leaves a
``recovery_step`` audit record: ``started`` before the action runs, then its outcome
(succeeded, failed, timed out, refused by clinical safety, rolled back). A workflow's
history reads back in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from typing import Any

from healing import ClinicalSafetyValidator, Clock, SystemClock
from healing.audit import operator_action, recovery_step
from healing.errors import ConfigError
from healing.orchestration import RecoveryQueue, TriggerEvent
from healing.recovery import RecoveryPolicy
from healing.retry import bounded
from healing.slo import BurnAlert
from healing.workflow import (
    CheckCriteria,
    RecoveryWorkflow,
    RunAction,
    StepFinished,
    StepOutcome,
    StepRecord,
    Trigger,
    WorkflowResult,
    execute,
)

from .alerts import AlertManager, AlertRouter
from .cluster_control import ClusterProbes, ControlBus
from .error_watch import ErrorWatch
from .paging import LivePager
from .recovery_actions import ActionContext, ActionRegistry, LiveEvidence, builtin_actions
from .stores.actor_state import ActorState
from .stores.audit_trail import AuditTrail
from .stores.redis_conn import connect

__all__ = ["DETECTIONS_KEPT", "RecoveryOrchestratorActor"]

DETECTIONS_KEPT = 1000  # the newest triggers kept with their times (selfheal:{name}:detections)


class RecoveryOrchestratorActor:
    def __init__(self, workflows: list[RecoveryWorkflow], *, cooldown_s: float = 300.0,
                 audit: dict[str, Any] | None = None, alerts: AlertRouter | None = None,
                 circuit_for: Any = None, probes: dict[str, Any] | None = None,
                 health_monitor: Any = None, actions: ActionRegistry | None = None,
                 redis_url: str | None = None, sample_rate: float = 0.1,
                 error_thresholds: dict[str, tuple[float, float]] | None = None,
                 watch_interval_s: float = 0.0, recovery: RecoveryPolicy | None = None,
                 error_min_calls: int = 10, error_z: float = 2.326,
                 primaries: dict[str, str] | None = None, clock: Clock | None = None,
                 state_prefix: str | None = None, paging: str | None = None) -> None:
        self.clock = clock or SystemClock()
        self.queue = RecoveryQueue(list(workflows), cooldown_s)
        self.validator = ClinicalSafetyValidator()
        bus = ControlBus(connect(redis_url)) if redis_url is not None else None
        # With Redis, a probe of any service is asked of the guarding processes (which hold
        # the providers' clients); the probes given here take precedence.
        contexts = {w.service: (w.context.operation_type.value, w.context.criticality.value)
                    for w in workflows}
        probes = ClusterProbes(bus, primaries or {}, probes, contexts=contexts) \
            if bus is not None else dict(probes or {})
        # probe_succeeds asks for the service as its callers see it (fallback answers count)
        answering = probes.answering if isinstance(probes, ClusterProbes) else probes.get
        # With a Redis and a prefix, runs, steps, alerts and adopted thresholds survive a
        # restart of this actor (actors.stores.actor_state).
        self.state = ActorState(connect(redis_url), state_prefix) \
            if redis_url is not None and state_prefix else None
        self.alerts = AlertManager(alerts, on_change=self._alert_changed) \
            if alerts is not None else None
        # With ``paging`` (two_key, detection, burn), who is woken follows healing.slo's
        # pager: burn-rate alerts from the monitor and the triggers here are its two keys.
        self.pager = LivePager(paging, self.alerts, self.clock, self._noticed) \
            if paging is not None else None
        self.actions = actions or builtin_actions(
            alerts=self.alerts, circuit_for=circuit_for, probes=probes,
            control=bus,
            policy=recovery, primaries=primaries,
            page_gate=self.pager.gate if self.pager is not None else None)
        self.evidence = LiveEvidence(answering, health_monitor, redis_url, sample_rate, self.clock)
        # Step and run counts per service, exact, in the hash recovery:{service}.
        self.metrics = connect(redis_url) if redis_url is not None else None
        self.audit = None if audit is None else AuditTrail.from_config(audit, None)
        self._runs: deque[dict[str, Any]] = deque(maxlen=1000)
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        # service -> (error rate, window in seconds) that raises an error_threshold trigger,
        # judged from the service's metric stream.
        self.watch = ErrorWatch(error_thresholds or {}, error_min_calls, error_z,
                                self.evidence, self.state)
        self._watch_interval_s = watch_interval_s
        self._restore()
        self._watcher: asyncio.Task[None] | None = None
        # Watching the error rates starts with the actor (Ray runs an async actor's
        # constructor on its event loop, after a crash too), not with its first trigger:
        # the chaos suite found a fresh orchestrator blind to error rates until a circuit
        # opened. A plain object built outside a loop (a test) starts nothing.
        with contextlib.suppress(RuntimeError):
            self._start_watching()

    # -- what survives a restart -----------------------------------------------------

    def _restore(self) -> None:
        if self.state is None:
            return
        runs = sorted(self.state.table("runs").values(), key=lambda r: r["started_at"])
        finished = []
        for summary in runs[-(self._runs.maxlen or 1000):]:
            if "ended" not in summary:  # it was running when this actor stopped
                summary.update(succeeded=False, ended="interrupted: the orchestrator restarted",
                               ended_at=self.clock.wall())
                self.state.put("runs", summary["run_id"], summary)
            else:
                finished.append(summary)
            self._runs.append(summary)
            self._history[summary["run_id"]] = self.state.items(f"history:{summary['run_id']}")
        self._resume_cooldowns(finished)
        self.watch.restore()
        if self.alerts is not None:
            self.alerts.restore(list(self.state.table("alerts").values()))

    def _resume_cooldowns(self, finished: list[dict[str, Any]]) -> None:
        """The cool-downs of the runs that finished before this actor started: restarted by
        Ray, an orchestrator that forgot them ran the same workflow again for the same alarm
        at once. A run the restart interrupted leaves none: its alarm is heard again, so the
        recovery it did not finish can run."""
        # the queue's clock is monotonic and dies with the process: a run's end is placed
        # as long before now as its wall time says
        now, wall = self.clock.now(), self.clock.wall()
        for summary in sorted(finished, key=lambda r: r.get("ended_at") or 0.0):
            with contextlib.suppress(KeyError, ValueError, TypeError):
                event = TriggerEvent(Trigger(summary["trigger"]), summary["service"])
                self.queue.finish(event, now - max(0.0, wall - float(summary["ended_at"])))

    def _save_run(self, summary: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.put("runs", summary["run_id"], summary)

    def _alert_changed(self, alert: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.put("alerts", alert["dedup_key"], alert)

    def _noticed(self, notice: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.append("notices", notice, keep=DETECTIONS_KEPT)

    async def slo_alerts(self, service: str, alerts: list[BurnAlert]) -> None:
        """The monitor's burn-rate alerts in force for ``service`` (every step it has any)."""
        if self.pager is not None:
            self.pager.burning(service, alerts)

    async def trigger(self, event: TriggerEvent) -> str:
        """Admit a trigger; returns at once with what became of it."""
        self._start_watching()
        if self.pager is not None and event.trigger is not Trigger.MANUAL:
            self.pager.detected(event.service)
        admission = self.queue.submit(event, self.clock.now())
        # every detection that reached the orchestrator, whatever became of it (/metrics),
        # and when (GET /api/v1/detections: the MTTD an operator and the chaos suite read)
        self._count(event.service, [f"triggers:{event.trigger.value}"])
        if self.state is not None:
            self.state.append("detections", {
                "service": event.service, "trigger": event.trigger.value,
                "detail": event.detail, "at": self.clock.wall(),
                "admitted": admission.value}, keep=DETECTIONS_KEPT)
        if event.trigger is Trigger.PREDICTED and self.audit is not None:
            # acting before anything failed is a decision of its own: the trail says why
            await self.audit.aappend(operator_action(
                service=event.service, at=self.clock.wall(), operator="selfheal:prevention",
                action="failure_predicted", pseudonymize=lambda who: who,
                details={"prediction": event.detail, "admitted": admission.value}))
        self._pump()
        return admission.value

    async def check_error_thresholds(self, now: float | None = None) -> dict[str, str]:
        """Raise ``error_threshold`` for every watched service over its threshold now."""
        self._start_watching()
        began = self.clock.wall()
        now = began if now is None else now
        out, seen = {}, {}
        for service, (rule, reading) in self.watch.read(now).items():
            seen[service] = reading
            if rule.fires(*reading):
                out[service] = await self.trigger(TriggerEvent(
                    Trigger.ERROR_THRESHOLD, service, rule.describe(*reading[:2])))
        self.watch.keep(now, self.clock.wall() - began, seen, out)
        return out

    def _start_watching(self) -> None:
        if self._watcher is None and self._watch_interval_s > 0 and self.watch.thresholds:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await self.clock.asleep(self._watch_interval_s)
            try:
                await self.check_error_thresholds()
            except Exception:  # Redis away: the next round tries again
                continue

    async def thresholds(self) -> dict[str, tuple[float, float]]:
        return dict(self.watch.thresholds)

    async def adopt_threshold(self, service: str, threshold: float, window_s: float,
                              reason: str, by: str = "selfheal:adaptive-thresholds") -> dict:
        """Put a new error threshold in force for ``service``; audited, and reversible with
        :meth:`revert_threshold`."""
        old, new = self.watch.adopt(service, threshold, window_s)
        await self._audit_threshold(service, "error_threshold_changed", old, new, reason, by)
        return {"service": service, "old": old, "new": new}

    async def revert_threshold(self, service: str, by: str = "selfheal:adaptive-thresholds"
                               ) -> dict:
        """Go back to the threshold before the last change (none: no threshold at all)."""
        old, new = self.watch.revert(service)
        await self._audit_threshold(service, "error_threshold_reverted", old, new, "reverted",
                                    by)
        return {"service": service, "old": old, "new": new}

    async def _audit_threshold(self, service: str, action: str, old: Any, new: Any,
                               reason: str, by: str) -> None:
        if self.audit is None:
            return
        # ``by`` names a system component, not a person: it is kept as it is.
        await self.audit.aappend(operator_action(
            service=service, at=self.clock.wall(), operator=by, action=action,
            pseudonymize=lambda who: who,
            details={"old": old, "new": new, "reason": reason}))

    async def runs(self) -> list[dict[str, Any]]:
        return list(self._runs)

    async def history(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._history.get(run_id, []))

    async def active_alerts(self) -> list[dict[str, Any]]:
        return self.alerts.active() if self.alerts is not None else []

    async def recent_alerts(self) -> list[dict[str, Any]]:
        """Every alert this orchestrator has raised, resolved ones too."""
        return self.alerts.recent() if self.alerts is not None else []

    async def update_alert(self, dedup_key: str, action: str) -> dict[str, Any]:
        """Acknowledge or resolve an alert, and its PagerDuty incident by the dedup key.

        Raises:
            ConfigError: no such alert, or an action other than acknowledge or resolve.
        """
        if self.alerts is None:
            raise ConfigError("dedup_key", dedup_key, "is not an active alert")
        if action not in ("acknowledge", "resolve"):
            raise ConfigError("action", action, "must be acknowledge or resolve")
        update = self.alerts.acknowledge if action == "acknowledge" else self.alerts.resolve
        alert = await asyncio.to_thread(update, dedup_key)  # it posts to the webhooks
        return alert.as_dict()

    async def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """For tests and demos: wait until no workflow is queued or running."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def ping(self) -> bool:
        return True

    def _pump(self) -> None:
        while (nxt := self.queue.next()) is not None:
            workflow, event = nxt
            self._idle.clear()
            task = asyncio.get_running_loop().create_task(self._run(workflow, event))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks and len(self.queue) == 0:
            self._idle.set()

    async def _run(self, workflow: RecoveryWorkflow, event: TriggerEvent) -> None:
        run_id = f"{workflow.id}-{uuid.uuid4().hex[:8]}"
        started = self.clock.wall()
        summary: dict[str, Any] = {"run_id": run_id, "workflow": workflow.id,
                                   "service": workflow.service, "trigger": event.trigger.value,
                                   "detail": event.detail, "started_at": started}
        if len(self._runs) == self._runs.maxlen:  # the oldest summary leaves: so does its history
            gone = self._runs[0]["run_id"]
            self._history.pop(gone, None)
            if self.state is not None:
                self.state.delete("runs", gone)
                self.state.drop(f"history:{gone}")
        self._runs.append(summary)
        self._history[run_id] = []
        self._save_run(summary)
        try:
            result = await self._drive(workflow, event, run_id)
            summary.update(succeeded=result.succeeded, ended=result.ended)
            self._count(workflow.service, [f"{r.action}:{r.status.value}" for r in result.steps]
                        + [f"runs:{result.ended}"])
        except Exception as exc:  # a broken runner must not stop the orchestrator
            summary.update(succeeded=False, ended=f"error: {type(exc).__name__}: {exc}")
        finally:
            summary["ended_at"] = self.clock.wall()
            self._save_run(summary)
            self.queue.finish(event, self.clock.now())
            self._pump()

    def _count(self, service: str, fields: list[str]) -> None:
        if self.metrics is None:
            return
        try:
            pipe = self.metrics.pipeline(transaction=True)
            for f in fields:
                pipe.hincrby(f"recovery:{service}", f, 1)
            pipe.execute()
        except Exception:  # metrics must never stop a recovery; the audit trail has it all
            return

    async def _drive(self, workflow: RecoveryWorkflow, event: TriggerEvent,
                     run_id: str) -> WorkflowResult:
        plan = execute(workflow, self.clock.now(), self.validator)
        reply: Any = None
        while True:
            try:
                cmd = plan.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if isinstance(cmd, StepFinished):  # its outcome, in the trail before the next
                await self._record(run_id, workflow, cmd.record.status.value, cmd.record)
                reply = None
            elif isinstance(cmd, RunAction):
                await self._record(run_id, workflow, "started", cmd)
                reply = await self._act(workflow, event, cmd)
            elif isinstance(cmd, CheckCriteria):
                if cmd.wait_s:  # let the window after the step fill with evidence
                    await self.clock.asleep(cmd.wait_s)
                reply = all([await self.evidence.holds(c, workflow.service)
                             for c in cmd.criteria])

    async def _act(self, workflow: RecoveryWorkflow, event: TriggerEvent,
                   cmd: RunAction) -> StepOutcome:
        ctx = ActionContext(workflow, event, cmd.step, cmd.rollback, self.clock)
        t0 = self.clock.now()
        try:
            result = await bounded(self.clock, self.actions.run(ctx), cmd.timeout_s)
        except TimeoutError:
            return StepOutcome(False, None, f"timed out after {cmd.timeout_s:g} s",
                               self.clock.now() - t0, True, self.clock.now())
        except Exception as exc:
            return StepOutcome(False, None, f"{type(exc).__name__}: {exc}",
                               self.clock.now() - t0, False, self.clock.now())
        return StepOutcome(True, result, None, self.clock.now() - t0, False, self.clock.now())

    async def _record(self, run_id: str, workflow: RecoveryWorkflow, status: str,
                      what: StepRecord | RunAction) -> None:
        if isinstance(what, RunAction):
            index, action, inputs = what.index, what.step.action, dict(what.step.config)
            result = error = validation = None
            duration = 0.0
        else:
            index, action, inputs = what.index, what.action, dict(what.config)
            result, error, duration = what.result, what.error, what.duration_s
            validation = dict(what.validation)
        entry = {"run_id": run_id, "step": index, "action": action, "status": status,
                 "inputs": inputs, "result": result, "error": error, "duration_s": duration,
                 "validation": validation, "at": self.clock.wall(),
                 "rollback": getattr(what, "rollback", False)}
        self._history[run_id].append(entry)
        if self.state is not None:
            self.state.append(f"history:{run_id}", entry)
        if self.audit is not None:
            await self.audit.aappend(recovery_step(
                service=workflow.service, at=entry["at"], workflow_id=run_id, step=index,
                action=action, status=status, inputs=inputs,
                result={"value": result, "error": error}, duration_s=duration,
                validation=validation))
