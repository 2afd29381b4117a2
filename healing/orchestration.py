"""The recovery orchestrator's queue: which workflow runs next, and which triggers wait.

Pure and single-threaded, like Tune's event loop: the orchestrator actor calls it one event
at a time. Rules:

* critical before high before medium before low; first come first served within a priority;
* at most one workflow per service at a time;
* a trigger for a service that is already queued or being healed is coalesced into it
  (counted, not run again);
* after a workflow for a service ends, the same alarm for it is refused until its cool-down
  has passed, and a different alarm is heard: a run for an error spike does not swallow the
  circuit opening of an outage that follows it (a chaos run showed it did, when the cool-down
  was per service). An anomaly and an error threshold are one alarm (climbing errors, seen
  by the model and by the bound). After an operator's run every automatic trigger of the
  service waits (they have taken charge); a manual trigger is always heard.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from dataclasses import dataclass, field

from .config import check_non_negative
from .workflow import RecoveryWorkflow, Trigger

__all__ = ["Admission", "RecoveryQueue", "TriggerEvent"]

# triggers that are one alarm for the cool-down: what it holds back after a run for either
_SAME_ALARM = {Trigger.ANOMALY: Trigger.ERROR_THRESHOLD}


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    trigger: Trigger
    service: str
    detail: str = ""


class Admission(enum.Enum):
    QUEUED = "queued"
    COALESCED = "coalesced"
    COOLING_DOWN = "cooling_down"
    NO_WORKFLOW = "no_workflow"


@dataclass
class RecoveryQueue:
    """Workflows by (trigger, service); admits triggers and hands out the next run."""

    workflows: list[RecoveryWorkflow]
    cooldown_s: float = 300.0
    _heap: list[tuple[int, int, RecoveryWorkflow, TriggerEvent]] = field(default_factory=list)
    _queued: set[str] = field(default_factory=set)
    coalesced: dict[str, int] = field(default_factory=dict)  # service -> triggers folded in
    _running: set[str] = field(default_factory=set)
    # (service, alarm) -> when its last run ended; alarm None: an operator's run
    _ended_at: dict[tuple[str, Trigger | None], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_non_negative("cooldown_s", self.cooldown_s)
        self._by_key = {(w.trigger, w.service): w for w in self.workflows}
        self._seq = itertools.count()

    def submit(self, event: TriggerEvent, now: float) -> Admission:
        """Admit a trigger. Never blocks; the answer says what became of it."""
        service = event.service
        if service in self._running or service in self._queued:
            self.coalesced[service] = self.coalesced.get(service, 0) + 1
            return Admission.COALESCED
        if event.trigger is not Trigger.MANUAL and self.cooling_down(service, event.trigger,
                                                                    now):
            return Admission.COOLING_DOWN
        workflow = self._by_key.get((event.trigger, service))
        if workflow is None:
            return Admission.NO_WORKFLOW
        heapq.heappush(self._heap, (int(workflow.priority), next(self._seq), workflow, event))
        self._queued.add(service)
        return Admission.QUEUED

    def next(self) -> tuple[RecoveryWorkflow, TriggerEvent] | None:
        """The next workflow to start (its service is now running), or None."""
        if not self._heap:
            return None
        _, _, workflow, event = heapq.heappop(self._heap)
        self._queued.discard(workflow.service)
        self._running.add(workflow.service)
        return workflow, event

    def finish(self, event: TriggerEvent, now: float) -> None:
        """The workflow started for ``event`` ended at ``now``: its cool-down starts."""
        self._running.discard(event.service)
        alarm = None if event.trigger is Trigger.MANUAL else _alarm(event.trigger)
        self._ended_at[(event.service, alarm)] = now

    def cooling_down(self, service: str, trigger: Trigger, now: float) -> bool:
        """Whether an automatic ``trigger`` for ``service`` would be refused at ``now``."""
        return any(now - self._ended_at.get((service, t), -math.inf) < self.cooldown_s
                   for t in (_alarm(trigger), None))

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def __len__(self) -> int:
        return len(self._heap)


def _alarm(trigger: Trigger) -> Trigger:
    return _SAME_ALARM.get(trigger, trigger)
