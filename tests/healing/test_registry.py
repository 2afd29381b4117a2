"""The breaker registry: keyed by (service, provider), idle breakers evicted, open ones kept."""

from __future__ import annotations

from healing import CircuitBreakerRegistry, CircuitConfig, CircuitState, ManualClock, ServiceId


def test_breakers_are_keyed_by_service_and_provider():
    r = CircuitBreakerRegistry(ManualClock())
    a = r.get("clinical_reasoning", "gemini:pro")
    assert r.get("clinical_reasoning", "gemini:pro") is a
    assert r.get("clinical_reasoning", "deepseek") is not a
    assert a.name == "clinical_reasoning:gemini:pro"
    assert r.get(*ServiceId("clinical_reasoning", "gemini:pro")) is a


def test_per_service_config_is_used():
    cfg = CircuitConfig(window_size=7)
    r = CircuitBreakerRegistry(ManualClock(), configs={"pharmaguard": cfg})
    assert r.get("pharmaguard").config is cfg and r.get("other").config.window_size == 100


def test_idle_closed_breakers_are_evicted_but_open_ones_are_kept():
    clock = ManualClock()
    r = CircuitBreakerRegistry(clock, idle_ttl_s=60)
    r.get("quiet", now=0.0)
    r.get("busy", now=0.0)
    sick = r.get("sick", now=0.0)
    sick.force_open(0.0)
    r.get("busy", now=50.0)
    evicted = r.evict_idle(70.0)
    assert evicted == [ServiceId("quiet")]
    assert {k.service for k, _ in r.items()} == {"busy", "sick"}
    assert r.get("sick").state is CircuitState.FORCED_OPEN


def test_creation_sweeps_idle_breakers_so_the_registry_stays_bounded():
    clock = ManualClock()
    r = CircuitBreakerRegistry(clock, idle_ttl_s=10)
    for i in range(5):
        r.get(f"s{i}", now=0.0)
    clock.advance(11)
    r.get("new", now=11.0)
    assert [k.service for k, _ in r.items()] == ["new"]


def test_registry_listeners_reach_existing_and_future_breakers():
    r = CircuitBreakerRegistry(ManualClock())
    seen = []
    early = r.get("a")
    r.add_listener(seen.append)
    late = r.get("b")
    early.force_open(0.0)
    late.force_open(0.0)
    assert [e.circuit for e in seen] == ["a", "b"]
