"""Data integrity checks: is this response fit to show a clinician?

A check returns ``None`` when the result passes and a short reason when it does not. The same
check serves twice: as a circuit's result predicate (a response that fails it counts against
the circuit like an error) and as the gate every fallback tier's answer must pass before it
is served. A check that itself raises is a failing check, never a crash.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from .config import check_ratio
from .errors import ConfigError

__all__ = [
    "AllOf",
    "AnyOf",
    "ConfidenceFloor",
    "FieldEquals",
    "FieldType",
    "IntegrityCheck",
    "Predicate",
    "RequiredFields",
    "ValueRange",
]


class IntegrityCheck(ABC):
    """Base class: subclasses implement :meth:`_reason`."""

    name = "integrity"

    def reason(self, result: Any) -> str | None:
        """Why ``result`` fails this check, or None if it passes."""
        try:
            return self._reason(result)
        except Exception as exc:  # a check that cannot decide says no
            return f"{self.name} could not be evaluated: {type(exc).__name__}: {exc}"

    def fails(self, result: Any) -> bool:
        """True if ``result`` fails: the shape a circuit's ``record_result`` wants."""
        return self.reason(result) is not None

    @abstractmethod
    def _reason(self, result: Any) -> str | None:
        """The rule itself; may raise, which :meth:`reason` turns into a failure."""

    def __and__(self, other: IntegrityCheck) -> AllOf:
        return AllOf(self, other)


def _field(result: Any, name: str) -> Any:
    if not isinstance(result, Mapping):
        raise TypeError(f"expected a mapping, got {type(result).__name__}")
    return result[name]


class RequiredFields(IntegrityCheck):
    """The result is a mapping holding every named field, none of them None."""

    def __init__(self, *fields: str) -> None:
        if not fields or not all(isinstance(f, str) and f for f in fields):
            raise ConfigError("RequiredFields.fields", fields, "must be one or more field names")
        self.fields = fields
        self.name = f"required fields {', '.join(fields)}"

    def _reason(self, result: Any) -> str | None:
        if not isinstance(result, Mapping):
            return f"expected a mapping, got {type(result).__name__}"
        missing = [f for f in self.fields if result.get(f) is None]
        return f"missing field(s): {', '.join(missing)}" if missing else None


class ConfidenceFloor(IntegrityCheck):
    """The result's confidence is a number of at least ``floor`` (the seed: > 0.7)."""

    def __init__(self, floor: float, field: str = "confidence", *, inclusive: bool = False) -> None:
        check_ratio("ConfidenceFloor.floor", floor, allow_zero=True)
        self.floor, self.field, self.inclusive = floor, field, inclusive
        op = ">=" if inclusive else ">"
        self.name = f"{field} {op} {floor}"

    def _reason(self, result: Any) -> str | None:
        value = _field(result, self.field)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return f"{self.field} is not a number: {value!r}"
        ok = value >= self.floor if self.inclusive else value > self.floor
        return None if ok else f"{self.field} {value} below the floor {self.floor}"


class ValueRange(IntegrityCheck):
    """A numeric field lies within [lo, hi] (out-of-range vitals, doses, probabilities)."""

    def __init__(self, field: str, lo: float, hi: float) -> None:
        if not lo <= hi:
            raise ConfigError("ValueRange", (lo, hi), "needs lo <= hi")
        self.field, self.lo, self.hi = field, lo, hi
        self.name = f"{field} in [{lo}, {hi}]"

    def _reason(self, result: Any) -> str | None:
        value = _field(result, self.field)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return f"{self.field} is not a number: {value!r}"
        return None if self.lo <= value <= self.hi else (
            f"{self.field} {value} outside [{self.lo}, {self.hi}]")


class FieldType(IntegrityCheck):
    """A field holds a value of one JSON type (``list``, ``dict``, ``str``, ``number``,
    ``bool``): declarable in a strategy file where :class:`Predicate` is not."""

    TYPES: Mapping[str, tuple[type, ...]] = {
        "list": (list, tuple), "dict": (Mapping,), "str": (str,), "number": (int, float),
        "bool": (bool,)}

    def __init__(self, field: str, type_name: str) -> None:
        if type_name not in self.TYPES:
            raise ConfigError("FieldType.type", type_name, f"must be one of {list(self.TYPES)}")
        self.field, self.type_name = field, type_name
        self.name = f"{field} is a {type_name}"

    def _reason(self, result: Any) -> str | None:
        value = _field(result, self.field)
        ok = isinstance(value, self.TYPES[self.type_name]) and not (
            self.type_name == "number" and isinstance(value, bool))
        return None if ok else f"{self.field} is not a {self.type_name}: {type(value).__name__}"


class FieldEquals(IntegrityCheck):
    """A field holds exactly ``value`` (an explicit "queued for manual review" answer)."""

    def __init__(self, field: str, value: Any) -> None:
        self.field, self.value = field, value
        self.name = f"{field} == {value!r}"

    def _reason(self, result: Any) -> str | None:
        value = _field(result, self.field)
        return None if value == self.value else f"{self.field} is {value!r}, not {self.value!r}"


class Predicate(IntegrityCheck):
    """Any callable ``result -> bool`` (True = passes), named for messages."""

    def __init__(self, fn: Callable[[Any], bool], name: str) -> None:
        if not callable(fn):
            raise ConfigError("Predicate.fn", fn, "must be callable")
        self.fn, self.name = fn, name

    def _reason(self, result: Any) -> str | None:
        return None if self.fn(result) else f"{self.name} is false"


class AllOf(IntegrityCheck):
    """Every check passes; the reason is the first failing one's."""

    def __init__(self, *checks: IntegrityCheck) -> None:
        if not all(isinstance(c, IntegrityCheck) for c in checks):
            raise ConfigError("AllOf.checks", checks, "must all be IntegrityCheck instances")
        self.checks = checks
        self.name = " and ".join(c.name for c in checks)

    def _reason(self, result: Any) -> str | None:
        for c in self.checks:
            r = c.reason(result)
            if r is not None:
                return r
        return None


class AnyOf(IntegrityCheck):
    """At least one check passes; the reason lists why each failed."""

    def __init__(self, *checks: IntegrityCheck) -> None:
        if not checks or not all(isinstance(c, IntegrityCheck) for c in checks):
            raise ConfigError("AnyOf.checks", checks, "must be one or more IntegrityChecks")
        self.checks = checks
        self.name = " or ".join(f"({c.name})" for c in checks)

    def _reason(self, result: Any) -> str | None:
        reasons = []
        for c in self.checks:
            r = c.reason(result)
            if r is None:
                return None
            reasons.append(r)
        return "; ".join(reasons)
