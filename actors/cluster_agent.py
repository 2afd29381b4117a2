"""The per-process side of a cluster-wide circuit.

Each process keeps its local :class:`~healing.circuit.CircuitBreaker`, which decides every
request in-process. The agent:

* taps the breaker's outcomes and reports them to the circuit's actor in batches
  (``report_interval_s``, 20 ms by default), off the request path;
* long-polls the actor and applies each new cluster state to the local breaker: OPEN (held
  open, managed, until the cluster's retry time) or CLOSED (released, if the cluster was
  what held it open);
* when the cluster's wait has passed, asks for the probe lease and, if it is granted,
  half-opens the local breaker so this process, and only this one, runs the trial calls;
* half-opens a breaker that opened on its own (this process's own trouble) when its own
  wait passes, since no other process needs to agree.

Time comes from the injected clock: monotonic for the local breaker, wall (UTC epoch) for
everything sent to the actor.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healing.circuit import CircuitBreaker, CircuitState
from healing.clock import Clock, SystemClock
from healing.cluster import ClusterState
from healing.registry import CircuitBreakerRegistry

from .ray_gateway import get

__all__ = ["ClusterAgent"]

_log = logging.getLogger("selfheal.cluster_agent")

_HELD = {ClusterState.OPEN.value, ClusterState.HALF_OPEN.value, ClusterState.FORCED_OPEN.value}
# held states that end by the clock: the probe lease is asked for once retry_at passes
_TIMED = {ClusterState.OPEN.value, ClusterState.FORCED_OPEN.value}
FOREVER_S = 10 * 365 * 86400.0


@dataclass
class _Circuit:
    breaker: CircuitBreaker
    actor: Any
    tap: deque[tuple[float, int, bool]] = field(default_factory=deque)
    view: dict[str, Any] = field(default_factory=dict)
    imposed: bool = False  # the local breaker is open because the cluster said so
    applied_version: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClusterAgent:
    """Connects this process's breakers to their cluster actors.

    Args:
        breakers: this process's breaker registry.
        actor_for: returns the actor handle for a circuit name (see ``runtime.circuit_actor``).
        clock: this process's clock.
        process_id: how the actor knows this process (random by default).
        report_interval_s: how often outcomes are reported and probes considered; 0 means
            only when :meth:`step` is called (tests drive it that way, in step with a
            manual clock).
    """

    def __init__(self, breakers: CircuitBreakerRegistry, actor_for: Callable[[str], Any], *,
                 clock: Clock | None = None, process_id: str | None = None,
                 report_interval_s: float = 0.02, poll_timeout_s: float = 2.0) -> None:
        self.breakers = breakers
        self.actor_for = actor_for
        self.clock = clock if clock is not None else SystemClock()
        self.process_id = process_id or uuid.uuid4().hex[:12]
        self.report_interval_s = report_interval_s
        self.poll_timeout_s = poll_timeout_s
        self._circuits: dict[str, _Circuit] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reported = 0
        self.applied: list[tuple[str, int, str]] = []  # (circuit, version, state) as applied

    # -- wiring ------------------------------------------------------------------------

    def attach(self, service: str, provider: str | None = None) -> CircuitBreaker:
        """Put ``(service, provider)``'s breaker under cluster management."""
        breaker = self.breakers.get(service, provider)
        if breaker.name in self._circuits:
            return breaker
        circuit = _Circuit(breaker, self.actor_for(breaker.name))
        breaker.tap(circuit.tap)
        breaker.manage(True)
        self._circuits[breaker.name] = circuit
        self._apply(circuit, get(circuit.actor.join.remote(self.process_id,
                                                                self.clock.wall())))
        t = threading.Thread(target=self._poll, args=(circuit,), daemon=True,
                             name=f"circuit-poll-{breaker.name}")
        t.start()
        self._threads.append(t)
        if len(self._circuits) == 1 and self.report_interval_s > 0:
            r = threading.Thread(target=self._report_loop, daemon=True, name="circuit-report")
            r.start()
            self._threads.append(r)
        return breaker

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.poll_timeout_s + 1)

    # -- reporting and probing ---------------------------------------------------------

    def _report_loop(self) -> None:
        while not self._stop.wait(self.report_interval_s):
            try:
                self.step()
            except Exception:  # the actor may be restarting; the next step tries again
                _log.warning("cluster report failed", exc_info=True)

    def step(self) -> None:
        """Report tapped outcomes, then probe or half-open where the time has come."""
        clock = self.clock
        offset = clock.wall() - clock.now()  # monotonic -> epoch, for the actor
        pending = []
        for c in list(self._circuits.values()):
            batch = []
            while c.tap:
                at, code, trial = c.tap.popleft()
                batch.append((at + offset, code, trial))
            if batch:
                pending.append((c, c.actor.report.remote(self.process_id, batch, clock.wall())))
                self.reported += len(batch)
        for c, ref in pending:
            self._apply(c, get(ref))
        for c in list(self._circuits.values()):
            self._maybe_probe(c)

    def _maybe_probe(self, c: _Circuit) -> None:
        b = c.breaker
        if b.state is not CircuitState.OPEN:
            return
        now = self.clock.now()
        if not c.imposed:
            if now >= (b.retry_at() or 0.0):  # its own trouble: its own wait decides
                b.start_probe(now, "own wait elapsed")
            return
        retry_at = c.view.get("retry_at")
        if c.view.get("state") not in _TIMED or retry_at is None \
                or self.clock.wall() < float(retry_at):
            return
        view = get(c.actor.acquire_probe.remote(self.process_id, self.clock.wall()))
        self._apply(c, view)

    # -- applying cluster state --------------------------------------------------------

    def _poll(self, c: _Circuit) -> None:
        while not self._stop.is_set():
            try:
                view = get(c.actor.wait_for_change.remote(
                    c.view.get("version", -1), self.poll_timeout_s))
            except Exception:
                _log.warning("long poll for %s failed; retrying", c.breaker.name, exc_info=True)
                self._stop.wait(0.2)
                continue
            self._apply(c, view)

    def _apply(self, c: _Circuit, view: dict[str, Any]) -> None:
        with c.lock:
            if view["version"] < c.view.get("version", -1):
                return  # an older answer overtaken by a newer one
            c.view = view
            if view["version"] == c.applied_version:
                return
            c.applied_version = view["version"]
            b, now = c.breaker, self.clock.now()
            state = view["state"]
            if state in _HELD:
                if view.get("lease_holder") == self.process_id:
                    if b.state is CircuitState.OPEN:
                        b.start_probe(now, "cluster probe lease granted")
                else:
                    retry_at = view.get("retry_at")
                    local = now + (float(retry_at) - self.clock.wall()
                                   if retry_at is not None else FOREVER_S)
                    b.hold_open(now, max(local, now), f"cluster: {view['reason']}")
                    c.imposed = True
            elif c.imposed:
                c.imposed = False
                b.reset(now, f"cluster: {view['reason']}")
            self.applied.append((b.name, view["version"], state))
