"""When scheduled trainings are due, and which were missed (pure; times are UTC epoch s).

:class:`CronSchedule` reads a standard five-field cron expression (``0 3 * * *``: 03:00 UTC
every day) with croniter. :class:`TrainingScheduler` is told the time and whether a training
is still running, and answers which fire time to start now and which were missed: fire times
that passed while nothing ran them (the scheduler was down) or while the previous training was
still running. Only the latest due fire time is ever started: a scheduler that wakes up after
a week runs one training, not seven, and reports six missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import croniter

from healing.errors import ConfigError

__all__ = ["CronSchedule", "TrainingScheduler"]


class CronSchedule:
    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str) or not croniter.is_valid(expr):
            raise ConfigError("training_schedule", expr,
                              "must be a cron expression like '0 3 * * *' (minute hour "
                              "day-of-month month day-of-week, UTC)")
        self.expr = expr

    def next_after(self, t: float) -> float:
        return float(croniter(self.expr, datetime.fromtimestamp(t, UTC)).get_next(float))

    def fires_between(self, after: float, until: float, limit: int = 10_000) -> list[float]:
        """Fire times in ``(after, until]``, oldest first (at most ``limit``)."""
        out: list[float] = []
        t = self.next_after(after)
        while t <= until and len(out) < limit:
            out.append(t)
            t = self.next_after(t)
        return out


@dataclass
class TrainingScheduler:
    schedule: CronSchedule
    last: float  # fire times up to here are settled (started or reported missed)
    missed: list[float] = field(default_factory=list)

    def tick(self, now: float, running: bool) -> float | None:
        """The fire time to start a training for now, if any; records missed ones."""
        due = self.schedule.fires_between(self.last, now)
        if not due:
            return None
        self.last = due[-1]
        self.missed += due[:-1]
        if running:
            self.missed.append(due[-1])
            return None
        return due[-1]
