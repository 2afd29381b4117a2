"""Scenario files: the services, their load and the faults of a simulated outage run.

A scenario is YAML (the format is documented in ``docs/simulation.md``). :func:`load_scenario`
validates the whole file before anything runs; a mistake is a
:class:`~healing.files.SourceError` naming the file, the line and the field.
"""

from __future__ import annotations

import enum
import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healing.config import _check, as_enum, check_non_negative, check_positive
from healing.errors import ConfigError
from healing.files import SourceError, YamlSource, parse_duration
from healing.safety import Criticality, OperationType

__all__ = ["DEFAULT_START", "SCENARIOS", "FaultKind", "FaultSpec", "Scenario", "ServiceSpec",
           "load_scenario"]

SCENARIOS = pathlib.Path(__file__).with_name("scenarios")  # the shipped library

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, midnight UTC


class FaultKind(enum.Enum):
    OUTAGE = "outage"  # every call fails
    ERROR_BURST = "error_burst"  # a share of calls fail
    LATENCY_SPIKE = "latency_spike"  # calls slow down; those over the timeout fail
    MEMORY_LEAK = "memory_leak"  # failures grow with time until a restart
    CONNECTION_LOSS = "connection_loss"  # the service's connections are gone until re-made
    FLAPPING = "flapping"  # down, up, down... with a period
    DEGRADATION = "degradation"  # failures and wrong answers ramp up slowly


# Each kind's parameters and their defaults.
FAULT_PARAMS: Mapping[FaultKind, Mapping[str, float]] = {
    FaultKind.OUTAGE: {"error_rate": 1.0},
    FaultKind.ERROR_BURST: {"error_rate": 0.3},
    FaultKind.LATENCY_SPIKE: {"latency_factor": 10.0},
    # growth: of the error rate, per minute. With mem_growth (of the memory limit, per minute)
    # memory climbs from mem_base and requests fail only from fail_at of the limit on: the
    # leak is visible in memory long before it is in errors. Without, it fails at once.
    FaultKind.MEMORY_LEAK: {"growth": 0.02, "max_error_rate": 1.0, "mem_growth": 0.0,
                            "mem_base": 0.5, "fail_at": 0.0},
    FaultKind.CONNECTION_LOSS: {"error_rate": 1.0},
    FaultKind.FLAPPING: {"period": 120.0, "error_rate": 1.0},
    FaultKind.DEGRADATION: {"error_rate": 0.4, "ramp": 600.0, "bad_answer_share": 0.5},
}
# What ends a kind early when the scenario does not say: a leaked process is cured by a
# restart, a lost connection by reconnecting (a retry).
DEFAULT_CLEARED_BY: Mapping[FaultKind, str | None] = {
    FaultKind.MEMORY_LEAK: "restart", FaultKind.CONNECTION_LOSS: "retry",
}
CLEARING_ACTIONS = ("restart", "retry", "scale")
_RATES = {"error_rate", "max_error_rate", "bad_answer_share", "mem_growth", "mem_base",
          "fail_at"}
_DURATIONS = {"period", "ramp"}


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    rps: float
    latency_p50_s: float
    latency_p99_s: float
    error_rate: float
    providers: tuple[str, ...]
    operation: OperationType
    criticality: Criticality
    depends_on: tuple[str, ...] = ()
    timeout_s: float = 0.0  # 0: three times the p99, at least 1 s
    # Other kinds of request to the service: (share of rps, operation, criticality). The rest
    # are of the service's own operation and criticality.
    mix: tuple[tuple[float, OperationType, Criticality], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", as_enum(OperationType, self.operation,
                                                      "operation"))
        object.__setattr__(self, "criticality", as_enum(Criticality, self.criticality,
                                                        "criticality"))
        check_positive("rps", self.rps)
        check_positive("latency_ms.p50", self.latency_p50_s)
        _check(self.latency_p99_s >= self.latency_p50_s, "latency_ms.p99",
               self.latency_p99_s * 1000, "must be at least p50")
        _check_rate("error_rate", self.error_rate)
        _check(len(self.providers) > 0 and all(isinstance(p, str) and p for p in self.providers),
               "providers", list(self.providers), "must list at least one provider name")
        _check(len(set(self.providers)) == len(self.providers), "providers",
               list(self.providers), "must not repeat a provider")
        check_non_negative("timeout_ms", self.timeout_s)
        _check(all(0 < share < 1 for share, _, _ in self.mix)
               and sum(share for share, _, _ in self.mix) < 1, "mix",
               [share for share, _, _ in self.mix],
               "shares must each be between 0 and 1 and leave a share for the service's own "
               "requests")
        if self.timeout_s == 0:
            object.__setattr__(self, "timeout_s", max(1.0, 3 * self.latency_p99_s))

    @property
    def primary(self) -> str:
        return self.providers[0]

    @property
    def requests(self) -> list[tuple[float, OperationType, Criticality]]:
        """Every kind of request with its share: the service's own first, then ``mix``."""
        own = 1.0 - sum(share for share, _, _ in self.mix)
        return [(own, self.operation, self.criticality), *self.mix]

    @property
    def latency_sigma(self) -> float:
        """The lognormal's sigma that puts the 99th percentile at p99 (z = 2.326)."""
        return math.log(self.latency_p99_s / self.latency_p50_s) / 2.326


@dataclass(frozen=True, slots=True)
class FaultSpec:
    service: str
    kind: FaultKind
    at_s: float
    for_s: float | None  # None: until it is cleared or the run ends
    target: str | None = None  # one provider of the service; None: the service itself
    every_s: float | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    cleared_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", as_enum(FaultKind, self.kind, "kind"))
        check_non_negative("at", self.at_s)
        if self.for_s is not None:
            check_positive("for", self.for_s)
        if self.every_s is not None:
            check_positive("every", self.every_s)
            _check(self.for_s is not None and self.for_s < self.every_s, "every", self.every_s,
                   "must be longer than the fault's 'for' (a recurring fault needs an end)")
        defaults = FAULT_PARAMS[self.kind]
        unknown = set(self.params) - set(defaults)
        _check(not unknown, f"params.{sorted(unknown)[0] if unknown else ''}", None,
               f"is not a parameter of {self.kind.value} (known: {sorted(defaults)})")
        merged = dict(defaults)
        for k, raw in self.params.items():
            v = parse_duration(raw, f"params.{k}") if k in _DURATIONS else raw
            if k in _RATES:
                _check_rate(f"params.{k}", v)
            else:
                check_positive(f"params.{k}", v)
            merged[k] = float(v)
        object.__setattr__(self, "params", merged)
        if self.cleared_by is None:
            object.__setattr__(self, "cleared_by", DEFAULT_CLEARED_BY.get(self.kind))
        elif self.cleared_by not in CLEARING_ACTIONS:
            raise ConfigError("cleared_by", self.cleared_by,
                              f"must be one of {list(CLEARING_ACTIONS)}")

    def windows(self, duration_s: float) -> list[tuple[float, float]]:
        """Each occurrence as (start, scheduled end) within a run of ``duration_s``."""
        out = []
        start = self.at_s
        while start < duration_s:
            end = duration_s if self.for_s is None else min(duration_s, start + self.for_s)
            out.append((start, end))
            if self.every_s is None:
                break
            start += self.every_s
        return out


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_s: float
    services: Mapping[str, ServiceSpec]
    faults: tuple[FaultSpec, ...] = ()
    seed: int = 0
    start: datetime = DEFAULT_START
    policy: str = "default"
    source: str = ""

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and bool(self.name), "name", self.name,
               "must be a name")
        check_positive("duration", self.duration_s)
        _check(len(self.services) > 0, "services", dict(self.services),
               "must define at least one service")
        for name, s in self.services.items():
            for dep in s.depends_on:
                _check(dep in self.services and dep != name, f"services.{name}.depends_on",
                       dep, "must name another service of this scenario")
        _acyclic(self.services)
        for i, f in enumerate(self.faults):
            _check(f.service in self.services, f"faults[{i}].service", f.service,
                   f"must be one of the scenario's services {sorted(self.services)}")
            if f.target is not None:
                providers = self.services[f.service].providers
                _check(f.target in providers, f"faults[{i}].target", f.target,
                       f"must be one of {f.service}'s providers {list(providers)}")
            _check(f.at_s < self.duration_s, f"faults[{i}].at", f.at_s,
                   f"must fall within the run ({self.duration_s:g} s)")
        _check(self.policy == "default", "policy", self.policy,
               "must be 'default' (the only policy so far)")

    def dependents(self, service: str) -> set[str]:
        """Every service that depends on ``service``, directly or through others."""
        out: set[str] = set()
        frontier = {service}
        while frontier:
            nxt = {n for n, s in self.services.items() if frontier & set(s.depends_on)} - out
            out |= nxt
            frontier = nxt
        return out


def _check_rate(name: str, value: Any) -> None:
    _check(isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1,
           name, value, "must be between 0 and 1")


def _acyclic(services: Mapping[str, ServiceSpec]) -> None:
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ConfigError(f"services.{n}.depends_on", " -> ".join([*path, n]),
                              "makes a dependency cycle")
        state[n] = 1
        for d in services[n].depends_on:
            visit(d, [*path, n])
        state[n] = 2

    for n in services:
        visit(n, [])


_TOP = {"name", "duration", "seed", "start", "services", "faults", "policy", "description"}
_SERVICE = {"rps", "latency_ms", "error_rate", "providers", "operation", "criticality",
            "depends_on", "timeout_ms", "mix"}
_MIX = {"share", "operation", "criticality"}
_FAULT = {"service", "target", "kind", "at", "for", "every", "params", "cleared_by"}
_REQUIRED_SERVICE = ("rps", "providers")
_REQUIRED_FAULT = ("service", "kind", "at")


def load_scenario(path: str | pathlib.Path) -> Scenario:
    """Load and validate one scenario file; raises SourceError naming file, line and field."""
    src = YamlSource(path)
    data = src.data
    at: list[Any] = []

    def fail(reason: str, where: list[Any]) -> SourceError:
        return src.error(reason, where, "scenario")

    if not isinstance(data, dict):
        raise fail("must be a mapping of scenario fields", [])
    _fields(data, _TOP, ("name", "services"), [], fail, "scenario")
    try:
        at = ["duration"]
        duration = parse_duration(data.get("duration", 3600), "duration")
        at = ["seed"]
        seed = data.get("seed", 0)
        _check(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed",
               seed, "must be a whole number >= 0")
        at = ["start"]
        start = _start(data.get("start"))
        raw_services = data["services"]
        if not isinstance(raw_services, dict) or not raw_services:
            raise fail("must map service names to their settings", ["services"])
        services = {}
        for name, raw in raw_services.items():
            at = ["services", name]
            services[str(name)] = _service(str(name), raw, at, fail)
        faults = []
        raw_faults = data.get("faults") or []
        if not isinstance(raw_faults, list):
            raise fail("must be a list of faults", ["faults"])
        for i, raw in enumerate(raw_faults):
            at = ["faults", i]
            faults.append(_fault(raw, at, fail))
        at = []
        return Scenario(str(data["name"]), duration, services, tuple(faults), seed, start,
                        str(data.get("policy", "default")), str(src.path))
    except SourceError:
        raise
    except (ConfigError, TypeError, ValueError) as exc:
        raise src.core_error(exc, _where(getattr(exc, "field", None), at),
                             "scenario") from None


def _fields(raw: Any, known: set[str], required: tuple[str, ...], at: list[Any], fail: Any,
            what: str) -> None:
    if not isinstance(raw, dict):
        raise fail(f"must be a mapping of {what} fields", at)
    unknown = set(raw) - known
    if unknown:
        raise fail(f"is not a {what} field (known: {sorted(known)})", [*at, sorted(unknown)[0]])
    for r in required:
        if r not in raw:
            raise fail("is required", [*at, r])


def _service(name: str, raw: Any, at: list[Any], fail: Any) -> ServiceSpec:
    _fields(raw, _SERVICE, _REQUIRED_SERVICE, at, fail, "service")
    lat = raw.get("latency_ms") or {"p50": 200, "p99": 1000}
    if not (isinstance(lat, dict) and set(lat) <= {"p50", "p99"} and "p50" in lat):
        raise fail("must be a mapping like {p50: 800, p99: 3000}", [*at, "latency_ms"])
    for k, v in lat.items():
        if not (isinstance(v, int | float) and not isinstance(v, bool) and v > 0):
            raise fail(f"must be a number of milliseconds > 0, got {v!r}", [*at, "latency_ms", k])
    providers = raw["providers"]
    if not isinstance(providers, list):
        raise fail("must be a list of provider names, the primary first", [*at, "providers"])
    deps = raw.get("depends_on") or []
    if not isinstance(deps, list):
        raise fail("must be a list of service names", [*at, "depends_on"])
    operation = as_enum(OperationType, raw.get("operation", "informational"), "operation")
    criticality = as_enum(Criticality, raw.get("criticality", "medium"), "criticality")
    return ServiceSpec(
        name, _number(raw["rps"], "rps"), lat["p50"] / 1000, lat.get("p99", lat["p50"]) / 1000,
        _number(raw.get("error_rate", 0.0), "error_rate"),
        tuple(str(p) for p in providers), operation, criticality,
        tuple(str(d) for d in deps), _number(raw.get("timeout_ms", 0), "timeout_ms") / 1000,
        _mix(raw.get("mix") or [], operation, criticality, [*at, "mix"], fail))


def _mix(raw: Any, operation: OperationType, criticality: Criticality, at: list[Any],
         fail: Any) -> tuple[tuple[float, OperationType, Criticality], ...]:
    if not isinstance(raw, list):
        raise fail("must be a list like [{share: 0.25, criticality: life_critical}]", at)
    out = []
    for i, kind in enumerate(raw):
        _fields(kind, _MIX, ("share",), [*at, i], fail, "request kind")
        share = kind["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            raise fail(f"must be a share between 0 and 1, got {share!r}", [*at, i, "share"])
        try:
            out.append((float(share),
                        as_enum(OperationType, kind.get("operation", operation), "operation"),
                        as_enum(Criticality, kind.get("criticality", criticality),
                                "criticality")))
        except ConfigError as exc:
            raise fail(f"{exc.reason}, got {exc.value!r}", [*at, i, exc.field]) from None
    return tuple(out)


def _fault(raw: Any, at: list[Any], fail: Any) -> FaultSpec:
    _fields(raw, _FAULT, _REQUIRED_FAULT, at, fail, "fault")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise fail("must be a mapping of parameters", [*at, "params"])
    return FaultSpec(
        str(raw["service"]), raw["kind"], parse_duration(raw["at"], "at"),
        parse_duration(raw["for"], "for") if raw.get("for") is not None else None,
        str(raw["target"]) if raw.get("target") is not None else None,
        parse_duration(raw["every"], "every") if raw.get("every") is not None else None,
        params, raw.get("cleared_by"))


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(name, v, "must be a number")
    return float(v)


def _start(v: Any) -> datetime:
    if v is None:
        return DEFAULT_START
    if isinstance(v, datetime):
        d = v
    else:
        try:
            d = datetime.fromisoformat(str(v))
        except ValueError:
            raise ConfigError("start", v, "must be an ISO date-time like "
                                          "2026-01-05T08:00:00") from None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


# Where a core error's field lives in the file: service and fault fields are relative to
# the entry being read; scenario-level rules name their own path.
_FILE_NAMES = {"latency_ms.p50": ["latency_ms", "p50"], "latency_ms.p99": ["latency_ms", "p99"],
               "timeout_ms": ["timeout_ms"]}


def _where(field_name: str | None, at: list[Any]) -> list[Any]:
    if not field_name:
        return at
    if at and at[0] in ("services", "faults") and len(at) == 2:
        return [*at, *_FILE_NAMES.get(field_name, field_name.split("."))]
    parts: list[Any] = []
    for p in field_name.replace("]", "").split("."):
        name, _, idx = p.partition("[")
        parts.append(name)
        if idx:
            parts.append(int(idx))
    return parts
