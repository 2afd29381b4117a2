"""Fallback tiers: order, integrity on every answer, staleness, one error listing all."""

from __future__ import annotations

import pytest

from healing import (
    ClinicalContext,
    ConfidenceFloor,
    ConfigError,
    FallbackExhausted,
    FallbackStrategy,
    FallbackTier,
    ManualClock,
    TierMethod,
)
from tests.factories import make_guard

DX = ClinicalContext("diagnostic", "high", patient_id="p-1")


def down(*_a, **_k):
    raise ConnectionError("primary down")


def answer(confidence):
    return lambda *_a, **_k: {"diagnosis": "x", "confidence": confidence}


def test_tiers_are_tried_in_priority_order_whatever_order_they_were_given():
    s = FallbackStrategy("s", (FallbackTier(3, "static_fallback", response={"m": 3}),
                               FallbackTier(1, "static_fallback", response={"m": 1})))
    assert [t.priority for t in s.tiers] == [1, 3]
    with pytest.raises(ConfigError, match="distinct priorities"):
        FallbackStrategy("s", (FallbackTier(1, "static_fallback", response={}),
                               FallbackTier(1, "static_fallback", response={})))


def test_alternative_provider_answers_when_primary_fails():
    g = make_guard()
    g.fallbacks.register_provider("clinical_reasoning", "deepseek", answer(0.9))
    r = g.call("clinical_reasoning", down, context=DX)
    assert r.tier == "alternative_provider:deepseek" and r.priority == 1
    assert r.method is TierMethod.ALTERNATIVE_PROVIDER and r.integrity_checked
    assert r.data["confidence"] == 0.9


def test_an_answer_that_fails_integrity_is_never_served_and_next_tier_is_tried():
    g = make_guard()
    g.fallbacks.register_provider("clinical_reasoning", "deepseek", answer(0.5))
    g.fallbacks.register_handler("clinical_reasoning", "rule_based_engine", answer(0.75))
    r = g.call("clinical_reasoning", down, context=DX)
    assert r.tier == "degraded_mode:rule_based_engine" and r.data["confidence"] == 0.75
    assert r.warning.startswith("Degraded mode")


def test_failed_integrity_on_alternative_counts_against_its_circuit():
    g = make_guard()
    g.fallbacks.register_provider("clinical_reasoning", "deepseek", answer(0.1))
    for _ in range(4):
        with pytest.raises(FallbackExhausted):
            g.call("clinical_reasoning", down, context=DX)
    assert g.breakers.get("clinical_reasoning", "deepseek").state.name == "OPEN"
    with pytest.raises(FallbackExhausted, match="deepseek: its circuit is open; retry after"):
        g.call("clinical_reasoning", down, context=DX)


def test_cached_answer_is_served_with_its_age_and_stale_warning():
    clock = ManualClock()
    g = make_guard(clock)
    g.call("clinical_reasoning", answer(0.95), context=DX, cache_key="q1")
    clock.advance(120)
    r = g.call("clinical_reasoning", down, context=DX, cache_key="q1")
    assert r.tier == "cached_data" and r.staleness_s == 120
    assert "cached data from 120 s ago" in r.warning


def test_cached_answer_older_than_max_staleness_is_not_served():
    clock = ManualClock()
    g = make_guard(clock)
    g.call("clinical_reasoning", answer(0.95), context=DX, cache_key="q1")
    clock.advance(301)
    with pytest.raises(FallbackExhausted, match="nothing cached within 300 s"):
        g.call("clinical_reasoning", down, context=DX, cache_key="q1")


def test_one_patients_cached_answer_never_answers_another_patient():
    g = make_guard()
    g.call("clinical_reasoning", answer(0.95), context=DX, cache_key="q1")
    other = ClinicalContext("diagnostic", "high", patient_id="p-2")
    with pytest.raises(FallbackExhausted, match="cached_data: nothing cached"):
        g.call("clinical_reasoning", down, context=other, cache_key="q1")
    no_patient = ClinicalContext("diagnostic", "high")
    with pytest.raises(FallbackExhausted, match="cached_data: nothing cached"):
        g.call("clinical_reasoning", down, context=no_patient, cache_key="q1")


def test_a_request_without_cache_key_cannot_be_answered_from_cache():
    g = make_guard()
    g.call("clinical_reasoning", answer(0.95), context=DX, cache_key="q1")
    with pytest.raises(FallbackExhausted, match="no cache key"):
        g.call("clinical_reasoning", down, context=DX)


def test_exhausted_error_lists_every_tier_failure():
    g = make_guard()
    with pytest.raises(FallbackExhausted) as err:
        g.call("clinical_reasoning", down, context=DX, cache_key="q")
    tiers = [a.tier for a in err.value.attempts]
    assert tiers == ["alternative_provider:deepseek", "cached_data",
                     "degraded_mode:rule_based_engine"]
    assert isinstance(err.value.__cause__, ConnectionError)


def test_request_outside_what_the_strategy_was_vetted_for_gets_no_fallback():
    g = make_guard()
    g.fallbacks.register_provider("clinical_reasoning", "deepseek", answer(0.9))
    with pytest.raises(FallbackExhausted, match="not vetted for prescriptive"):
        g.call("clinical_reasoning", down, context=ClinicalContext("prescriptive", "high"))


def test_static_response_is_a_fresh_copy_each_time():
    g = make_guard()
    r1 = g.call("care_locator", down)
    r1.data["message"] = "tampered"
    r2 = g.call("care_locator", down)
    assert r2.data["message"].startswith("Service temporarily unavailable")


def test_seed_pharmaguard_fails_explicitly_with_guidance_not_cache():
    g = make_guard()
    rx = ClinicalContext("prescriptive", "high", patient_id="p-1")
    g.fallbacks.register_provider("pharmaguard", "local_database", down)
    g.call("pharmaguard", lambda: {"interactions": []}, context=rx, cache_key="warfarin")
    with pytest.raises(FallbackExhausted) as err:
        g.call("pharmaguard", down, context=rx, cache_key="warfarin")
    assert err.value.guidance.startswith("Unable to check interactions")
    assert [a.tier for a in err.value.attempts] == ["alternative_provider:local_database"]


def test_xray_degraded_mode_queues_for_manual_review():
    g = make_guard()
    r = g.call("xray_analysis", down, context=ClinicalContext("diagnostic", "high"))
    assert r.data["status"] == "queued_for_manual_review"
    assert r.warning == "AI analysis unavailable. Image queued for manual review."


def test_integrity_check_that_raises_means_not_served():
    g = make_guard()
    g.fallbacks.register(FallbackStrategy(
        "odd", (FallbackTier(1, "static_fallback", response="not a mapping"),),
        ConfidenceFloor(0.5), operation_types=frozenset({"informational"})))
    with pytest.raises(FallbackExhausted, match="could not be evaluated"):
        g.call("odd", down)
