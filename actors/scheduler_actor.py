"""Scheduled training on the cluster: the settings' cron expression, a real loop, and every
run — started, succeeded, failed or missed — visible in :meth:`runs` and in Redis.

Each due fire time runs :func:`actors.training_job.scheduled_training` as a Ray task (so the
scheduler itself never blocks), which fans out on Ray in turn: one task per simulated history
scenario, per service trained and per replay. The run history is kept in the Redis list
``selfheal:training:runs`` (newest first, bounded), so a restarted scheduler, an operator or a
dashboard sees what happened, including fire times missed while the scheduler was down: on
start it resumes from the last fire time Redis recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from healing.clock import Clock, SystemClock
from learning.schedule import CronSchedule, TrainingScheduler

from .stores.redis_conn import connect

if TYPE_CHECKING:  # the training job pulls in the simulator: only the run task needs it
    from .training_job import LiveSource

__all__ = ["RUNS_KEY", "TrainingSchedulerActor", "read_runs"]

_log = logging.getLogger("selfheal.scheduler")
RUNS_KEY = "selfheal:training:runs"
LAST_KEY = "selfheal:training:last_fire"


class TrainingSchedulerActor:
    def __init__(self, cron: str, mlflow_uri: str, redis_url: str, history: list[str],
                 replay_on: list[str] | None = None, *, interval_s: float = 30.0,
                 key_prefix: str = "", now: float | None = None,
                 live: LiveSource | None = None, orchestrator: str | None = None,
                 clock: Clock | None = None, autostart: bool = False) -> None:
        self.clock = clock or SystemClock()
        self.schedule = CronSchedule(cron)  # a bad expression fails here, naming the setting
        self.uri, self.history, self.replay_on = mlflow_uri, history, replay_on or history
        self.live, self.orchestrator = live, orchestrator
        self.client = connect(redis_url)
        self.runs_key, self.last_key = key_prefix + RUNS_KEY, key_prefix + LAST_KEY
        last = self.client.get(self.last_key)
        start = float(last) if last is not None else (self.clock.wall() if now is None else now)
        self.scheduler = TrainingScheduler(self.schedule, start)
        self.interval_s = interval_s
        self._running: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        if autostart:  # also after Ray restarts this actor: it rebuilds it with these args
            with contextlib.suppress(RuntimeError):  # no loop: a plain object in a test
                asyncio.get_running_loop().create_task(self.start())

    async def start(self) -> bool:
        if self._loop_task is None and self.interval_s > 0:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        return True

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                _log.exception("training schedule tick failed")
            await self.clock.asleep(self.interval_s)

    async def tick(self, now: float | None = None) -> float | None:
        """Start the training due now, if any; returns its fire time."""
        now = self.clock.wall() if now is None else now
        running = self._running is not None and not self._running.done()
        before = len(self.scheduler.missed)
        fire = self.scheduler.tick(now, running)
        for missed in self.scheduler.missed[before:]:
            self._record({"scheduled_for": missed, "status": "missed",
                          "detail": "a training was still running" if running
                          else "the scheduler was not running then"})
        self.client.set(self.last_key, repr(self.scheduler.last))
        if fire is not None:
            self._running = asyncio.get_running_loop().create_task(self._train(fire))
        return fire

    async def wait_idle(self, timeout_s: float = 300.0) -> bool:
        if self._running is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._running), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _train(self, fire: float) -> None:
        from .ray_gateway import run_task  # noqa: PLC0415
        from .training_job import scheduled_training  # noqa: PLC0415

        started = self.clock.wall()
        try:
            out = await run_task(scheduled_training, self.uri, self.history, self.replay_on,
                                 self.live, self.orchestrator, started)
            self._record({"scheduled_for": fire, "status": "succeeded", "started": started,
                          "ended": self.clock.wall(), "version": out["version"],
                          "promoted": out["promoted"], "run_id": out["run_id"],
                          "phases_s": out["phases_s"], "reasons": out["reasons"],
                          "patterns": out["patterns"]})
        except Exception as exc:
            self._record({"scheduled_for": fire, "status": "failed", "started": started,
                          "ended": self.clock.wall(),
                          "detail": f"{type(exc).__name__}: {exc}"})

    def _record(self, entry: dict[str, Any]) -> None:
        pipe = self.client.pipeline()
        pipe.lpush(self.runs_key, json.dumps(entry))
        pipe.ltrim(self.runs_key, 0, 999)
        pipe.execute()

    async def runs(self) -> list[dict[str, Any]]:
        """The run history, newest first."""
        return read_runs(self.client, self.runs_key)


def read_runs(client: Any, key: str = RUNS_KEY, limit: int = 1000) -> list[dict[str, Any]]:
    """Scheduled trainings, newest first: started, succeeded, failed or missed (what the
    control API shows; read from Redis, so it answers while the scheduler is down)."""
    return [json.loads(r) for r in client.lrange(key, 0, limit - 1)]
