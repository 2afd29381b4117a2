"""The service catalogue: what the operator declares, in files, and both worlds run.

A catalogue is a directory::

    services.yaml      the services: providers (the primary first), operation, criticality,
                       normal error rate or an explicit error threshold, health checks
    policy.yaml        optional: breaker, health-check, error-threshold and recovery settings
    strategies/*.yaml  fallback strategies, one per service (healing.strategy_files)
    workflows/*.yaml   recovery workflows (healing.workflow_files)

:func:`load_catalogue` validates all of it before anything starts: a mistake is a
:class:`~healing.files.SourceError` naming the file, the line and the field, and nothing is
loaded. ``SHIPPED`` is the embedded default (the seed's services, strategies and workflows);
``docs/catalogue.md`` documents every field. The live system (``selfheal up``) and the
simulator (``selfheal simulate --catalogue``) build their one ``Policy`` from the same
catalogue (``learning.policy.policy_from``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import (
    CircuitConfig,
    WindowType,
    as_enum,
    check_count,
    check_non_negative,
    check_positive,
    check_ratio,
)
from .errors import ConfigError
from .fallback import FallbackStrategy
from .files import SourceError, Spec, YamlSource, number, parse_duration, seconds, section
from .health import HealthPolicy
from .limit_files import parse_limits
from .limits import CallPolicy
from .recovery import RecoveryPolicy
from .safety import Criticality, OperationType
from .strategy_files import load_strategies
from .workflow import RecoveryWorkflow
from .workflow_files import load_workflows

__all__ = ["SHIPPED", "Catalogue", "CheckDecl", "ErrorRuleSettings", "Service",
           "load_catalogue"]

SHIPPED = pathlib.Path(__file__).with_name("shipped")

CHECK_KINDS = ("http", "tcp", "redis", "sql", "ray_actor")


@dataclass(frozen=True, slots=True)
class CheckDecl:
    """A declared health check; ``provider`` is the provider it watches (default: the
    service's primary), so only the primary's failure starts a workflow."""

    name: str
    kind: str
    target: str
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    providers: tuple[str, ...]
    operation: OperationType = OperationType.INFORMATIONAL
    criticality: Criticality = Criticality.MEDIUM
    error_rate: float = 0.0  # its normal error rate
    error_threshold: float | None = None  # None: from the normal rate (ErrorRuleSettings)
    checks: tuple[CheckDecl, ...] = ()
    # call policies (healing.limits): the service's under None, and providers' own
    limits: Mapping[str | None, CallPolicy] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return self.providers[0]


@dataclass(frozen=True, slots=True)
class ErrorRuleSettings:
    """When errors raise an ``error_threshold`` trigger: checked every ``check_s`` over the
    last ``window_s``, when the 99 % lower confidence bound (``z``) of the error rate passes
    the service's threshold; a service without one gets ``max(floor, factor x its normal
    rate)``, so a low-traffic service needs real evidence and a noisy one its own bar."""

    window_s: float = 30.0
    check_s: float = 5.0
    min_calls: int = 10
    z: float = 2.326  # one-sided 99 %
    floor: float = 0.10
    factor: float = 3.0

    def __post_init__(self) -> None:
        check_positive("window_s", self.window_s)
        check_positive("check_s", self.check_s)
        check_count("min_calls", self.min_calls)
        check_non_negative("z", self.z)
        check_ratio("floor", self.floor)
        check_positive("factor", self.factor)

    def threshold(self, service: Service) -> float:
        if service.error_threshold is not None:
            return service.error_threshold
        return max(self.floor, self.factor * service.error_rate)


@dataclass(frozen=True)
class Catalogue:
    services: Mapping[str, Service]
    strategies: tuple[FallbackStrategy, ...] = ()
    workflows: tuple[RecoveryWorkflow, ...] = ()
    circuit: CircuitConfig = field(default_factory=CircuitConfig)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    errors: ErrorRuleSettings = field(default_factory=ErrorRuleSettings)
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    cooldown_s: float = 120.0
    source: str = "<built in code>"

    def error_thresholds(self) -> dict[str, float]:
        return {n: self.errors.threshold(s) for n, s in self.services.items()}

    def call_policies(self) -> dict[tuple[str, str | None], CallPolicy]:
        """Every declared call policy by (service, provider); provider None is the service's
        own, for its providers without one (what :class:`~healing.limits.CallGate` takes)."""
        return {(n, p): policy for n, s in self.services.items()
                for p, policy in s.limits.items()}


def load_catalogue(directory: str | pathlib.Path = SHIPPED) -> Catalogue:
    """Load and cross-check a catalogue directory (see the module doc)."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise SourceError(root, None, "catalogue", "is not a directory")
    if not (root / "services.yaml").is_file():
        raise SourceError(root / "services.yaml", None, "file",
                          "is missing: a catalogue directory declares its services in "
                          "services.yaml (see docs/catalogue.md)")
    services = _services(YamlSource(root / "services.yaml"))
    settings = _policy(YamlSource(root / "policy.yaml")) if (root / "policy.yaml").exists() \
        else {}
    strategies = tuple(load_strategies(root / "strategies"))
    workflows = tuple(load_workflows(root / "workflows"))
    for strategy in strategies:
        if strategy.service not in services:
            raise SourceError(root / "strategies", None, strategy.service,
                              "has a strategy but is not a service in services.yaml")
    for flow in workflows:
        if flow.service not in services:
            raise SourceError(root / "workflows", None, flow.service,
                              f"has workflow {flow.id!r} but is not a service in services.yaml")
    return Catalogue(services, strategies, workflows, source=str(root), **settings)


# -- services.yaml ----------------------------------------------------------------------------

_SERVICE = {"providers", "operation", "criticality", "error_rate", "error_threshold",
            "health_checks", "description", "limits"}
_CHECK = {"name", "kind", "target", "provider"}


def _services(src: YamlSource) -> dict[str, Service]:
    data = src.data
    if not (isinstance(data, dict) and set(data) == {"services"}):
        raise src.error("must be a mapping with one key, services", [], "services.yaml")
    raw_services = data["services"]
    if not isinstance(raw_services, dict) or not raw_services:
        raise src.error("must map each service's name to its declaration", ["services"])
    out = {}
    for name, raw in raw_services.items():
        at = ["services", name]
        if not isinstance(raw, dict):
            raise src.error("must be a mapping of service fields", at)
        unknown = sorted(set(raw) - _SERVICE)
        if unknown:
            raise src.error(f"is not a service field (known: {sorted(_SERVICE)})",
                            [*at, unknown[0]])
        providers = raw.get("providers")
        if not (isinstance(providers, list) and providers
                and all(isinstance(p, str) and p for p in providers)
                and len(set(providers)) == len(providers)):
            raise src.error("must list distinct provider names, the primary first",
                            [*at, "providers"])
        key = "operation"
        try:
            operation = as_enum(OperationType, raw.get("operation", "informational"), key)
            key = "criticality"
            criticality = as_enum(Criticality, raw.get("criticality", "medium"), key)
            key = "error_rate"
            rate = raw.get("error_rate", 0.0)
            check_ratio(key, rate, allow_zero=True)
            key = "error_threshold"
            threshold = raw.get("error_threshold")
            if threshold is not None:
                check_ratio(key, threshold)
        except ConfigError as exc:
            raise src.core_error(exc, [*at, key]) from None
        checks = tuple(_check_decl(src, c, providers, [*at, "health_checks", i])
                       for i, c in enumerate(raw.get("health_checks") or []))
        limits = parse_limits(src, raw.get("limits"), [*at, "limits"], providers)
        out[str(name)] = Service(str(name), tuple(providers), operation, criticality,
                                 float(rate), threshold, checks, limits)
    return out


def _check_decl(src: YamlSource, raw: Any, providers: list[str], at: list[Any]) -> CheckDecl:
    if not isinstance(raw, dict):
        raise src.error("must be a mapping with name, kind and target", at)
    unknown = sorted(set(raw) - _CHECK)
    if unknown:
        raise src.error(f"is not a health check field (known: {sorted(_CHECK)})",
                        [*at, unknown[0]])
    for required in ("name", "kind", "target"):
        if not raw.get(required):
            raise src.error("is required", [*at, required])
    if raw["kind"] not in CHECK_KINDS:
        raise src.error(f"must be one of {list(CHECK_KINDS)}, got {raw['kind']!r}",
                        [*at, "kind"])
    provider = raw.get("provider")
    if provider is not None and provider not in providers:
        raise src.error(f"must be one of the service's providers {providers}",
                        [*at, "provider"])
    return CheckDecl(str(raw["name"]), raw["kind"], str(raw["target"]), provider)


# -- policy.yaml ------------------------------------------------------------------------------

def _window(v: Any, key: str) -> WindowType:
    try:
        return WindowType(v)
    except ValueError:
        raise ConfigError(key, v, f"must be one of {[w.value for w in WindowType]}") from None


# yaml key -> (the core's field name, converter); durations take units (30s, 2m)
_BREAKER: Spec = {
    "window_type": ("window_type", _window), "window_size": ("window_size", number),
    "minimum_number_of_calls": ("minimum_number_of_calls", number),
    "failure_rate_threshold": ("failure_rate_threshold", number),
    "slow_call_rate_threshold": ("slow_call_rate_threshold", number),
    "slow_call_duration": ("slow_call_duration_s", seconds),
    "permitted_calls_in_half_open": ("permitted_calls_in_half_open", number),
    "wait_in_open": ("wait_in_open_s", seconds), "wait_multiplier": ("wait_multiplier", number),
    "max_wait_in_open": ("max_wait_in_open_s", seconds)}
_HEALTH: Spec = {"interval": ("interval_s", seconds), "timeout": ("timeout_s", seconds),
                 "degraded_latency": ("degraded_latency_s", seconds),
                 "fall": ("fall", number), "rise": ("rise", number)}
_ERRORS: Spec = {"window": ("window_s", seconds), "check_every": ("check_s", seconds),
                 "min_calls": ("min_calls", number), "z": ("z", number),
                 "floor": ("floor", number), "factor": ("factor", number)}
_RECOVERY: Spec = {"retry_max_attempts": ("retry_max_attempts", number),
                   "retry_exponential_base": ("retry_exponential_base", number),
                   "retry_base_delay": ("retry_base_delay_s", seconds),
                   "recheck": ("recheck_s", seconds), "scale_min": ("scale_min", number),
                   "scale_max": ("scale_max", number)}
_SECTIONS: Mapping[str, tuple[Spec, Callable[..., Any], str]] = {
    "breaker": (_BREAKER, CircuitConfig, "circuit"), "health": (_HEALTH, HealthPolicy, "health"),
    "error_threshold": (_ERRORS, ErrorRuleSettings, "errors"),
    "recovery": (_RECOVERY, RecoveryPolicy, "recovery")}


def _policy(src: YamlSource) -> dict[str, Any]:
    data = src.data if src.data is not None else {}
    known = [*_SECTIONS, "cooldown"]
    if not isinstance(data, dict):
        raise src.error(f"must be a mapping with sections {known}", [], "policy.yaml")
    out: dict[str, Any] = {}
    for part, raw in data.items():
        if part == "cooldown":
            try:
                out["cooldown_s"] = parse_duration(raw, "cooldown")
            except ConfigError as exc:
                raise src.core_error(exc, ["cooldown"]) from None
            continue
        if part not in _SECTIONS:
            raise src.error(f"is not a policy section (known: {known})", [part])
        spec, build, name = _SECTIONS[part]
        out[name] = section(src, raw, [part], spec, build)
    return out
