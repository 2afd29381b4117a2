"""A scenario's policy: the catalogue's, for the scenario's services.

The simulator decides as production does because both build their one ``Policy`` from a
service catalogue with ``learning.policy.policy_from``. A scenario brings its own services
(their load, latency and faults are what it simulates); the catalogue brings everything else:
breaker, health-check, error-threshold and recovery settings, and the strategies and
workflows of the services it declares. A scenario service the catalogue does not declare gets
the generic runbooks (``healing.runbooks``); the catalogue's other services are left out.

With no catalogue given, the embedded default (``healing.catalogue.SHIPPED``) is used, the
same one ``selfheal up`` runs on.
"""

from __future__ import annotations

import dataclasses
import functools

from healing.catalogue import Catalogue, Service, load_catalogue
from learning.policy import Policy, policy_from

from .scenario import Scenario, ServiceSpec

__all__ = ["Policy", "catalogue_for", "default_policy", "shipped_catalogue"]


@functools.cache
def shipped_catalogue() -> Catalogue:
    """The embedded default catalogue, parsed once per process (it is immutable)."""
    return load_catalogue()


def catalogue_for(scenario: Scenario, catalogue: Catalogue | None = None) -> Catalogue:
    """``catalogue`` (default: the shipped one) with ``scenario``'s services."""
    base = catalogue if catalogue is not None else shipped_catalogue()
    services = {name: _service(spec, base.services.get(name))
                for name, spec in scenario.services.items()}
    return dataclasses.replace(
        base, services=services,
        strategies=tuple(s for s in base.strategies if s.service in services),
        workflows=tuple(w for w in base.workflows if w.service in services))


def default_policy(scenario: Scenario, catalogue: Catalogue | None = None) -> Policy:
    """The policy ``scenario`` runs under: ``catalogue``'s (default: the shipped one)."""
    return policy_from(catalogue_for(scenario, catalogue))


def _service(spec: ServiceSpec, declared: Service | None) -> Service:
    """The scenario's service as the catalogue sees it. What the scenario simulates (its
    providers, operation, criticality and normal error rate) comes from the scenario; an
    explicit error threshold and the health checks, from the catalogue."""
    return Service(spec.name, spec.providers, spec.operation, spec.criticality,
                   spec.error_rate, declared.error_threshold if declared else None,
                   declared.checks if declared else ())
