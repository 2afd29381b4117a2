"""CircuitBreakerActor: the cluster-wide authority for one circuit.

A plain class; :mod:`actors.runtime` makes it a named, detached Ray actor (restarted by Ray
after a crash). It wraps :class:`~healing.cluster.ClusterCircuit` and holds no policy of its
own: processes ``join``, ``report`` batches of outcomes, ask for the probe lease, and
long-poll ``wait_for_change`` to learn of each new state the moment it exists. Every change
is written to Redis (``circuit:{name}``) before anyone is told of it, and a restarted actor
resumes from there.

Its methods are ``async`` so Ray runs them concurrently on one event loop: the long polls of
many processes wait side by side while reports keep arriving. Between awaits only one method
runs, so the core needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from healing.audit import circuit_transition
from healing.clock import Clock, SystemClock
from healing.cluster import ClusterCircuit, ClusterPolicy, ClusterState, ClusterView
from healing.config import CircuitConfig, WindowType
from healing.orchestration import TriggerEvent
from healing.workflow import Trigger

from .ray_gateway import tell_orchestrator
from .stores.audit_trail import AuditTrail
from .stores.redis_conn import connect
from .stores.redis_state import CircuitStateStore, StateStoreError

__all__ = ["CircuitBreakerActor", "config_from_dict", "config_to_dict"]

_log = logging.getLogger("selfheal.circuit_actor")

# The fields of CircuitConfig that the cluster decision uses; predicates stay in the
# processes, which classify outcomes before reporting them.
_FIELDS = ("failure_rate_threshold", "slow_call_rate_threshold", "slow_call_duration_s",
           "window_size", "minimum_number_of_calls", "permitted_calls_in_half_open",
           "wait_in_open_s", "wait_multiplier", "max_wait_in_open_s")


def config_to_dict(config: CircuitConfig) -> dict[str, Any]:
    d = {f: getattr(config, f) for f in _FIELDS}
    d["window_type"] = config.window_type.value
    return d


def config_from_dict(d: dict[str, Any]) -> CircuitConfig:
    return CircuitConfig(window_type=WindowType(d["window_type"]),
                         **{f: d[f] for f in _FIELDS})


class CircuitBreakerActor:
    """One circuit's cluster state. ``now`` arguments are UTC epoch seconds."""

    def __init__(self, name: str, config: dict[str, Any], policy: dict[str, Any],
                 redis_url: str, audit: dict[str, Any] | None = None,
                 orchestrator: str | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.core = ClusterCircuit(name, config_from_dict(config), ClusterPolicy(**policy))
        self.store = CircuitStateStore(connect(redis_url))
        saved = self.store.load(name)  # a restart resumes where the last transition left it
        if saved is not None:
            self.core.restore(saved)
        self._changed = asyncio.Condition()
        # a new circuit is written on its first call, so operators see it from the start
        self._unsaved = saved is None
        self._last_state = self.core.state
        self._stats_at = float("-inf")
        self.orchestrator = orchestrator  # the actor told when the circuit opens
        # Cluster transitions go to the audit trail through this actor's own spool. They hold
        # no identifiers, so the pseudonym key never travels to (or is stored with) the actor.
        self.audit = None if audit is None else AuditTrail.from_config(audit, None)

    async def join(self, process: str, now: float) -> dict[str, Any]:
        return self.core.join(process, now).to_dict()

    async def report(self, process: str, outcomes: list[tuple[float, int, bool]],
                     now: float) -> dict[str, Any]:
        changed = self.core.report(process, outcomes, now)
        await self._publish(changed)
        self._save_stats(now)
        return self.core.view().to_dict()

    async def acquire_probe(self, process: str, now: float) -> dict[str, Any]:
        before = self.core.version
        view = self.core.acquire_probe(process, now)
        await self._publish(view if view.version != before else None)
        return view.to_dict()

    async def tick(self, now: float) -> dict[str, Any]:
        await self._publish(self.core.tick(now))
        return self.core.view().to_dict()

    async def force_open(self, now: float, reason: str = "forced open by operator",
                         until: float | None = None) -> dict[str, Any]:
        view = self.core.force_open(now, reason, until)
        await self._publish(view)
        return view.to_dict()

    async def reset(self, now: float, reason: str = "reset by operator") -> dict[str, Any]:
        view = self.core.reset(now, reason)
        await self._publish(view)
        return view.to_dict()

    async def view(self) -> dict[str, Any]:
        return self.core.view().to_dict()

    async def process_rates(self, now: float) -> dict[str, tuple[int, float]]:
        return self.core.process_rates(now)

    async def wait_for_change(self, version: int, timeout_s: float) -> dict[str, Any]:
        """Return as soon as the version differs from ``version`` (or at the timeout)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):  # nothing new: the caller polls again
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.core.version != version), timeout_s)
        return self.core.view().to_dict()

    async def ping(self) -> bool:
        return True

    def _save_stats(self, now: float) -> None:
        """Calls and failure rates, cluster-wide and per process, into the circuit's hash for
        the control API and /metrics; at most once a second (reports come far more often)."""
        if now - self._stats_at < 1.0:
            return
        self._stats_at = now
        rates = self.core.process_rates(now)
        calls = sum(n for n, _ in rates.values())
        failed = sum(n * r for n, r in rates.values())
        cfg = self.core.config
        unit = "s" if cfg.window_type is WindowType.TIME else "calls"
        stats = {"calls": calls, "failure_rate": failed / calls if calls else 0.0,
                 "processes": {p: {"calls": n, "failure_rate": r} for p, (n, r) in rates.items()},
                 # the breaker's settings, so that an operator sees the rates against them
                 "settings": {"failure_rate_threshold": cfg.failure_rate_threshold,
                              "minimum_number_of_calls": cfg.minimum_number_of_calls,
                              "window": f"{cfg.window_size} {unit}",
                              "wait_in_open_s": cfg.wait_in_open_s}}
        with contextlib.suppress(StateStoreError):  # the next report tries again
            self.store.save_field(self.core.name, "stats", stats)

    async def _publish(self, changed: ClusterView | None) -> None:
        if changed is None and not self._unsaved:
            return
        try:
            self.store.save(self.core.name, self.core.view().to_dict(), self.core.snapshot())
            self._unsaved = False
        except StateStoreError:
            # Redis is away: the decision stands and is pushed; it is saved on the next call.
            self._unsaved = True
            _log.warning("circuit %s: state not persisted yet", self.core.name, exc_info=True)
        if changed is not None:
            previous, self._last_state = self._last_state, changed.state
            if changed.state is not previous:
                await self._audit(previous, changed)
            if previous is ClusterState.CLOSED and changed.state is ClusterState.OPEN:
                self._trigger_recovery(changed)
            async with self._changed:
                self._changed.notify_all()

    def _trigger_recovery(self, view: ClusterView) -> None:
        tell_orchestrator(self.orchestrator, TriggerEvent(
            Trigger.CIRCUIT_OPEN, self.core.name.split(":", 1)[0], self.core.name))

    async def _audit(self, previous: ClusterState, view: ClusterView) -> None:
        if self.audit is None:
            return
        record = circuit_transition(
            service=self.core.name.split(":", 1)[0], at=self.clock.wall(),
            circuit=f"{self.core.name} (cluster)", from_state=previous.name,
            to_state=view.state.name, reason=view.reason)
        try:
            await self.audit.aappend(record)
        except Exception:  # the decision stands; the hole in the trail is logged loudly
            _log.exception("circuit %s: transition not audited", self.core.name)
