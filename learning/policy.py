"""The one policy both worlds run on: the live system and the simulator.

How services are guarded (breakers, fallback strategies), watched (health checks, the error
threshold, the predictive monitor) and healed (workflows, their cool-down, the defaults of
their steps). Both build it the same way, with :func:`policy_from`, from a
service catalogue (``healing.catalogue``): the live system from the operator's catalogue
(``selfheal up``), the simulator from the same catalogue with a scenario's services
(``simulation.policy``); the live orchestrator takes the object itself
(``actors.runtime.orchestrator(policy=...)``), so a replay tests the policy that production
runs. It lives here, below the simulator and the actors, because it holds the
predictive monitor's policy, which training learns and promotes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from healing.catalogue import Catalogue
from healing.config import CircuitConfig
from healing.fallback import FallbackStrategy
from healing.health import HealthPolicy
from healing.recovery import ErrorThresholdRule, RecoveryPolicy
from healing.runbooks import strategies_for, workflows_for
from healing.workflow import RecoveryWorkflow

from .monitor import MonitorPolicy

__all__ = ["Policy", "policy_from"]


@dataclass(frozen=True)
class Policy:
    circuit: CircuitConfig
    health: HealthPolicy
    strategies: tuple[FallbackStrategy, ...]
    workflows: tuple[RecoveryWorkflow, ...]
    error_thresholds: dict[str, float]
    error_window_s: float = 30.0
    error_check_s: float = 5.0
    error_min_calls: int = 10
    error_z: float = 2.326  # one-sided 99 %
    cooldown_s: float = 120.0
    monitor: MonitorPolicy = dataclasses.field(default_factory=MonitorPolicy)
    # a trained monitor model: some services' own policies (learning.training)
    monitor_per_service: dict[str, MonitorPolicy] = dataclasses.field(default_factory=dict)
    # what steps do when their config is silent: the live orchestrator's defaults too
    recovery: RecoveryPolicy = dataclasses.field(default_factory=RecoveryPolicy)

    def error_rule(self, service: str) -> ErrorThresholdRule:
        """When ``service``'s errors raise an ``error_threshold`` trigger, in both worlds."""
        return ErrorThresholdRule(self.error_thresholds[service], self.error_window_s,
                                  self.error_min_calls, self.error_z)


def policy_from(catalogue: Catalogue) -> Policy:
    """The policy a catalogue declares, with the generic runbooks (``healing.runbooks``) for
    services that declare no strategy or workflow of their own."""
    return Policy(
        circuit=catalogue.circuit, health=catalogue.health,
        strategies=strategies_for(catalogue.services, catalogue.strategies),
        workflows=workflows_for(catalogue.services, catalogue.workflows),
        error_thresholds=catalogue.error_thresholds(),
        error_window_s=catalogue.errors.window_s, error_check_s=catalogue.errors.check_s,
        error_min_calls=catalogue.errors.min_calls, error_z=catalogue.errors.z,
        cooldown_s=catalogue.cooldown_s, recovery=catalogue.recovery)
