"""Overload scenario files: one provider, a clinical request mix, and what goes wrong.

::

    name: traffic_surge_3x
    description: ...
    duration: 240s
    seed: 11
    provider:
      workers: 20           # calls it works on at once; more wait in its own queue
      latency: 200ms        # a call's mean service time (log-normal)
      latency_sigma: 0.3
      slowdown: 0.0         # service time grows by this x (calls beyond workers / workers)
    hedge_provider: {workers: 10, latency: 300ms}   # with limits.hedge only
    load:
      rate: 60              # requests/s, Poisson
      mix: {life_critical: 0.05, urgent: 0.25, routine: 0.5, batch: 0.2}
      informational: 0.3    # the share of non-life-critical requests that are (hedgeable)
      deadline: 2s          # every request's answer is needed within this
    events:                 # surge (factor), hang, errors (rate), slow (factor)
      - {kind: surge, at: 60s, for: 60s, factor: 3}
    limits:                 # the bounded policy, in the catalogue's format (docs/catalogue.md)
      timeout: 2s
      concurrency: {limit: 20, adaptive: {min: 4, max: 100}, queue: 20, queue_timeout: 500ms}
      retries: 2

Mistakes are :class:`~healing.files.SourceError` naming the file, line and field.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from healing.errors import ConfigError
from healing.files import YamlSource, parse_duration
from healing.limit_files import parse_limits
from healing.limits import CallPolicy
from healing.safety import Acuity

__all__ = ["OVERLOAD_SCENARIOS", "Burst", "OverloadScenario", "ProviderSpec", "load_overload"]

OVERLOAD_SCENARIOS = pathlib.Path(__file__).with_name("scenarios") / "overload"
EVENT_KINDS = ("surge", "hang", "errors", "slow")
MAX_REQUESTS = 10_000_000  # a scenario's requests at most, surges counted at their peak
MAX_SIGMA = 3.0  # latency_sigma at most


@dataclass(frozen=True, slots=True)
class Burst:
    """Something that goes wrong from ``start`` for ``length`` seconds."""

    kind: str
    start: float
    length: float
    value: float = 1.0  # surge/slow: the factor; errors: the share of calls that fail

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.length


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    workers: int
    latency_s: float
    latency_sigma: float = 0.0
    slowdown: float = 0.0


@dataclass(frozen=True, slots=True)
class OverloadScenario:
    name: str
    description: str
    duration_s: float
    seed: int
    provider: ProviderSpec
    rate: float
    mix: tuple[tuple[Acuity, float], ...]
    deadline_s: float
    events: tuple[Burst, ...]
    policy: CallPolicy
    informational: float = 0.0  # the share of non-life-critical requests that are
    hedge_provider: ProviderSpec | None = None  # the provider limits.hedge asks
    source: str = "<built in code>"


_TOP = ("name", "description", "duration", "seed", "provider", "hedge_provider", "load",
        "events", "limits")


def _at(raw: Any, at: list[Any]) -> Any:
    node = raw
    for k in at:
        if isinstance(node, dict):
            node = node.get(k)
        elif isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        else:
            return None
    return node


def load_overload(path: str | pathlib.Path) -> OverloadScenario:
    src = YamlSource(path)
    raw = src.data
    if not isinstance(raw, dict):
        raise src.error(f"must be a mapping with {list(_TOP)}", [], "file")
    for key in raw:
        if key not in _TOP:
            raise src.error(f"is not an overload scenario field (known: {list(_TOP)})", [key])
    for key in ("name", "duration", "provider", "load", "limits"):
        if key not in raw:
            raise src.error("is required", [key])

    def num(at: list[Any], lo: float, default: Any = None, whole: bool = False) -> Any:
        node = _at(raw, at)
        if node is None:
            if default is None:
                raise src.error("is required", at)
            return default
        if isinstance(node, bool) or not isinstance(node, int | float) or node < lo \
                or (whole and not isinstance(node, int)):
            raise src.error(f"must be a {'whole ' if whole else ''}number of at least {lo}, "
                            f"got {node!r}", at)
        return node

    def dur(at: list[Any]) -> float:
        node = _at(raw, at)
        try:
            seconds = parse_duration(node, str(at[-1]))
        except ConfigError as exc:
            raise src.core_error(exc, at) from None
        if seconds <= 0:
            raise src.error("must be positive", at)
        return seconds

    for section in ("load",):
        if not isinstance(raw[section], dict):
            raise src.error("must be a mapping", [section])
    mix_raw = raw["load"].get("mix", {"routine": 1.0})
    if not isinstance(mix_raw, dict) or not mix_raw:
        raise src.error("must map acuities to shares", ["load", "mix"])
    mix = []
    for name in mix_raw:
        if str(name).upper() not in Acuity.__members__:
            raise src.error(f"must be one of {[a.label for a in Acuity]}", ["load", "mix", name])
        mix.append((Acuity[str(name).upper()], float(num(["load", "mix", name], 0.0))))
    total = sum(s for _, s in mix)
    if not 0.999 <= total <= 1.001:
        raise src.error(f"shares must add up to 1, got {total:g}", ["load", "mix"])
    events = []
    for i, ev in enumerate(raw.get("events") or []):
        at = ["events", i]
        if not isinstance(ev, dict) or ev.get("kind") not in EVENT_KINDS:
            raise src.error(f"must be a mapping whose kind is one of {list(EVENT_KINDS)}", at)
        value = 1.0
        if ev["kind"] in ("surge", "slow"):
            value = float(num([*at, "factor"], 1.0))
        elif ev["kind"] == "errors":
            value = float(num([*at, "rate"], 0.0))
            if value > 1:
                raise src.error("must be a share in [0, 1]", [*at, "rate"])
        events.append(Burst(ev["kind"], dur([*at, "at"]), dur([*at, "for"]), value))

    def sigma(key: str) -> float:
        # A log-normal's mean is kept at the latency, so a wide sigma puts nearly every call
        # at ~0 s and a rare one at hours: a model of nothing (sigma 3 already has a p99 of
        # 1,100 times the median).
        value = float(num([key, "latency_sigma"], 0.0, 0.0))
        if value > MAX_SIGMA:
            raise src.error(f"must be at most {MAX_SIGMA:g} (a log-normal's spread), got "
                            f"{value:g}", [key, "latency_sigma"])
        return value

    def provider(key: str) -> ProviderSpec:
        if not isinstance(raw[key], dict):
            raise src.error("must be a mapping of workers, latency, latency_sigma, slowdown",
                            [key])
        return ProviderSpec(int(num([key, "workers"], 1, whole=True)), dur([key, "latency"]),
                            sigma(key),
                            float(num([key, "slowdown"], 0.0, 0.0)))

    policy = parse_limits(src, raw["limits"], ["limits"], [])[None]
    hedge = provider("hedge_provider") if "hedge_provider" in raw else None
    if (policy.hedge is None) != (hedge is None):
        raise src.error("and hedge_provider go together: the hedge asks that provider",
                        ["limits", "hedge"] if policy.hedge is not None else ["hedge_provider"])
    informational = float(num(["load", "informational"], 0.0, 0.0))
    if informational > 1:
        raise src.error("must be a share in [0, 1]", ["load", "informational"])
    duration_s, rate = dur(["duration"]), float(num(["load", "rate"], 0.001))
    peak = rate * max([e.value for e in events if e.kind == "surge"], default=1.0)
    if duration_s * peak > MAX_REQUESTS:
        surge = " (its surge)" if peak > rate else ""
        raise src.error(f"{peak:g} requests/s{surge} for {duration_s:g} s is "
                        f"{duration_s * peak:.3g} requests, more than the {MAX_REQUESTS:,} a "
                        "scenario may hold (each is modelled one by one, about 100,000 a "
                        "second); shorten the duration or lower the rate", ["duration"])
    return OverloadScenario(
        name=str(raw["name"]), description=str(raw.get("description", "")),
        duration_s=duration_s, seed=int(num(["seed"], 0, 0, whole=True)),
        provider=provider("provider"), rate=rate,
        mix=tuple(mix), deadline_s=dur(["load", "deadline"]), events=tuple(events),
        policy=policy, informational=informational, hedge_provider=hedge, source=str(path))
