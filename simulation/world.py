"""The simulated world: services, their providers and replicas, and the faults acting on them.

Only the *world* is simulated here: how likely a call to a provider is to fail or answer
wrongly at a given moment, and what recovery actions physically do to it (a restart cures a
leak after its warm-up, a scale adds a fresh replica, a reconnect ends a lost connection).
Everything that *decides* — breakers, fallback, safety, workflows — is the real ``healing``
code, driven by :mod:`simulation.engine`.

Model, per call to ``(service, provider)`` at time ``t``:

* a fault without a ``target`` acts on the service's own deployment, its primary provider;
  a fault with a ``target`` acts on that provider;
* the call fails with the service's background ``error_rate``, combined with each active
  fault's rate (independent causes), and with the failure rate of each dependency's primary
  unless that dependency's traffic has been moved off it (a route, or its primary's circuit
  open or forced open);
* ``memory_leak``: the rate grows by ``growth`` per minute, times the share of replicas that
  were running when the leak began (a fresh replica, from a scale or a restart, is clean).
  With ``mem_growth``, the leaking replicas' memory climbs from ``mem_base`` of their limit by
  that much a minute, and the rate only starts growing once it reaches ``fail_at``: the leak
  is in memory (:meth:`World.memory`) long before it is in errors;
* ``latency_spike``: latency is multiplied by ``latency_factor``; a call slower than the
  service's timeout fails;
* ``degradation``: the rate ramps from 0 to ``error_rate`` over ``ramp``; a
  ``bad_answer_share`` of those calls *answer*, wrongly (they fail the integrity check);
* ``flapping``: ``error_rate`` for the first half of each ``period``, then healthy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .scenario import FaultKind, FaultSpec, Scenario, ServiceSpec

__all__ = ["FaultInstance", "ProviderError", "World", "good_answer"]

_K = FaultKind
RESTART_WARMUP_S = 5.0  # a restarted or added replica takes traffic this long after the order
MEMORY_BASELINE = 0.45  # a healthy replica's share of its memory limit
AVERT_S = 600.0  # a restart also averts a restart-clearable fault due this soon after it


class ProviderError(Exception):
    """A simulated provider failed the call (error, refusal or timeout)."""


def good_answer(service: str) -> dict[str, Any]:
    """An answer every shipped integrity check accepts."""
    return {"service": service, "answer": "ok", "diagnosis": "as expected", "findings": ["ok"],
            "interactions": [], "confidence": 0.92}


def bad_answer(service: str) -> dict[str, Any]:
    """A wrong answer: it looks like one, but every shipped integrity check refuses it."""
    return {"service": service, "answer": None, "findings": [], "confidence": 0.21}


@dataclass
class FaultInstance:
    """One occurrence of a fault."""

    index: int  # position among the run's occurrences, for the report
    spec: FaultSpec
    start: float
    end: float  # its own scheduled end
    provider: str  # the provider it acts on
    cleared_at: float | None = None  # ended early by a recovery action
    leaked: int = 0  # memory leak: replicas running when it began

    @property
    def averted(self) -> bool:
        """Prevented before it began: it never acted."""
        return self.cleared_at is not None and self.cleared_at <= self.start

    @property
    def actual_end(self) -> float:
        return self.end if self.cleared_at is None else min(self.end, self.cleared_at)

    def active(self, t: float) -> bool:
        return self.start <= t < self.actual_end

    @property
    def impact_start(self) -> float:
        """When calls start failing: a leak that shows in memory first fails only once its
        memory reaches ``fail_at``; every other fault, from its start."""
        p = self.spec.params
        if self.spec.kind is _K.MEMORY_LEAK and p.get("mem_growth", 0.0) > 0 and \
                p.get("fail_at", 0.0) > p.get("mem_base", 0.0):
            return self.start + (p["fail_at"] - p["mem_base"]) / p["mem_growth"] * 60.0
        return self.start


@dataclass
class ServiceState:
    spec: ServiceSpec
    replicas: int = 1
    fresh_replicas: int = 0  # started after the current leak began
    moved: bool = False  # traffic moved off the primary (route or forced-open circuit)
    moved_by: object = None  # which force moved it (a later one supersedes an earlier end)
    down_from: float = -1.0  # a non-graceful restart: no replica answers in [from, until)
    down_until: float = -1.0
    faults: list[FaultInstance] = field(default_factory=list)  # active or future


class World:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.services = {n: ServiceState(s) for n, s in scenario.services.items()}
        # whether a service's callers are kept off its primary by a circuit that is open:
        # set by the simulation that guards the calls (none without self-healing)
        self.off_primary: Callable[[str], bool] = lambda _service: False
        self.instances: list[FaultInstance] = []
        for spec in scenario.faults:
            for start, end in spec.windows(scenario.duration_s):
                provider = spec.target or scenario.services[spec.service].primary
                self.instances.append(FaultInstance(0, spec, start, end, provider))
        self.instances.sort(key=lambda f: (f.start, f.spec.service))
        for i, f in enumerate(self.instances):
            f.index = i
        # One random stream per service and purpose, so that a run with self-healing and
        # its baseline see the same arrivals and the same background failures.
        self.rngs = {n: random.Random(f"{seed}:{n}:calls") for n in scenario.services}
        self.memory_rngs = {n: random.Random(f"{seed}:{n}:memory") for n in scenario.services}
        # One good answer per service, shared: nothing downstream changes an answer (the
        # cache stores a pickled copy), and building a fresh one per call is a third of a
        # simulated call's cost.
        self.answers = {n: good_answer(n) for n in scenario.services}

    def memory(self, service: str, t: float) -> float:
        """The share of its memory limit the service's fullest replica uses at ``t``: a
        steady baseline with a little noise, and a leaking replica's climb."""
        svc = self.services[service]
        used = MEMORY_BASELINE
        if svc.fresh_replicas < svc.replicas:  # some replica predates the leak
            for f in svc.faults:
                p = f.spec.params
                if f.spec.kind is _K.MEMORY_LEAK and f.active(t) and p["mem_growth"] > 0:
                    used = max(used, p["mem_base"] + p["mem_growth"] * (t - f.start) / 60.0)
        return min(1.0, max(0.0, used + self.memory_rngs[service].gauss(0.0, 0.005)))

    # -- faults -------------------------------------------------------------------------

    def fault_started(self, f: FaultInstance) -> None:
        svc = self.services[f.spec.service]
        svc.faults.append(f)
        if f.spec.kind is _K.MEMORY_LEAK:
            f.leaked = svc.replicas
            svc.fresh_replicas = 0

    def fault_ended(self, f: FaultInstance) -> None:
        svc = self.services[f.spec.service]
        if f in svc.faults:
            svc.faults.remove(f)

    def clear(self, service: str, action: str, t: float) -> list[FaultInstance]:
        """``action`` ends every active fault on ``service`` that it can clear."""
        cleared = []
        for f in list(self.services[service].faults):
            if f.active(t) and f.spec.cleared_by == action:
                f.cleared_at = t
                self.fault_ended(f)
                cleared.append(f)
        return cleared

    # -- actions' physical effects ------------------------------------------------------

    def stop(self, service: str, t_from: float, t_until: float) -> None:
        """No replica answers in ``[t_from, t_until)`` (a restart that is not graceful)."""
        svc = self.services[service]
        svc.down_from, svc.down_until = t_from, t_until

    def restart(self, service: str, t: float, surge: int = 0) -> list[FaultInstance]:
        """Every replica replaced by a fresh one, taking traffic at ``t``; ``surge`` extra
        replicas a graceful restart added first go away. Fresh processes and connection
        pools also avert a restart-clearable fault due within ``AVERT_S`` (how prevention
        works: a recycle at 13:55 and the 14:00 deadlock does not happen)."""
        svc = self.services[service]
        svc.replicas -= surge
        svc.fresh_replicas = svc.replicas
        for f in self.instances:
            if (f.spec.service == service and f.spec.cleared_by == "restart"
                    and t < f.start <= t + AVERT_S and f.cleared_at is None):
                f.cleared_at = f.start
        return self.clear(service, "restart", t)

    def surge(self, service: str) -> None:
        """A graceful restart's first move: one fresh replica more, before any is stopped."""
        svc = self.services[service]
        svc.replicas += 1
        svc.fresh_replicas += 1

    def scale(self, service: str, replicas: int, t: float) -> list[FaultInstance]:
        svc = self.services[service]
        added = replicas - svc.replicas
        svc.replicas = replicas
        # new replicas are fresh; removed ones are taken from the fresh first (worst case)
        svc.fresh_replicas = max(0, min(replicas, svc.fresh_replicas + added))
        return self.clear(service, "scale", t) if added > 0 else []

    # -- calls --------------------------------------------------------------------------

    def failure(self, service: str, provider: str, t: float) -> tuple[float, float, float]:
        """``(p_error, p_bad_answer, latency_factor)`` for a call at ``t``."""
        svc = self.services[service]
        ok = 1.0 - svc.spec.error_rate if provider == svc.spec.primary else 1.0
        bad = 0.0
        factor = 1.0
        if svc.down_from <= t < svc.down_until and provider == svc.spec.primary:
            return 1.0, 0.0, 1.0
        for f in svc.faults:
            if f.provider != provider or not f.start <= t < f.actual_end:
                continue
            p = f.spec.params
            kind = f.spec.kind
            if kind is _K.LATENCY_SPIKE:
                factor *= p["latency_factor"]
                continue
            if kind is _K.MEMORY_LEAK:
                leaked_share = 1.0 - svc.fresh_replicas / max(1, svc.replicas)
                rate = min(p["max_error_rate"],
                           p["growth"] * max(0.0, t - f.impact_start) / 60.0) * leaked_share
            elif kind is _K.FLAPPING:
                phase = ((t - f.start) % p["period"]) / p["period"]
                rate = p["error_rate"] if phase < 0.5 else 0.0
            elif kind is _K.DEGRADATION:
                rate = p["error_rate"] * min(1.0, (t - f.start) / p["ramp"])
                bad_share = p["bad_answer_share"]
                bad = 1.0 - (1.0 - bad) * (1.0 - rate * bad_share)
                rate *= 1.0 - bad_share
            else:
                rate = p["error_rate"]
            ok *= 1.0 - rate
        if provider == svc.spec.primary:
            for dep in svc.spec.depends_on:
                d = self.services[dep]
                if not (d.moved or self.off_primary(dep)):
                    ok *= 1.0 - self.failure(dep, d.spec.primary, t)[0]
        return 1.0 - ok, bad, factor

    def call(self, service: str, provider: str, t: float) -> dict[str, Any]:
        """One call at ``t``: an answer (possibly wrong), or :class:`ProviderError`."""
        return self.caller(service, provider, lambda: t)()

    def caller(self, service: str, provider: str, now: Callable[[], float]
               ) -> Callable[..., dict[str, Any]]:
        """``call(service, provider, now())`` as one long-lived function, for the simulator's
        hot loop: the common case (no fault near the service) is answered without lookups;
        the service's state is read at each call, so faults that start later are seen."""
        svc = self.services[service]
        draw, answer, faulted = self.rngs[service].random, self.answers[service], self._faulted
        primary, error_rate = provider == svc.spec.primary, svc.spec.error_rate
        independent = not svc.spec.depends_on

        def fn(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
            t = now()
            if independent and not svc.faults and t >= svc.down_until:
                if primary and draw() < error_rate:  # the primary's base error rate only
                    raise ProviderError(f"{provider} failed")
                return answer
            return faulted(service, provider, t)
        return fn

    def _faulted(self, service: str, provider: str, t: float) -> dict[str, Any]:
        """A call near a fault, a stop or a dependency: drawn from :meth:`failure`."""
        spec = self.services[service].spec
        rng = self.rngs[service]
        p_err, p_bad, factor = self.failure(service, provider, t)
        if factor != 1.0:
            latency = spec.latency_p50_s * math.exp(spec.latency_sigma * rng.gauss(0.0, 1.0))
            if latency * factor > spec.timeout_s:
                raise ProviderError(f"{provider} timed out after {spec.timeout_s:g} s")
        u = rng.random()
        if u < p_err:
            raise ProviderError(f"{provider} failed")
        if u < p_err + p_bad * (1.0 - p_err):
            return bad_answer(service)
        return self.answers[service]

    def probe(self, service: str, provider: str | None, t: float) -> bool:
        """A health probe or a recovery step's probe of ``provider`` (default: the primary)."""
        provider = provider or self.services[service].spec.primary
        try:
            answer = self.call(service, provider, t)
        except ProviderError:
            return False
        return answer["answer"] is not None

