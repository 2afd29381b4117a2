"""Fallback strategy files: YAML in, validated :class:`~healing.fallback.FallbackStrategy` out.

A mistake is a :class:`~healing.files.SourceError` naming the file, the line and the field
(``pharmaguard.yaml:9: tiers[0].max_staleness: applies only to cached_data tiers``), and
nothing is loaded from that file. The clinical safety rules are checked too, so a file that
would give prescriptive requests cached data is refused here, at start, not at 3 a.m.

The format::

    service: clinical_reasoning
    description: AI diagnostic reasoning
    operations: [diagnostic, informational]   # the requests it was vetted for
    criticalities: [high, medium, low]        # optional; never life_critical
    stale_data_warning: true
    integrity:                                # every fallback answer must pass it
      confidence_floor: 0.7                   # or required_fields, field_type, field_equals,
                                              # value_range, all_of: [...], any_of: [...]
    tiers:                                    # tried in this order
      - {method: alternative_provider, provider: deepseek}
      - {method: cached_data, max_staleness: 5m, stale_data_warning: true}
      - {method: degraded_mode, handler: rule_based_engine, warning: "..."}
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from .config import FallbackTier
from .errors import ConfigError
from .fallback import FallbackStrategy
from .files import SourceError, YamlSource, parse_duration
from .integrity import (
    AllOf,
    AnyOf,
    ConfidenceFloor,
    FieldEquals,
    FieldType,
    IntegrityCheck,
    RequiredFields,
    ValueRange,
)
from .safety import ClinicalSafetyValidator, Criticality, OperationType

__all__ = ["load_strategies", "load_strategy", "parse_integrity"]

_TOP = {"service", "description", "operations", "criticalities", "stale_data_warning",
        "integrity", "tiers"}
_TIER = {"method", "provider", "max_staleness", "handler", "response", "stale_data_warning",
         "warning", "priority"}
_CHECKS = ("required_fields", "confidence_floor", "value_range", "field_type", "field_equals",
           "all_of", "any_of")


def load_strategy(path: str | pathlib.Path,
                  validator: ClinicalSafetyValidator | None = None) -> FallbackStrategy:
    """Load one strategy file and check it against the clinical safety rules."""
    src = YamlSource(path)
    data = src.data
    if not isinstance(data, dict):
        raise src.error("must be a mapping of strategy fields", [], "strategy")
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise src.error(f"is not a strategy field (known: {sorted(_TOP)})", [unknown[0]])
    for required in ("service", "tiers"):
        if required not in data:
            raise src.error("is required", [required])
    at: list[Any] = []
    try:
        at = ["tiers"]
        raw_tiers = data["tiers"]
        if not isinstance(raw_tiers, list) or not raw_tiers:
            raise src.error("must be a non-empty list of tiers", at)
        tiers = []
        for i, raw in enumerate(raw_tiers):
            at = ["tiers", i]
            tiers.append(_tier(src, raw, i, at))
        at = ["integrity"]
        check = parse_integrity(src, data["integrity"], at) if "integrity" in data else None
        kwargs: dict[str, Any] = {}
        for key, enum_type, field in (("operations", OperationType, "operation_types"),
                                      ("criticalities", Criticality, "criticalities")):
            if key in data:
                at = [key]
                kwargs[field] = frozenset(_enums(src, data[key], enum_type, at))
        at = []
        strategy = FallbackStrategy(
            service=str(data["service"]), tiers=tuple(tiers), integrity_check=check,
            stale_data_warning=bool(data.get("stale_data_warning", False)),
            description=str(data.get("description", "")), **kwargs)
        at = []
        try:
            (validator or ClinicalSafetyValidator()).validate_strategy(strategy)
        except ConfigError as exc:  # point at what breaks the rule
            at = _rule_path(exc.field, strategy, data)
            raise
        return strategy
    except SourceError:
        raise
    except (ConfigError, TypeError) as exc:
        raise src.core_error(exc, at, "strategy") from None


def load_strategies(directory: str | pathlib.Path,
                    validator: ClinicalSafetyValidator | None = None) -> list[FallbackStrategy]:
    """Every ``*.yaml`` strategy in ``directory``; one bad file fails the whole load, and so
    do two files for one service."""
    seen: dict[str, pathlib.Path] = {}
    out = []
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        strategy = load_strategy(path, validator)
        if strategy.service in seen:
            raise SourceError(path, None, "service",
                              f"{strategy.service!r} already has a strategy in "
                              f"{seen[strategy.service].name}")
        seen[strategy.service] = path
        out.append(strategy)
    return out


def _rule_path(field: str, strategy: FallbackStrategy, data: dict[str, Any]) -> list[Any]:
    """Where a clinical rule's complaint (``tiers[2].method``, ``integrity_check``) is in the
    file: tiers are named by priority in the core, by position in the file."""
    m = re.fullmatch(r"tiers\[(\d+)\]\.method", field)
    if m:
        index = next(i for i, t in enumerate(strategy.tiers) if t.priority == int(m.group(1)))
        return ["tiers", index, "method"]
    if field == "integrity_check":
        return ["integrity"] if "integrity" in data else []
    return [field] if field in data else []


def _tier(src: YamlSource, raw: Any, index: int, at: list[Any]) -> FallbackTier:
    if not isinstance(raw, dict):
        raise src.error("must be a mapping with a method", at)
    unknown = sorted(set(raw) - _TIER)
    if unknown:
        raise src.error(f"is not a tier field (known: {sorted(_TIER)})", [*at, unknown[0]])
    if "method" not in raw:
        raise src.error("is required", [*at, "method"])
    staleness = raw.get("max_staleness")
    try:
        return FallbackTier(
            int(raw.get("priority", index + 1)), raw["method"], provider=raw.get("provider"),
            max_staleness_s=None if staleness is None else parse_duration(staleness,
                                                                          "max_staleness"),
            handler=raw.get("handler"), response=raw.get("response"),
            stale_data_warning=bool(raw.get("stale_data_warning", False)),
            warning=raw.get("warning"))
    except ConfigError as exc:
        name = "max_staleness" if exc.field == "max_staleness_s" else exc.field
        raise src.core_error(exc, [*at, name if name in raw else "method"], "tier") from None


def _enums(src: YamlSource, raw: Any, enum_type: type, at: list[Any]) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise src.error(f"must be a list of {[e.value for e in enum_type]}", at)
    out = []
    for i, v in enumerate(raw):
        try:
            out.append(enum_type(v))
        except ValueError:
            raise src.error(f"must be one of {[e.value for e in enum_type]}, got {v!r}",
                            [*at, i]) from None
    return out


def parse_integrity(src: YamlSource, raw: Any, at: list[Any]) -> IntegrityCheck:
    """An integrity check from its declaration: a one-key mapping (see the module doc)."""
    if not (isinstance(raw, dict) and len(raw) == 1):
        raise src.error(f"must be a one-key mapping, one of {list(_CHECKS)}", at)
    (kind, arg), = raw.items()
    here = [*at, kind]
    try:
        if kind in ("all_of", "any_of"):
            if not isinstance(arg, list) or not arg:
                raise src.error("must be a non-empty list of checks", here)
            parts = [parse_integrity(src, a, [*here, i]) for i, a in enumerate(arg)]
            return AllOf(*parts) if kind == "all_of" else AnyOf(*parts)
        if kind == "required_fields":
            fields = arg if isinstance(arg, list) else [arg]
            return RequiredFields(*fields)
        if kind == "confidence_floor":
            if isinstance(arg, dict):
                return ConfidenceFloor(arg["floor"], arg.get("field", "confidence"),
                                       inclusive=bool(arg.get("inclusive", False)))
            return ConfidenceFloor(arg)
        if kind == "value_range":
            return ValueRange(arg["field"], arg["lo"], arg["hi"])
        if kind == "field_type":
            return FieldType(arg["field"], arg["type"])
        if kind == "field_equals":
            return FieldEquals(arg["field"], arg["value"])
    except SourceError:
        raise
    except (KeyError, TypeError) as exc:
        missing = f"needs {exc}" if isinstance(exc, KeyError) else str(exc)
        raise src.error(f"{missing} (see the strategy file format)", here) from None
    except ConfigError as exc:
        raise src.core_error(exc, here, "integrity") from None
    raise src.error(f"is not an integrity check (known: {list(_CHECKS)})", here)
