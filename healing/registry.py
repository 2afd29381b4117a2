"""Circuit breakers by key: one per (service, provider), created on first use, evicted idle."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .circuit import CircuitBreaker, CircuitState
from .clock import Clock, SystemClock
from .config import CircuitConfig, check_positive

__all__ = ["CircuitBreakerRegistry", "ServiceId"]

DEFAULT_IDLE_TTL_S = 3600.0

# Evicting one of these would silently close a circuit that is protecting a provider.
_NEVER_EVICTED = frozenset({CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.FORCED_OPEN})


class ServiceId(NamedTuple):
    """What a circuit protects. Equal to (and hashed as) the plain tuple ``(service, provider)``."""

    service: str
    provider: str | None = None

    @property
    def name(self) -> str:
        return self.service if self.provider is None else f"{self.service}:{self.provider}"


class CircuitBreakerRegistry:
    """Finds or creates the breaker for a :class:`ServiceId`.

    Args:
        clock: shared by every breaker made here.
        default: config for services without their own.
        configs: per-service configs, by service name.
        idle_ttl_s: a CLOSED or DISABLED breaker unused this long may be evicted; an OPEN,
            HALF_OPEN or FORCED_OPEN one never is.
    """

    def __init__(self, clock: Clock | None = None, default: CircuitConfig | None = None,
                 configs: Mapping[str, CircuitConfig] | None = None,
                 idle_ttl_s: float = DEFAULT_IDLE_TTL_S) -> None:
        check_positive("idle_ttl_s", idle_ttl_s)
        self.clock = clock if clock is not None else SystemClock()
        self.default = default if default is not None else CircuitConfig()
        self.configs = dict(configs or {})
        self.idle_ttl_s = idle_ttl_s
        self._breakers: dict[tuple[str, str | None], CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Any], None]] = []
        self._last_sweep = self.clock.now()

    def get(self, service: str, provider: str | None = None, now: float | None = None
            ) -> CircuitBreaker:
        """The breaker for ``(service, provider)``, created if new; marks it used at ``now``."""
        breaker = self._breakers.get((service, provider))
        if breaker is None:
            breaker = self._create(ServiceId(service, provider))
        if now is not None:
            breaker.last_used = now
        return breaker

    def configure(self, service: str, config: CircuitConfig) -> None:
        """Set the config for breakers of ``service`` created from now on."""
        self.configs[service] = config

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        """Listen to every breaker's events, those that exist and those yet to be made."""
        with self._lock:
            self._listeners.append(listener)
            for b in self._breakers.values():
                b.add_listener(listener)

    def items(self) -> list[tuple[ServiceId, CircuitBreaker]]:
        return [(ServiceId(*k), b) for k, b in list(self._breakers.items())]

    def evict_idle(self, now: float) -> list[ServiceId]:
        """Forget breakers idle for ``idle_ttl_s`` that hold nothing worth keeping."""
        evicted = []
        with self._lock:
            for key, b in list(self._breakers.items()):
                if b.state not in _NEVER_EVICTED and now - b.last_used >= self.idle_ttl_s:
                    del self._breakers[key]
                    evicted.append(ServiceId(*key))
            self._last_sweep = now
        return evicted

    def _create(self, key: ServiceId) -> CircuitBreaker:
        now = self.clock.now()
        # Sweep where the registry grows, so its size stays bounded without a timer thread.
        if now - self._last_sweep >= self.idle_ttl_s:
            self.evict_idle(now)
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                config = self.configs.get(key.service, self.default)
                breaker = CircuitBreaker(key.name, config, self.clock)
                for listener in self._listeners:
                    breaker.add_listener(listener)
                self._breakers[key] = breaker
            return breaker
