"""One guarding process, wired to the cluster: what a Serve replica or a job starts with.

:func:`bootstrap` runs once per deployment (it migrates the audit database and, with no
``REDIS_URL``, starts the embedded Redis). :class:`GuardProcess` is then built in every
process: a :class:`~healing.guard.Guard` whose outcomes go to the Redis metric recorder,
whose failures go to the durable audit trail, whose circuits are shared through their
cluster actors, and which obeys the cluster's routes and cache warming
(:mod:`actors.cluster_control`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from healing import (
    CircuitBreaker,
    CircuitBreakerRegistry,
    CircuitConfig,
    CircuitTransitioned,
    Clock,
    FallbackCache,
    Guard,
    RouteTable,
    SystemClock,
)
from healing.audit import circuit_transition
from healing.catalogue import SHIPPED, load_catalogue
from healing.cluster import ClusterPolicy
from healing.limits import CallGate, CallPolicy

from .cluster_agent import ClusterAgent
from .cluster_control import ControlListener
from .ray_gateway import place_actors
from .runtime import circuit_actor
from .settings import Settings
from .stores.audit_sql import AuditStore
from .stores.audit_trail import AuditTrail
from .stores.embedded_redis import EmbeddedRedis
from .stores.metric_stream import MetricRecorder
from .stores.redis_conn import connect

__all__ = ["GuardProcess", "bootstrap"]

_log = logging.getLogger("selfheal.process")


def bootstrap(settings: Settings) -> tuple[Settings, EmbeddedRedis | None]:
    """Prepare shared state once: the audit schema, and Redis if none is configured.

    Returns the settings every process should use (with the embedded Redis's URL filled
    in) and the embedded server, if one was started (the caller stops it).
    """
    store = AuditStore(settings.audit_database_url())
    store.migrate()
    store.dispose()
    if settings.redis_url is not None:
        return settings, None
    server = EmbeddedRedis(settings.data_dir / "redis").start()
    return settings.model_copy(update={"redis_url": server.url}), server


class GuardProcess:
    """A guard, a metric recorder, an audit trail and a cluster agent for this process."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 process_id: str | None = None, circuit: CircuitConfig | None = None,
                 policy: ClusterPolicy | None = None,
                 orchestrator: str | None = "orchestrator",
                 limits: Mapping[tuple[str, str | None], CallPolicy] | None = None) -> None:
        if settings.redis_url is None:
            raise ValueError("GuardProcess needs settings.redis_url: call bootstrap() first")
        redis_url = settings.redis_url
        place_actors(settings.actor_resources)  # the circuit actors this process starts
        circuit = circuit if circuit is not None else CircuitConfig()
        policy = policy if policy is not None else ClusterPolicy()
        self.breakers = CircuitBreakerRegistry(clock, circuit)
        self.recorder = MetricRecorder(
            connect(redis_url), sample_rate=settings.metrics_sample_rate,
            maxlen=settings.metrics_stream_maxlen, buffer_max=settings.metrics_buffer_max,
            retention_s=settings.metrics_stream_retention_s)
        audit_cfg = settings.audit_config()
        self.audit = AuditTrail.from_config(audit_cfg, settings.pseudonym_key_bytes())
        # One pseudonym key across the cluster, so a shared cached answer keys the same
        # patient in every process (cache_warm) and nobody's key is random per process.
        self.cache = FallbackCache(key=settings.pseudonym_key_bytes())
        self.routes = RouteTable()
        # Timeouts, bulkheads, adaptive limits and retry budgets: the catalogue's (the
        # operator's, or the shipped one), unless the caller brings its own.
        if limits is None:
            limits = load_catalogue(settings.catalogue or SHIPPED).call_policies()
        self.gate = CallGate(limits, clock)
        self.guard = Guard(clock=clock, breakers=self.breakers, sink=self.recorder,
                           audit=self.audit, cache=self.cache, routes=self.routes,
                           gate=self.gate)
        # Circuits that open tell the cluster's orchestrator (runtime.orchestrator's default
        # name), which starts the matching recovery workflow.
        self.agent = ClusterAgent(
            self.breakers,
            lambda name: circuit_actor(name, circuit, policy, redis_url, audit_cfg,
                                       orchestrator),
            clock=clock, process_id=process_id)
        self.control = ControlListener(redis_url, self.routes, self.cache,
                                       clock or SystemClock(), process_id=self.agent.process_id,
                                       guard=self.guard)
        self._wall = (clock or SystemClock()).wall
        self.breakers.add_listener(self._audit_transition)

    def _audit_transition(self, event: Any) -> None:
        # Runs on the thread whose call caused the transition, after the breaker's lock is
        # released: the record is durable before that call returns, like every other.
        if not isinstance(event, CircuitTransitioned):
            return
        record = circuit_transition(
            service=event.circuit.split(":", 1)[0], at=self._wall(),
            circuit=f"{event.circuit} (process {self.agent.process_id})",
            from_state=event.from_state.name, to_state=event.to_state.name,
            reason=event.reason, failure_rate=event.failure_rate,
            slow_call_rate=event.slow_call_rate)
        try:
            self.audit.append(record)
        except Exception:
            self.guard.audit_failures += 1
            _log.exception("transition of %s not audited", event.circuit)

    def register_probe(self, service: str, fn: Callable[..., Any],
                       provider: str | None = None, args: tuple[Any, ...] = ()) -> None:
        """Let the orchestrator probe ``service``'s ``provider`` (None: its primary) through
        this process: ``fn(*args)`` calls the provider once and raises unless it answered (it
        may be async; it runs on a thread of its own). A ``retry`` step and the switch back
        after a fallback run it past the breaker; the ``probe_succeeds`` criterion runs the
        primary's through this guard (a fallback answer counts), and the guard gives
        ``args`` to the alternative providers too: pass what the probe asks as ``args``
        rather than binding it into ``fn``, or an alternative that takes a question is
        called without one. Without any process that registered one, they cannot tell that
        the service is back."""
        self.control.register_probe(service, fn, provider, args)

    def share(self, service: str, provider: str | None = None) -> CircuitBreaker:
        """Make ``(service, provider)``'s circuit cluster-wide."""
        return self.agent.attach(service, provider)

    def circuits(self) -> dict[str, dict[str, Any]]:
        """This process's view of its circuits: local state and what the cluster said."""
        out = {}
        for sid, b in self.breakers.items():
            m = b.metrics()
            out[sid.name] = {"local": b.state.name, "calls": m.calls, "failed": m.failed,
                             **{f"recorder_{k}": v for k, v in
                                dataclasses.asdict(self.recorder.stats).items()
                                if k in ("recorded", "sent", "dropped")}}
        return out

    def close(self) -> None:
        self.control.close()
        self.agent.close()
        self.recorder.close()
        self.audit.close()
