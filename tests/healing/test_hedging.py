"""Hedging: a slow primary raced against a second provider, informational requests only."""

from __future__ import annotations

import asyncio
import shutil
import threading

import pytest

from healing import ClinicalContext, Guard, InMemorySink, ManualClock
from healing.catalogue import SHIPPED, load_catalogue
from healing.errors import ConfigError
from healing.files import SourceError
from healing.limits import CallGate, CallPolicy, HedgeConfig
from healing.registry import CircuitBreakerRegistry
from tests.factories import small_config

INFO = ClinicalContext("informational", "low")
SERVICE, BACKUP = "care_locator", "care_backup"


def make(after_s: float = 1.0, timeout_s: float | None = 10.0, config=None) -> Guard:
    clock = ManualClock()
    policy = CallPolicy(timeout_s=timeout_s, hedge=HedgeConfig(BACKUP, after_s))
    config = config or small_config(window_size=50, minimum_number_of_calls=50)
    return Guard(clock=clock, sink=InMemorySink(), breakers=CircuitBreakerRegistry(clock, config),
                 gate=CallGate({(SERVICE, None): policy}, clock))


def test_a_slow_asyncio_primary_loses_to_the_hedge_and_is_cancelled():
    g = make()
    clock = g.clock
    cancelled = []

    async def slow_primary():
        try:
            await clock.asleep(5.0)
            return {"from": "primary"}
        except asyncio.CancelledError:
            cancelled.append(clock.now())
            raise

    async def backup():
        await clock.asleep(0.5)
        return {"from": "backup"}

    g.fallbacks.register_provider(SERVICE, BACKUP, backup)
    r = asyncio.run(clock.run(g.acall(SERVICE, slow_primary, context=INFO)))
    assert r.tier == f"hedge:{BACKUP}" and r.data == {"from": "backup"}
    assert clock.now() == 1.5 and cancelled == [1.5]
    assert g.breakers.get(SERVICE).metrics().calls == 0  # cut short: counted nowhere
    assert g.breakers.get(SERVICE, BACKUP).metrics().calls == 1
    [snap] = [s for s in g.gate.snapshot() if s["provider"] is None]
    assert snap["hedge_rate"] == 1.0 and snap["hedges_won"] == 1
    assert g.sink.outcomes[-1].tier == f"hedge:{BACKUP}" and g.sink.outcomes[-1].success


def test_a_prompt_primary_is_not_hedged_and_a_faster_primary_wins_the_race():
    g = make()
    clock = g.clock
    asked = []

    async def backup(*_args):  # asked with the primary's arguments
        asked.append(clock.now())
        await clock.asleep(3.0)
        return {"from": "backup"}

    g.fallbacks.register_provider(SERVICE, BACKUP, backup)

    async def after(seconds):
        await clock.asleep(seconds)
        return {"from": "primary"}

    r = asyncio.run(clock.run(g.acall(SERVICE, after, 0.5, context=INFO)))
    assert r.tier == "primary" and not asked
    r = asyncio.run(clock.run(g.acall(SERVICE, after, 2.0, context=INFO)))
    assert r.tier == "primary" and asked == [1.5]  # asked at 1 s into the call; lost at 2 s
    assert g.breakers.get(SERVICE, BACKUP).metrics().calls == 0


def test_clinical_requests_are_never_hedged():
    g = make()
    clock = g.clock
    asked = []
    g.fallbacks.register_provider(SERVICE, BACKUP, lambda: asked.append(1))

    async def slow():
        await clock.asleep(3.0)
        return {"from": "primary"}

    for ctx in (ClinicalContext("diagnostic", "high"), ClinicalContext("prescriptive", "high")):
        r = asyncio.run(clock.run(g.acall(SERVICE, slow, context=ctx)))
        assert r.tier == "primary"
    assert not asked


def test_a_hedge_answer_failing_its_check_is_not_served():
    g = make(config=small_config(window_size=50, minimum_number_of_calls=50,
                                 record_result=lambda v: not isinstance(v, dict)))
    clock = g.clock

    async def bad_backup():
        return "not an answer"

    async def slow():
        await clock.asleep(3.0)
        return {"from": "primary"}

    g.fallbacks.register_provider(SERVICE, BACKUP, bad_backup)
    r = asyncio.run(clock.run(g.acall(SERVICE, slow, context=INFO)))
    assert r.tier == "primary" and clock.now() == 3.0  # the race went on to the primary
    assert g.breakers.get(SERVICE, BACKUP).metrics().failed == 1


def test_a_hung_sync_primary_loses_to_the_hedge_without_being_waited_for():
    g = make(after_s=1.0)
    release = threading.Event()
    g.fallbacks.register_provider(SERVICE, BACKUP, lambda: {"from": "backup"})
    r = g.call(SERVICE, release.wait, context=INFO)
    assert r.tier == f"hedge:{BACKUP}" and g.clock.now() == 1.0
    assert g.breakers.get(SERVICE).metrics().calls == 0
    release.set()


def test_hedge_in_the_catalogue(tmp_path):
    root = tmp_path / "c"
    shutil.copytree(SHIPPED, root)
    text = (root / "services.yaml").read_text()
    (root / "services.yaml").write_text(text.replace(
        "        deepseek: {timeout: 45s}",
        "        deepseek: {timeout: 45s}\n      hedge: {provider: deepseek, after: 3s}"))
    policies = load_catalogue(root).call_policies()
    assert policies[("clinical_reasoning", None)].hedge == HedgeConfig("deepseek", 3.0)
    (root / "services.yaml").write_text(text.replace(
        "        deepseek: {timeout: 45s}",
        "        deepseek: {timeout: 45s}\n      hedge: {provider: claude, after: 3s}"))
    with pytest.raises(SourceError, match=r"services.yaml:21: services.clinical_reasoning"
                                          r".limits.hedge.provider: must be one of"):
        load_catalogue(root)
    with pytest.raises(ConfigError, match="after_s"):
        HedgeConfig("x", 0)


def test_when_both_fail_the_fallback_tiers_answer_and_both_breakers_count():
    g = make(after_s=1.0)
    clock = g.clock

    async def failing_backup(*_a):
        raise ConnectionError("backup down")

    async def slow_failure():
        await clock.asleep(2.0)
        raise ConnectionError("primary down")

    g.fallbacks.register_provider(SERVICE, BACKUP, failing_backup)
    r = asyncio.run(clock.run(g.acall(SERVICE, slow_failure, context=INFO)))
    assert r.tier == "static_fallback" and clock.now() == 2.0
    assert g.breakers.get(SERVICE).metrics().failed == 1
    assert g.breakers.get(SERVICE, BACKUP).metrics().failed == 1
    assert g.sink.outcomes[-1].error_kind == "ConnectionError"


def test_a_sync_primary_that_answers_first_wins_and_the_hedge_is_not_counted():
    g = make(after_s=1.0)
    gate = threading.Event()
    g.fallbacks.register_provider(SERVICE, BACKUP, lambda: gate.wait() and {"from": "backup"})

    def primary():
        return {"from": "primary"}

    r = g.call(SERVICE, primary, context=INFO)
    assert r.tier == "primary" and g.breakers.get(SERVICE, BACKUP).metrics().calls == 0
    gate.set()
