"""Shared builders for tests: small configs, a clock, and a guard wired to both."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType
from typing import Any

from healing import (
    CircuitBreaker,
    CircuitBreakerRegistry,
    CircuitConfig,
    Guard,
    InMemorySink,
    ManualClock,
)
from healing.window import FAILED, SLOW, SUCCESS

__all__ = ["FAILED", "NOTEBOOKS", "SLOW", "SUCCESS", "audit_problems", "make_breaker",
           "make_guard", "notebook_module", "small_config"]

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def notebook_module(name: str) -> ModuleType:
    """``notebooks/<name>.py``, loaded by its path: the notebooks' helpers are imported by
    name from the notebooks' folder, which is not a package."""
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def audit_problems(store: Any, logs: Any = (), keys: Any = ()) -> list[Any]:
    """What `selfheal audit verify` finds in ``store`` (against ``logs`` signed by ``keys``)."""
    # imported here: the healing tests, which share this module, stay free of SQL
    from actors.stores.audit_verify import verify_trail

    return verify_trail(store.url, checkpoint_logs=list(logs), public_keys=list(keys)).findings


def small_config(**overrides: Any) -> CircuitConfig:
    """A circuit that opens quickly: 4 calls, 50 %, 10 s wait, 2 trial calls."""
    base: dict[str, Any] = dict(window_size=4, minimum_number_of_calls=4,
                                failure_rate_threshold=0.5, slow_call_duration_s=1.0,
                                wait_in_open_s=10.0, permitted_calls_in_half_open=2)
    base.update(overrides)
    return CircuitConfig(**base)


def make_breaker(clock: ManualClock | None = None, **overrides: Any) -> CircuitBreaker:
    return CircuitBreaker("svc", small_config(**overrides), clock or ManualClock())


def make_guard(clock: ManualClock | None = None, **overrides: Any) -> Guard:
    clock = clock or ManualClock()
    breakers = CircuitBreakerRegistry(clock, small_config(**overrides))
    return Guard(clock=clock, breakers=breakers, sink=InMemorySink())
