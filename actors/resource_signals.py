"""What the processes serving selfheal's services use, read live: which actor lives in which
process comes from Ray's own actor table, each process's resident memory and CPU from this
node's operating system (psutil).

A Serve replica is the named actor ``SERVE_REPLICA::{app}#{deployment}#{id}``; the service it
serves is ``{app}/{deployment}``, the target a ``restart`` or ``scale`` step names. Every other
named actor (selfheal's own: the orchestrator, the monitors, the circuits; Serve's controller
and proxies) is read too, for the operator to see, but serves no service. Only processes on
this node can be read: a monitor reads its own node's (``selfheal up`` starts one; one per
node would cover a larger cluster). A process's limit is the memory it may use before it
fails (``replica_memory_limit_mb``): Ray sets none on a process unless asked, so the operator
says what their replicas get.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import psutil

from learning.resources import MemoryAlert, MemoryGrowth

from .ray_gateway import live_actors, this_node

__all__ = ["MemoryWatch", "ProcessReader", "ProcessUsage"]

REPLICA = "SERVE_REPLICA::"


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    target: str  # a replica "{app}/{deployment}/{pid}", an actor "{name}/{pid}"
    service: str | None  # a replica's "{app}/{deployment}"; None for other actors
    rss_bytes: float
    limit_bytes: float
    cpu_percent: float  # of one core, since the previous reading (0.0 at the first)


class ProcessReader:
    """Reads this node's named actors' processes; keeps each process between readings, as
    CPU use is measured from one reading to the next."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def read(self, limit_bytes: float) -> list[ProcessUsage]:
        node = this_node()
        out, alive = [], {}
        for actor in live_actors():
            name, pid = actor["name"] or "", actor["pid"]
            if not name or not pid or actor["node_id"] != node:
                continue
            try:
                proc = self._procs.get(pid) or psutil.Process(pid)
                with proc.oneshot():
                    rss, cpu = proc.memory_info().rss, proc.cpu_percent(interval=None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone since the table
                continue
            alive[pid] = proc
            if name.startswith(REPLICA):
                app, deployment, *_ = name[len(REPLICA):].split("#")
                service: str | None = f"{app}/{deployment}"
                target = f"{service}/{pid}"
            else:
                service, target = None, f"{name}/{pid}"
            out.append(ProcessUsage(target, service, float(rss), limit_bytes, float(cpu)))
        self._procs = alive
        return out


class MemoryWatch:
    """Each reading of this node's processes: the Serve replicas' memory into
    :class:`~learning.resources.MemoryGrowth` (a replaced replica's samples dropped), and what
    was read, for the operator."""

    def __init__(self, limit_mb: float) -> None:
        self.limit_bytes = limit_mb * 1024 * 1024
        self.growth = MemoryGrowth()
        self.reader = ProcessReader()
        self.replicas: dict[str, dict[str, Any]] = {}
        self.actors: dict[str, dict[str, Any]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=1000)

    def read(self, now: float) -> list[MemoryAlert]:
        read = self.reader.read(self.limit_bytes)
        seen = {u.target: u for u in read if u.service is not None}
        for gone in set(self.replicas) - set(seen):
            self.growth.forget(gone)
        self.replicas = {t: {"service": u.service, "rss_mb": u.rss_bytes / 2 ** 20,
                             "limit_mb": u.limit_bytes / 2 ** 20, "cpu_percent": u.cpu_percent}
                         for t, u in seen.items()}
        self.actors = {u.target: {"rss_mb": u.rss_bytes / 2 ** 20, "cpu_percent": u.cpu_percent}
                       for u in read if u.service is None}
        for u in seen.values():
            self.growth.observe(u.target, u.service or "", now, u.rss_bytes, u.limit_bytes)
        raised = self.growth.check(now)
        self.alerts.extend(a.as_dict() for a in raised)
        return raised

    def state(self) -> dict[str, Any]:
        """The Serve replicas last read (memory and limit in MiB, CPU in % of a core), the
        other named actors (memory, CPU), and the memory alerts raised."""
        return {"replicas": dict(self.replicas), "actors": dict(self.actors),
                "alerts": list(self.alerts)}
