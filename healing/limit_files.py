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

from collections.abc import Callable
from typing import Any

from .adaptive import AdaptiveConfig
from .admission import AdmissionConfig
from .budget import RetryBudgetConfig
from .errors import ConfigError
from .files import YamlSource, parse_duration
from .hedging import HedgeConfig
from .limits import CallPolicy
from .safety import Acuity

__all__ = ["parse_limits"]

_FIELDS = ("timeout", "concurrency", "retries", "retry_budget", "hedge", "providers")
_CONCURRENCY = ("limit", "queue", "queue_timeout", "adaptive", "reserved")
_ADAPTIVE = ("min", "max", "smoothing", "tolerance", "window")
_BUDGET = ("ratio", "min_per_s", "window")


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
    def field(key: str, convert: Callable[[Any, str], Any], *sub: Any) -> Any:
        try:
            return convert(raw[key] if not sub else sub[0], key)
        except ConfigError as exc:
            raise src.core_error(exc, [*at, key]) from None

    timeout = field("timeout", parse_duration) if "timeout" in raw else None
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


def _build(src: YamlSource, at: list[Any], build: Callable[..., Any], names: dict[str, str],
           **kwargs: Any) -> Any:
    try:
        return build(**kwargs)
    except (ConfigError, TypeError) as exc:
        core = getattr(exc, "field", None)
        key = next((k for k, n in names.items() if n == core), None)
        raise src.core_error(exc, [*at, key] if key else at) from None


def _budget(src: YamlSource, raw: Any, at: list[Any]) -> RetryBudgetConfig:
    _mapping(src, raw, at, _BUDGET)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "window":
            try:
                seconds = parse_duration(value, key)
            except ConfigError as exc:
                raise src.core_error(exc, [*at, key]) from None
            if seconds != int(seconds) or seconds < 1:
                raise src.error("must be whole seconds, at least 1s", [*at, key])
            kwargs["window_s"] = int(seconds)
        else:
            kwargs[key] = _number(src, value, [*at, key])
    return _build(src, at, RetryBudgetConfig, {"window": "window_s", "ratio": "ratio",
                                               "min_per_s": "min_per_s"}, **kwargs)


def _concurrency(src: YamlSource, raw: Any,
                 at: list[Any]) -> tuple[AdmissionConfig, AdaptiveConfig | None]:
    _mapping(src, raw, at, _CONCURRENCY)
    if "limit" not in raw:
        raise src.error("is required: the calls in flight at most (the start, when adaptive)",
                        [*at, "limit"])
    kwargs: dict[str, Any] = {"limit": raw["limit"], "max_queue": raw.get("queue", 0)}
    if "queue_timeout" in raw:
        try:
            kwargs["queue_timeout_s"] = parse_duration(raw["queue_timeout"], "queue_timeout")
        except ConfigError as exc:
            raise src.core_error(exc, [*at, "queue_timeout"]) from None
    if "reserved" in raw:
        reserved = raw["reserved"]
        _mapping(src, reserved, [*at, "reserved"], ("life_critical", "urgent", "routine"))
        kwargs["reserved"] = tuple((Acuity[k.upper()], _number(src, v, [*at, "reserved", k]))
                                   for k, v in reserved.items())
    admission = _build(src, at, AdmissionConfig, {
        "limit": "limit", "queue": "max_queue", "queue_timeout": "queue_timeout_s",
        "reserved": "reserved"}, **kwargs)
    adaptive = raw.get("adaptive", False)
    if adaptive is False or adaptive is None:
        return admission, None
    if adaptive is True:
        adaptive = {}
    _mapping(src, adaptive, [*at, "adaptive"], _ADAPTIVE)
    names = {"min": "min_limit", "max": "max_limit", "smoothing": "smoothing",
             "tolerance": "tolerance", "window": "window_s"}
    akw: dict[str, Any] = {}
    for key, value in adaptive.items():
        if key == "window":
            try:
                akw["window_s"] = parse_duration(value, key)
            except ConfigError as exc:
                raise src.core_error(exc, [*at, "adaptive", key]) from None
        else:
            akw[names[key]] = _number(src, value, [*at, "adaptive", key])
    return admission, _build(src, [*at, "adaptive"], AdaptiveConfig, names, **akw)


def _number(src: YamlSource, value: Any, at: list[Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error(f"must be a number, got {value!r}", at)
    return value
