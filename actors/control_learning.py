"""The control API's reads of what selfheal learns: recurring failures and services that
fail together (from the audit trail), the scheduled trainings, and the SLOs and pager notices
(from Redis). A part of :class:`~actors.control.ControlBackend`, kept apart to keep each
module to one subject."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .live_history import recorded_failures

__all__ = ["LearningReads"]


class LearningReads:
    """Mixed into ControlBackend: uses its ``settings``, ``clock``, ``redis``, ``store`` and
    ``orchestrator_state``."""

    settings: Any
    clock: Any
    redis: Any
    store: Any
    orchestrator_state: Any

    def patterns(self, since: float, until: float) -> list[dict[str, Any]]:
        """Recurring failures (seed 7.1) in the live trail between ``since`` and ``until``,
        by time (several per service, each with its cause)."""
        from learning.patterns import PatternRecognizer  # noqa: PLC0415

        now = self.clock.wall()
        return [{"service": p.service, "frequency": p.frequency,
                 "description": p.describe(), "typical_cause": p.typical_cause,
                 "occurrences": p.occurrences, "periods_observed": p.periods_observed,
                 "last_occurrence": p.last_occurrence, "next_expected": p.next_after(now),
                 "recommended_action": p.recommended_action, "priority": p.priority,
                 "estimated_impact": p.estimated_impact}
                for p in PatternRecognizer().fit(recorded_failures(self.store, since, until))]

    def combinations(self, since: float, until: float) -> list[dict[str, Any]]:
        """Services that failed together in the live trail, which one first, with what."""
        from learning.patterns import PatternRecognizer  # noqa: PLC0415

        return [{**dataclasses.asdict(c), "services": list(c.services),
                 "description": c.describe()} for c in PatternRecognizer().combinations(
                     recorded_failures(self.store, since, until))]

    def training(self, limit: int = 100) -> dict[str, Any]:
        """The training schedule, when it fires next, and its runs, newest first (succeeded
        with their phase times, failed with why, missed)."""
        from learning.schedule import CronSchedule  # noqa: PLC0415

        from .scheduler_actor import read_runs  # noqa: PLC0415

        cron = self.settings.training_schedule
        return {"schedule": cron,
                "next_at": CronSchedule(cron).next_after(self.clock.wall()) if cron else None,
                "runs": read_runs(self.redis, limit=limit)}

    def slo(self, monitor: str = "monitor") -> dict[str, Any]:
        """Every service's SLO as the monitor last computed it (objective, budget left, burn
        rate per window, alerts in force), and the pager's notices (pages and tickets)."""
        raw = self.redis.get(f"selfheal:{monitor}:slo")
        found = json.loads(raw) if raw else {"at": None, "services": {}}
        return {**found, "paging": self.settings.paging,
                "notices": self.orchestrator_state.items("notices")}

    def resources(self, monitor: str = "monitor") -> dict[str, Any]:
        """The Serve replicas' memory as the monitor last read it (MiB, against their limit)
        and the memory alerts it raised."""
        raw = self.redis.get(f"selfheal:{monitor}:memory")
        return json.loads(raw) if raw else {"at": None, "replicas": {}, "alerts": []}
