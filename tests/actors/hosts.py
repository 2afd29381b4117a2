"""A stand-in for one process that guards services (a Serve replica, say), for Ray tests.

Each host runs its own guard, breakers and cluster agent on a ManualClock that the test
advances in step across hosts, so time is data and nothing waits for it to pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors.cluster_agent import ClusterAgent
from actors.runtime import circuit_actor
from healing import CircuitBreakerRegistry, CircuitConfig, Guard, InMemorySink, ManualClock
from healing.cluster import ClusterPolicy

EPOCH = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class GuardHost:
    def __init__(self, name: str, config: dict[str, Any], policy: dict[str, Any],
                 redis_url: str, start: float = 0.0,
                 audit: dict[str, Any] | None = None) -> None:
        self.clock = ManualClock(start=start, epoch=EPOCH)
        cfg = CircuitConfig(**config)
        self.breakers = CircuitBreakerRegistry(self.clock, cfg)
        self.guard = Guard(clock=self.clock, breakers=self.breakers, sink=InMemorySink())
        pol = ClusterPolicy(**policy)
        self.agent = ClusterAgent(self.breakers,
                                  lambda n: circuit_actor(n, cfg, pol, redis_url, audit),
                                  clock=self.clock, process_id=name,
                                  report_interval_s=0)  # the test calls step()

    def attach(self, service: str) -> str:
        return self.agent.attach(service).name

    def attach_provider(self, service: str, provider: str) -> str:
        return self.agent.attach(service, provider).name

    def state_of(self, service: str, provider: str) -> str:
        return self.breakers.get(service, provider).state.name

    def calls(self, service: str, ok: int, failed: int) -> list[str]:
        """Make guarded calls; returns how each ended."""
        ends = []

        def good() -> str:
            return "ok"

        def bad() -> str:
            raise ConnectionError("provider down")

        for fn in [bad] * failed + [good] * ok:
            try:
                self.guard.call(service, fn)
                ends.append("ok")
            except ConnectionError:
                ends.append("failed")
            except Exception as exc:
                ends.append(type(exc).__name__)
        return ends

    def step(self) -> None:
        self.agent.step()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def state(self, service: str) -> str:
        return self.breakers.get(service).state.name

    def applied(self) -> list[tuple[str, int, str]]:
        return list(self.agent.applied)

    def close(self) -> None:
        self.agent.close()
