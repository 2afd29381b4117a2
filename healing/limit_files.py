"""A service's ``limits`` in services.yaml: its call policy, and its providers' own.

::

    limits:
      timeout: 20s                 # each attempt's time at most
      concurrency:                 # the bulkhead (healing.admission)
        limit: 32                  # calls in flight (the start, when adaptive)
        queue: 16                  # requests that may wait for a place
        queue_timeout: 1s
        adaptive: {min: 4, max: 128}   # learn the limit from latency (Gradient2); or true
        reserved: {life_critical: 0.1, urgent: 0.1, routine: 0.2}
      retries: 1                   # further attempts of the primary
      retry_budget: {ratio: 0.2, min_per_s: 1, window: 10s}
      hedge: {provider: deepseek, after: 2s}   # informational requests only
      providers:                   # per provider: these fields replace the service's
        deepseek: {timeout: 40s}

Every mistake is a :class:`~healing.files.SourceError` naming the file, line and field.
"""

from __future__ import annotations

from typing import Any

from .adaptive import AdaptiveConfig
from .admission import AdmissionConfig
from .budget import RetryBudgetConfig
from .errors import ConfigError
from .files import Spec, YamlSource, number, parse_duration, seconds, section
from .limits import CallPolicy, HedgeConfig
from .safety import Acuity

__all__ = ["parse_limits"]

_FIELDS = ("timeout", "concurrency", "retries", "retry_budget", "hedge", "providers")
_CONCURRENCY = ("limit", "queue", "queue_timeout", "adaptive", "reserved")


def parse_limits(src: YamlSource, raw: Any, at: list[Any],
                 providers: list[str]) -> dict[str | None, CallPolicy]:
    """The service's policy under key None and each provider's that has its own."""
    if raw is None:
        return {}
    _mapping(src, raw, at, _FIELDS)
    base = {k: v for k, v in raw.items() if k != "providers"}
    out: dict[str | None, CallPolicy] = {None: _policy(src, base, at, providers)}
    per = raw.get("providers") or {}
    _mapping(src, per, [*at, "providers"], None)
    for name, own in per.items():
        where = [*at, "providers", name]
        if name not in providers:
            raise src.error(f"must be one of the service's providers {providers}", where)
        _mapping(src, own, where, _FIELDS[:-1])
        out[str(name)] = _policy(src, {**base, **own}, where, providers)
    return out


def _mapping(src: YamlSource, raw: Any, at: list[Any], known: tuple[str, ...] | None) -> None:
    if not isinstance(raw, dict):
        raise src.error("must be a mapping" + (f" of {list(known)}" if known else ""), at)
    if known is not None:
        for key in raw:
            if key not in known:
                raise src.error(f"is not a limits field here (known: {list(known)})",
                                [*at, key])


def _policy(src: YamlSource, raw: dict[str, Any], at: list[Any],
            providers: list[str]) -> CallPolicy:
    timeout = None
    if "timeout" in raw:
        try:
            timeout = parse_duration(raw["timeout"], "timeout")
        except ConfigError as exc:
            raise src.core_error(exc, [*at, "timeout"]) from None
    retries = raw.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise src.error("must be a whole number of further attempts, 0 or more",
                        [*at, "retries"])
    budget = RetryBudgetConfig()
    if "retry_budget" in raw:
        budget = _budget(src, raw["retry_budget"], [*at, "retry_budget"])
    admission = adaptive = None
    if "concurrency" in raw:
        admission, adaptive = _concurrency(src, raw["concurrency"], [*at, "concurrency"])
    hedge = _hedge(src, raw["hedge"], [*at, "hedge"], providers) if "hedge" in raw else None
    try:
        return CallPolicy(timeout, admission, adaptive, retries, budget, hedge)
    except ConfigError as exc:
        raise src.core_error(exc, at) from None


def _hedge(src: YamlSource, raw: Any, at: list[Any], providers: list[str]) -> HedgeConfig:
    _mapping(src, raw, at, ("provider", "after"))
    for key in ("provider", "after"):
        if key not in raw:
            raise src.error("is required", [*at, key])
    if providers and raw["provider"] not in providers:
        raise src.error(f"must be one of the service's providers {providers}",
                        [*at, "provider"])
    try:
        return HedgeConfig(str(raw["provider"]), parse_duration(raw["after"], "after"))
    except ConfigError as exc:
        raise src.core_error(exc, [*at, "after"]) from None


def _whole_seconds(v: Any, key: str) -> int:
    t = parse_duration(v, key)
    if t != int(t) or t < 1:
        raise ConfigError(key, v, "must be whole seconds, at least 1s")
    return int(t)


_BUDGET: Spec = {"ratio": ("ratio", number), "min_per_s": ("min_per_s", number),
                 "window": ("window_s", _whole_seconds)}
_ADMISSION: Spec = {"limit": ("limit", number), "queue": ("max_queue", number),
                    "queue_timeout": ("queue_timeout_s", seconds)}
_ADAPTIVE: Spec = {"min": ("min_limit", number), "max": ("max_limit", number),
                   "smoothing": ("smoothing", number), "tolerance": ("tolerance", number),
                   "window": ("window_s", seconds), "gain": ("gain", number)}


def _budget(src: YamlSource, raw: Any, at: list[Any]) -> RetryBudgetConfig:
    return section(src, raw, at, _BUDGET, RetryBudgetConfig)  # type: ignore[no-any-return]


def _concurrency(src: YamlSource, raw: Any,
                 at: list[Any]) -> tuple[AdmissionConfig, AdaptiveConfig | None]:
    _mapping(src, raw, at, _CONCURRENCY)
    if "limit" not in raw:
        raise src.error("is required: the calls in flight at most (the start, when adaptive)",
                        [*at, "limit"])
    core = {k: v for k, v in raw.items() if k in _ADMISSION}
    reserved = None
    if "reserved" in raw:
        _mapping(src, raw["reserved"], [*at, "reserved"],
                 ("life_critical", "urgent", "routine"))
        reserved = tuple((Acuity[k.upper()], _number(src, v, [*at, "reserved", k]))
                         for k, v in raw["reserved"].items())

    def build(**kwargs: Any) -> AdmissionConfig:
        return AdmissionConfig(**kwargs) if reserved is None \
            else AdmissionConfig(**kwargs, reserved=reserved)

    admission = section(src, core, at, {**_ADMISSION, "reserved": ("reserved", number)},
                        build)
    adaptive = raw.get("adaptive", False)
    if adaptive is False or adaptive is None:
        return admission, None
    return admission, section(src, {} if adaptive is True else adaptive, [*at, "adaptive"],
                              _ADAPTIVE, AdaptiveConfig)


def _number(src: YamlSource, value: Any, at: list[Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error(f"must be a number, got {value!r}", at)
    return value
