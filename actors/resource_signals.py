"""What the processes serving selfheal's services use, read live: which actor lives in which
process comes from Ray's own actor table, each process's resident memory from this node's
operating system (psutil).

A Serve replica is the named actor ``SERVE_REPLICA::{app}#{deployment}#{id}``; the service it
serves is ``{app}/{deployment}``, the target a ``restart`` or ``scale`` step names. Only
processes on this node can be read: a monitor reads its own node's replicas (``selfheal up``
starts one; one per node would cover a larger cluster). A replica's limit is the memory it
may use before it fails (``replica_memory_limit_mb``): Ray sets none on a process unless
asked, so the operator says what their replicas get.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from .ray_gateway import live_actors, this_node

__all__ = ["ProcessMemory", "replica_memory"]

REPLICA = "SERVE_REPLICA::"


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    target: str  # "{app}/{deployment}/{pid}": one replica
    service: str
    rss_bytes: float
    limit_bytes: float


def replica_memory(limit_bytes: float) -> list[ProcessMemory]:
    """The resident memory of every Serve replica on this node."""
    node = this_node()
    out = []
    for actor in live_actors():
        name = actor["name"] or ""
        if not name.startswith(REPLICA) or actor["node_id"] != node or not actor["pid"]:
            continue
        app, deployment, *_ = name[len(REPLICA):].split("#")
        try:
            rss = psutil.Process(actor["pid"]).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone since the table was read
            continue
        service = f"{app}/{deployment}"
        out.append(ProcessMemory(f"{service}/{actor['pid']}", service, float(rss),
                                 limit_bytes))
    return out
