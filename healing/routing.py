"""Routes: a decision, taken once for the whole cluster, to answer a service from a tier.

A recovery workflow that says "imaging is down: queue studies for manual review" or "the
database is down: read from the replica" does not wait for every process's breaker to trip
on its own. It sets a :class:`Route` for the service; every guard holding the same
:class:`RouteTable` then skips the primary and starts the service's fallback plan at the
routed tier (still cleared by clinical safety and integrity-checked, like any tier).

A route never takes from a request something safety would refuse it: requests for a
critical service, life-critical requests, requests outside the strategy's vetted contexts and
requests whose context the routed tier is refused for keep calling the primary.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import NamedTuple

from .config import _check

__all__ = ["Route", "RouteTable"]


class Route(NamedTuple):
    """Answer ``service`` from ``tier`` (a tier label such as ``degraded_mode`` or
    ``alternative_provider:read_replica``, or a tier method's name)."""

    tier: str
    reason: str
    since: float  # UTC epoch seconds
    # UTC epoch seconds from which the route no longer applies (a workflow's route ends, so
    # the primary gets traffic back even where nothing can probe it); None: until cleared
    until: float | None = None

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


class RouteTable:
    """The routes a process's guards obey, keyed by service.

    Reads are one ``dict.get`` on the request path; writes replace the whole mapping, so a
    reader never sees a half-applied update.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: Mapping[str, Route] = {}
        self.version = 0

    def set(self, service: str, route: Route) -> None:
        _check(isinstance(service, str) and bool(service), "service", service,
               "must be a non-empty string")
        _check(isinstance(route, Route) and bool(route.tier), "route", route,
               "must be a Route naming a tier")
        with self._lock:
            self.routes = {**self.routes, service: route}
            self.version += 1

    def clear(self, service: str) -> Route | None:
        with self._lock:
            old = self.routes.get(service)
            if old is not None:
                self.routes = {k: v for k, v in self.routes.items() if k != service}
                self.version += 1
            return old

    def replace(self, routes: Mapping[str, Route]) -> None:
        """Adopt a complete set of routes (a process catching up with the cluster)."""
        with self._lock:
            self.routes = dict(routes)
            self.version += 1

    def get(self, service: str) -> Route | None:
        return self.routes.get(service)
