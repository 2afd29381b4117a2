"""The predictive monitor as a Ray actor: the metric streams in, ``anomaly`` triggers out.

It reads every service's Redis stream (``metrics:{service}``) through a consumer group
(``monitor``), so a restarted monitor resumes where the group left off and several monitors
could share the work; each batch is acknowledged once it has been counted. The events are the
recorder's: every error and a sample of the successes, so successes are re-weighted by the
sample rate to estimate the calls. The counts go into
:class:`~learning.monitor.PredictiveMonitor` (the same logic the simulator runs), which is
ticked ``settle_s`` behind the wall clock so that a bucket is scored only once the recorders'
flushes for it have landed. Each anomaly is sent to the orchestrator, fire and forget, and
kept in :meth:`anomalies`. With ``model_uri`` it follows the MLflow champion model
(:mod:`learning.model_registry`), checking for a new one every ``model_check_s``.

Prevention (seed 7.1): the champion carries the recurring-failure patterns its training found.
Each step asks :class:`~learning.patterns.ProactivePreventionEngine` (the simulator's own)
which are due within ``prevention_lead_s`` and raises a ``predicted`` trigger for each, once
per expected occurrence; the orchestrator runs the service's prevention workflow and audits
both. What was predicted is kept in :meth:`predictions`, and the occurrences already acted
on are saved with the detectors' state (as are the error budgets), so a restarted monitor
does not act twice nor forget the budget spent.

Memory: with ``memory_limit_mb``, every ``resource_interval_s`` the monitor reads the resident
memory and CPU of this node's named actors (:mod:`actors.resource_signals`); the Serve
replicas' memory goes into
:class:`~learning.resources.MemoryGrowth` and raises a ``memory_growth`` trigger for a
replica whose memory is forecast to reach the limit within the hour: a leak is healed before
its requests fail.

SLOs: every streamed request, answered or not, goes into each service's
:class:`~healing.slo.ErrorBudget`; each step sends the orchestrator the burn-rate alerts in
force (one key of its two-key pager, ``actors.paging``) and writes every service's burn
rates and budget left under ``slo_key`` for the control API and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import pickle
from collections import deque
from datetime import UTC, datetime
from typing import Any

import redis

from healing.clock import Clock, SystemClock
from healing.orchestration import TriggerEvent
from healing.slo import SLO, ErrorBudget
from healing.workflow import Trigger
from learning.history import event_counts
from learning.monitor import STATE_VERSION, MonitorPolicy, PredictiveMonitor
from learning.patterns import Pattern, ProactivePreventionEngine

from .ray_gateway import notify_orchestrator, tell_orchestrator
from .stores.metric_stream import read_new, take_retried
from .stores.redis_conn import connect

__all__ = ["GROUP", "PredictiveMonitorActor"]

_log = logging.getLogger("selfheal.monitor")
GROUP = "monitor"



def _event(event: Any) -> tuple[float, float | None, bool, str | None, bool] | None:
    """``(at, latency_s, ok, error_kind, answered)`` of one streamed event, or None when it
    is not a well-formed one (a finite time, a finite non-negative latency or none, ok 1 or
    0); answered: some tier answered (the primary or a fallback), not ``none``."""
    try:
        at, latency, ok, error_kind, tier, _provider = event
        at = float(at)
        latency = None if latency is None else float(latency)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(at) or ok not in (0, 1) or isinstance(ok, float) or \
            (error_kind is not None and not isinstance(error_kind, str)) or \
            (latency is not None and not (math.isfinite(latency) and latency >= 0)):
        return None
    return at, latency, bool(ok), error_kind, tier != "none"

def _start_soon(start: Any) -> None:
    """Schedule ``start()`` on the actor's event loop (Ray runs an async actor's
    constructor on it); without a loop (a plain object in a test) nothing starts."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().create_task(start())


class PredictiveMonitorActor:
    def __init__(self, redis_url: str, orchestrator: str | None = None, *,
                 policy: dict[str, Any] | None = None, sample_rate: float = 0.1,
                 prefix: str = "metrics", consumer: str = "monitor-1",
                 interval_s: float = 1.0, settle_s: float = 2.0,
                 model_uri: str | None = None, model_check_s: float = 60.0,
                 clock: Clock | None = None, autostart: bool = False,
                 state_key: str | None = None, save_every_s: float = 30.0,
                 prevention_lead_s: float = 300.0, slo_objective: float = 0.999,
                 slo_key: str | None = None, memory_limit_mb: float | None = None,
                 memory_key: str | None = None,
                 resource_interval_s: float = 10.0) -> None:
        self.clock = clock or SystemClock()
        self.client = connect(redis_url)
        # What the detectors learnt (baselines, evidence, latency and multivariate models),
        # saved every ``save_every_s`` under ``state_key`` and taken back after a restart:
        # a restarted monitor does not go blind for a warm-up. Pickled: it is our own state
        # in our own Redis, which only selfheal's processes reach.
        self.state_key, self.save_every_s = state_key, save_every_s
        self._saved_at = float("-inf")
        self.orchestrator = orchestrator
        wanted = MonitorPolicy(**(policy or {}))
        restored = self._restored()
        if restored is not None and restored.policy != wanted:
            _log.warning("monitor policy changed since its state was saved: starting fresh")
            restored = None
        self.monitor = restored or PredictiveMonitor(wanted)
        self.sample_rate = sample_rate
        self.prefix, self.consumer = prefix, consumer
        self.interval_s, self.settle_s = interval_s, settle_s
        self._streams: set[str] = set()
        self._anomalies: deque[dict[str, Any]] = deque(maxlen=1000)
        self._predictions: deque[dict[str, Any]] = deque(maxlen=1000)
        self.prevention = ProactivePreventionEngine(lead_s=prevention_lead_s)
        self.budget = self._restored_budget(SLO(slo_objective))
        self.slo_key = slo_key
        self.memory_limit_mb, self.resource_interval_s = memory_limit_mb, resource_interval_s
        self.memory_key = memory_key  # where the replicas' memory is kept for the API
        self._memory: Any = None  # actors.resource_signals.MemoryWatch, on first reading
        self._memory_read = float("-inf")
        self._restore_acted()
        self._task: asyncio.Task[None] | None = None
        self.events_read = 0
        self.events_malformed = 0
        # the MLflow store whose champion model this monitor follows (None: the defaults)
        self.model_uri, self.model_check_s = model_uri, model_check_s
        self.model_version: str | None = None
        self._model_checked = float("-inf")
        if autostart:  # also after Ray restarts this actor: it rebuilds it with these args
            _start_soon(self.start)

    async def start(self) -> bool:
        """Run :meth:`step` every ``interval_s`` from now on (idempotent)."""
        if self._task is None and self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return True

    def _restored(self) -> PredictiveMonitor | None:
        if self.state_key is None:
            return None
        try:
            raw = self.client.get(self.state_key)
            state = None if raw is None else pickle.loads(raw)
        except Exception:  # unreadable: start fresh
            _log.warning("monitor state under %s not restored", self.state_key,
                         exc_info=True)
            return None
        if state is not None and (not isinstance(state, PredictiveMonitor)
                                  or getattr(state, "state_version", None) != STATE_VERSION):
            _log.warning("monitor state under %s is from another version: starting fresh",
                         self.state_key)
            return None
        return state

    async def save_state(self) -> bool:
        """Save what the detectors learnt now (the loop does every ``save_every_s``)."""
        if self.state_key is None:
            return False
        self.client.set(self.state_key, pickle.dumps(self.monitor))
        # the error budgets too: the streams' events, once read, are not read again
        self.client.set(f"{self.state_key}:budget", pickle.dumps(self.budget))
        self._save_acted()
        self._saved_at = self.clock.now()
        return True

    def _restored_budget(self, slo: SLO) -> ErrorBudget:
        """The error budgets saved before a restart, if they were kept for this SLO."""
        if self.state_key is not None:
            try:
                raw = self.client.get(f"{self.state_key}:budget")
                saved = None if raw is None else pickle.loads(raw)
            except Exception:  # unreadable: start counting again
                _log.warning("error budgets not restored", exc_info=True)
                saved = None
            if isinstance(saved, ErrorBudget) and saved.slo == slo:
                return saved
        return ErrorBudget(slo)

    def _save_acted(self) -> None:
        if self.state_key is not None:
            self.client.set(f"{self.state_key}:prevented",
                            json.dumps(sorted(self.prevention.acted)))

    def _restore_acted(self) -> None:
        if self.state_key is None:
            return
        try:
            raw = self.client.get(f"{self.state_key}:prevented")
            acted = json.loads(raw) if raw is not None else []
            self.prevention.acted.update((str(s), float(t)) for s, t in acted)
        except (redis.RedisError, ValueError, TypeError):
            _log.warning("occurrences already prevented not restored", exc_info=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
                if self.clock.now() - self._saved_at >= self.save_every_s:
                    await self.save_state()
            except redis.RedisError:
                _log.warning("metric streams unreachable; retrying", exc_info=True)
            except Exception:  # a bug must not stop the monitor for good: log it, go on
                _log.exception("monitor step failed; retrying")
            await self.clock.asleep(self.interval_s)

    async def refresh_model(self) -> str | None:
        """Adopt the champion model if it changed; returns the version in use. Running
        monitors call this every ``model_check_s``: a promotion needs no restart."""
        if self.model_uri is None:
            return None
        from learning.model_registry import (  # noqa: PLC0415 - MLflow: 2.5 s to import
            champion,
            champion_patterns,
        )

        self._model_checked = self.clock.now()
        found = champion(self.model_uri)
        if found is not None and found[0] != self.model_version:
            version, model = found
            patterns = champion_patterns(self.model_uri)
            self.prevention.patterns = [Pattern.from_row(r) for r in
                                        (patterns[1] if patterns else [])]
            self.model_version = version
            self.monitor.per_service = dict(model.policies)
            _log.info("monitor model version %s adopted, with %d recurring-failure patterns",
                      version, len(self.prevention.patterns))
        return self.model_version

    async def step(self, now: float | None = None) -> list[dict[str, Any]]:
        """Read what is new, score the buckets that closed by ``now - settle_s``; returns
        the anomalies raised (also sent to the orchestrator)."""
        if self.model_uri is not None and \
                self.clock.now() - self._model_checked >= self.model_check_s:
            try:
                await self.refresh_model()
            except Exception:  # the registry is away: keep the model in use
                _log.warning("monitor model not refreshed", exc_info=True)
        self._discover()
        if self._streams:
            batches, self._streams = read_new(self.client, GROUP, self.consumer,
                                              self._streams)
            for stream, entries in batches or []:  # type: ignore[union-attr]
                name = stream.decode() if isinstance(stream, bytes) else stream
                service = name[len(self.prefix) + 1:]
                ids = []
                for entry_id, fields in entries:
                    self._count(service, fields)
                    ids.append(entry_id)
                if ids:
                    self.client.xack(name, GROUP, *ids)
        now = self.clock.wall() if now is None else now
        self._count_retried()
        raised = []
        for a in self.monitor.tick(now - self.settle_s):
            record = {"service": a.service, "at": a.at, "feature": a.feature,
                      "value": a.value, "score": a.score, "detail": a.detail}
            self._anomalies.append(record)
            raised.append(record)
            self._tell(a.service, a.detail)
        self._prevent(now)
        self._slo(now - self.settle_s)
        if self.memory_limit_mb is not None and \
                self.clock.now() - self._memory_read >= self.resource_interval_s:
            self._memory_read = self.clock.now()
            await self.read_memory(now)
        return raised

    async def read_memory(self, now: float | None = None) -> list[dict[str, Any]]:
        """Read this node's processes now (memory, CPU); returns the memory alerts raised
        for Serve replicas (each also a ``memory_growth`` trigger to the orchestrator)."""
        if self._memory is None:
            from .resource_signals import MemoryWatch  # noqa: PLC0415 - psutil, on first use

            self._memory = MemoryWatch(self.memory_limit_mb or 0.0)
        now = self.clock.wall() if now is None else now
        raised = self._memory.read(now)
        for alert in raised:
            tell_orchestrator(self.orchestrator, TriggerEvent(
                Trigger.MEMORY_GROWTH, alert.service, alert.describe()))
        if self.memory_key is not None:
            self.client.set(self.memory_key, json.dumps({"at": now, **self._memory.state()}))
        return [a.as_dict() for a in raised]

    async def memory_state(self) -> dict[str, Any]:
        """What the last reading found (``actors.resource_signals.MemoryWatch.state``)."""
        return self._memory.state() if self._memory is not None else \
            {"replicas": {}, "actors": {}, "alerts": []}

    def _slo(self, now: float) -> None:
        """Send the burn-rate alerts in force; keep every service's burn rates and budget."""
        summary = {}
        for service in self.budget.services():
            alerts = self.budget.alerts(service, now)
            if alerts:
                notify_orchestrator(self.orchestrator, "slo_alerts", service, alerts,
                                    what=f"error budget of {service}")
            summary[service] = {
                "objective": self.budget.slo.objective,
                "budget_remaining": self.budget.remaining(service, now),
                "burn_rates": {f"{w:g}": self.budget.burn(service, w, now)
                               for w in self.budget.lengths},
                "alerts": [{"severity": a.severity, "describe": a.describe()} for a in alerts]}
        if self.slo_key is not None:
            self.client.set(self.slo_key, json.dumps({"at": now, "services": summary}))

    async def slo(self) -> dict[str, Any]:
        """Every service's SLO: objective, budget left, burn rate per window (seconds), the
        alerts in force."""
        raw = self.client.get(self.slo_key) if self.slo_key else None
        return json.loads(raw) if raw else {"at": None, "services": {}}

    def _prevent(self, now: float) -> None:
        """Raise a ``predicted`` trigger for each learnt recurrence due within the lead."""
        due = self.prevention.due(now)
        for action in due:
            p = action.pattern
            detail = (f"expected at {datetime.fromtimestamp(action.due_at, UTC):%H:%M} UTC: "
                      f"{p.describe()}")
            self._predictions.append({"service": p.service, "at": now,
                                      "due_at": action.due_at, "pattern": p.describe(),
                                      "priority": p.priority})
            tell_orchestrator(self.orchestrator,
                              TriggerEvent(Trigger.PREDICTED, p.service, detail))
        if due:
            self._save_acted()

    async def predictions(self) -> list[dict[str, Any]]:
        """The recurrences predicted (and sent to the orchestrator), oldest first."""
        return list(self._predictions)

    def _discover(self) -> None:
        """Find the services' streams and join each to the consumer group."""
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else key
            if name in self._streams or name.endswith((":count", ":retried")) or \
                    self.client.type(name) != b"stream":
                continue
            try:
                # from the start of what the stream still holds: history teaches the usual rate
                self.client.xgroup_create(name, GROUP, id="0")
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._streams.add(name)

    def _count(self, service: str, fields: dict[bytes, bytes]) -> None:
        try:
            events = json.loads(fields[b"events"])
        except (KeyError, ValueError):
            _log.error("malformed metric entry for %s skipped", service)
            return
        # [at, latency_s, ok, error_kind, tier, provider]; one observation per event time
        for event in events if isinstance(events, list) else [events]:
            self.events_read += 1
            parsed = _event(event)
            if parsed is None:
                self.events_malformed += 1
                _log.error("malformed metric event for %s skipped", service)
                continue
            at, latency, ok, error_kind, answered = parsed
            # the SLO counts every request as the patient saw it: answered or not. Only the
            # primary's plain successes are sampled; a fallback's answer is always streamed
            weight = 1.0 / self.sample_rate if ok and error_kind is None else 1.0
            self.budget.observe(service, at, weight, 0.0 if answered else weight)
            seen = event_counts(ok, error_kind, self.sample_rate)
            if seen is not None:
                lat = (latency,) if latency is not None else ()
                self.monitor.observe(service, at, seen[0], seen[1], lat)

    def _count_retried(self) -> None:
        """Failed attempts a retry hid, as failed calls of their own second (a late one is
        dropped as a late event is; docs/learning.md). Not in the error budget."""
        names = [n[len(self.prefix) + 1:] for n in self._streams]
        for service, seconds in take_retried(self.client, names, self.prefix).items():
            for second, n in seconds:
                self.monitor.observe(service, float(second), n, n)

    def _tell(self, service: str, detail: str) -> None:
        # kept in anomalies() too, whether or not an orchestrator runs
        tell_orchestrator(self.orchestrator, TriggerEvent(Trigger.ANOMALY, service, detail))

    async def anomalies(self) -> list[dict[str, Any]]:
        return list(self._anomalies)

    async def state(self) -> dict[str, Any]:
        return {**self.monitor.state(), "running": self._task is not None and
                not self._task.done(), "streams": sorted(self._streams),
                "events_read": self.events_read,
                "events_malformed": self.events_malformed, "model_version": self.model_version,
                "patterns": [p.describe() for p in self.prevention.patterns],
                "per_service_h": {s: p.h for s, p in self.monitor.per_service.items()}}
