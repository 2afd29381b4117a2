"""The faults a chaos experiment injects, each with the rollback that always runs after it.

As in Chaos Toolkit, a fault is a method (``inject``) and a rollback; the experiment runs
the rollback whatever happened in between, so a failed experiment never leaves a provider
down or a store stopped. ``service`` names the clinical service whose detection and
recovery the fault is timed by (None: the fault is on the platform, and what is checked is
that nothing is lost and everything answers afterwards).
"""

from __future__ import annotations

import abc
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from actors.ray_gateway import actor_node, find_actor, kill
from actors.serve_control import kill_replica

from ..control_app import APP_NAME
from .stack import ChaosStack

__all__ = ["ActorCrash", "ApiFlood", "Fault", "MetricBuffersFull", "NodeKill", "ProviderFault",
           "ReplicaKill", "StoreDown"]


@dataclass
class Fault(abc.ABC):
    """Injected ``at_s`` seconds into the experiment, rolled back ``duration_s`` later."""

    at_s: float
    duration_s: float = 0.0
    observed: dict[str, Any] = field(default_factory=dict)
    # False: a fault that sets the scene for a later one on its service, whose misses would
    # fall in its own MTTR window; it is injected, checked and replayed, but not timed
    timed: bool = True

    name = "fault"
    service: str | None = None
    provider: str | None = None

    @abc.abstractmethod
    def inject(self, stack: ChaosStack) -> None:
        """Break the part; every concrete fault says how."""

    def rollback(self, stack: ChaosStack) -> None:
        return None

    def describe(self) -> str:
        return self.name

    def broken_promises(self) -> list[str]:
        """What the fault itself saw go wrong (beyond the experiment's common checks)."""
        return []


_MODE_NAMES = {"fail": "down", "slow": "slow", "hang": "hangs", "leak": "leaks memory"}


@dataclass
class ProviderFault(Fault):
    """An AI provider that fails, answers slowly, hangs or leaks memory (the modes of
    :class:`~.providers.Providers`)."""

    key: str = "clinical_reasoning:gemini:pro"
    mode: str = "fail"

    def __post_init__(self) -> None:
        if self.mode not in _MODE_NAMES:
            raise ValueError(f"provider fault mode must be one of {', '.join(_MODE_NAMES)}, "
                             f"got {self.mode!r}")
        self.service, self.provider = self.key.split(":", 1)
        self.name = f"provider {self.key} {_MODE_NAMES[self.mode]}"

    def inject(self, stack: ChaosStack) -> None:
        stack.provider_switch().set(self.key, self.mode)

    def rollback(self, stack: ChaosStack) -> None:
        switch = stack.provider_switch()
        switch.set(self.key, "ok")
        if self.mode == "hang":
            self.observed["calls_held_at_once"] = switch.state(self.key)["hung"]


@dataclass
class ActorCrash(Fault):
    """A long-lived actor dies; Ray restarts it and it reloads its state from Redis."""

    actor: str = "orchestrator"

    def __post_init__(self) -> None:
        self.name = f"{self.actor} actor killed"

    def inject(self, stack: ChaosStack) -> None:
        handle = find_actor(self.actor)
        self.observed["found"] = handle is not None
        if handle is not None:
            kill(handle, restart=True)


@dataclass
class StoreDown(Fault):
    """A store stops (Redis: SHUTDOWN, its append-only file kept; PostgreSQL: a fast
    shutdown, connections cut) and comes back on the same files."""

    store: str = "redis"  # the stack's attribute: "redis" or "postgres"

    def __post_init__(self) -> None:
        label = {"redis": "Redis", "postgres": "PostgreSQL"}[self.store]
        self.name = f"{label} stopped for {self.duration_s:g} s"

    def inject(self, stack: ChaosStack) -> None:
        getattr(stack, self.store).stop()

    def rollback(self, stack: ChaosStack) -> None:
        getattr(stack, self.store).start()


@dataclass
class MetricBuffersFull(StoreDown):
    """Redis stops and every guarding process's metric buffer fills: the buffers are cut to
    ``buffer_max`` events for the fault (what a long Redis outage at this rate would reach),
    so events are dropped. The promise: the calls are not touched, the drops are counted,
    and the exact counters still reconcile with what was sent."""

    buffer_max: int = 2_000
    _sizes: list[int] = field(default_factory=list, repr=False)  # the buffers' own sizes

    def __post_init__(self) -> None:
        self.store = "redis"
        self.name = (f"metric buffers full (Redis stopped for {self.duration_s:g} s, "
                     f"{self.buffer_max} events each)")

    def inject(self, stack: ChaosStack) -> None:
        self.observed["dropped_before"] = self._dropped(stack)
        self._sizes = [p.recorder.buffer_max for p in stack.procs]
        for p in stack.procs:
            p.recorder.buffer_max = self.buffer_max
        super().inject(stack)

    def rollback(self, stack: ChaosStack) -> None:
        self.observed["dropped"] = self._dropped(stack) - self.observed.get("dropped_before", 0)
        for p, size in zip(stack.procs, self._sizes, strict=False):
            p.recorder.buffer_max = size
        super().rollback(stack)

    @staticmethod
    def _dropped(stack: ChaosStack) -> int:
        return sum(p.recorder.stats.dropped for p in stack.procs)

    def broken_promises(self) -> list[str]:
        if not self.observed.get("dropped"):
            return ["no metric event was dropped: the buffers never filled, so the fault "
                    "was not tried"]
        return []


@dataclass
class ReplicaKill(Fault):
    """A replica of the control API dies; Serve replaces it."""

    def __post_init__(self) -> None:
        self.name = "control API replica killed"

    def inject(self, stack: ChaosStack) -> None:
        self.observed["killed"] = kill_replica(f"{APP_NAME}/ControlAPI")


@dataclass
class NodeKill(Fault):
    """The worker node that runs ``actor`` dies (multi-node stacks only); Ray restarts its
    actors on another worker, Serve its replicas. The rollback adds a fresh worker."""

    actor: str = "orchestrator"

    def __post_init__(self) -> None:
        self.name = f"the worker node running the {self.actor} actor killed"

    def inject(self, stack: ChaosStack) -> None:
        if stack.cluster is None:
            raise RuntimeError("a node can only be killed on a multi-node stack")
        node = actor_node(self.actor)
        self.observed["node"] = node
        self.observed["killed"] = node is not None and stack.cluster.remove_worker(node)
        if not self.observed["killed"]:
            raise RuntimeError(f"the {self.actor} actor is on no worker node ({node})")

    def rollback(self, stack: ChaosStack) -> None:
        if stack.cluster is not None and self.observed.get("killed"):
            stack.cluster.add_worker()


# Requests no client of the API should send: each must get a 4xx, never a 5xx or a 2xx.
_FLOOD: tuple[tuple[str, str, dict[str, Any], str | None], ...] = (
    ("GET", "/api/v1/health", {}, None),  # no token
    ("GET", "/api/v1/circuits", {}, "shk_000000000000_" + "A" * 43),  # unknown token
    ("GET", "/api/v1/circuits", {}, "not a token"),
    ("POST", "/api/v1/recovery/trigger", {"content": b"{not json"}, "operator"),
    ("POST", "/api/v1/recovery/trigger", {"json": {"service": 7}}, "operator"),
    ("POST", "/api/v1/recovery/trigger", {"json": {"service": "x" * 10_000}}, "operator"),
    ("POST", "/api/v1/circuits/no-such-circuit/reset", {"json": {"reason": "x"}}, "viewer"),
    ("GET", "/api/v1/audit?limit=-5", {}, "auditor"),
    ("GET", "/api/v1/recovery/runs?since=yesterday", {}, "viewer"),
    ("DELETE", "/api/v1/tokens/nope", {}, "operator"),
)


@dataclass
class ApiFlood(Fault):
    """Malformed and unauthenticated requests, as fast as one client sends them. Each must
    be refused (4xx), or answered 503 while a store the API needs is away."""

    requests: int = 300

    def __post_init__(self) -> None:
        self.name = f"{self.requests} malformed or unauthenticated API requests"

    def inject(self, stack: ChaosStack) -> None:
        statuses: Counter[str] = Counter()
        with httpx.Client(base_url=stack.url, timeout=10) as client:
            for i in range(self.requests):
                method, path, kw, role = _FLOOD[i % len(_FLOOD)]
                token = stack.tokens.get(role, role) if role else None
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    status = client.request(method, path, headers=headers, **kw).status_code
                    # a 5xx by its code: 503 says "a store is away, retry", 500 a crash
                    statuses[str(status) if status >= 500 else f"{status // 100}xx"] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
        statuses["livez_after"] = 0
        with contextlib.suppress(httpx.HTTPError):
            statuses["livez_after"] = client_ok(stack)
        self.observed["statuses"] = dict(statuses)

    def broken_promises(self) -> list[str]:
        seen = self.observed.get("statuses", {})
        # 4xx, or 503 while a store it needs is away (overlapping faults): anything else is
        # a request that crashed or was let through
        out = [f"{n} answered {kind}, not 4xx" for kind, n in seen.items()
               if kind not in ("4xx", "503", "livez_after") and n]
        if not seen.get("livez_after"):
            out.append("the API did not answer its liveness probe after the flood")
        return out


def client_ok(stack: ChaosStack) -> int:
    """1 when the control API answers its liveness probe."""
    return int(httpx.get(stack.url + "/api/v1/livez", timeout=10).status_code == 200)
