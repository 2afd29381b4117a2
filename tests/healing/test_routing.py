"""Routes: a cluster-wide decision to answer a service from one of its fallback tiers."""

from __future__ import annotations

import asyncio

import pytest

from healing import ClinicalContext, ClinicalSafetyError, ConfigError, Route, RouteTable
from tests.factories import make_guard

DX = ClinicalContext("diagnostic", "high", patient_id="MRN-1")
RX = ClinicalContext("prescriptive", "high", patient_id="MRN-1")
LIFE = ClinicalContext("diagnostic", "life_critical", patient_id="MRN-1")
INFO = ClinicalContext("informational", "low")


def primary(*_a, **_k):
    primary.calls += 1
    return {"findings": ["nodule"], "confidence": 0.95}


primary.calls = 0


def routed_guard(service: str, tier: str):
    g = make_guard()
    g.routes.set(service, Route(tier, "imaging-analysis-down: manual review", 1.0))
    primary.calls = 0
    return g


def test_a_routed_service_skips_the_primary_and_answers_from_the_routed_tier():
    g = routed_guard("xray_analysis", "degraded_mode")
    r = g.call("xray_analysis", primary, context=DX)
    assert primary.calls == 0
    assert r.tier == "degraded_mode" and r.data["status"] == "queued_for_manual_review"
    assert r.warning and r.integrity_checked
    # the tiers before the routed one were never tried, so they are not reported as failures
    assert r.passed_over == ()
    [rec] = g.sink.outcomes
    assert rec.success and rec.error_kind == "routed" and rec.tier == "degraded_mode"
    # a route is no failure of the primary: its circuit saw nothing
    assert g.breakers.get("xray_analysis").metrics().calls == 0


def test_a_route_to_a_provider_label_starts_at_that_provider():
    g = routed_guard("clinical_reasoning", "alternative_provider:deepseek")
    g.fallbacks.register_provider("clinical_reasoning", "deepseek",
                                  lambda: {"diagnosis": "d", "confidence": 0.9})
    r = g.call("clinical_reasoning", primary, context=DX)
    assert primary.calls == 0 and r.tier == "alternative_provider:deepseek"
    assert g.breakers.get("clinical_reasoning", "deepseek").metrics().calls == 1


def test_when_the_routed_tier_fails_the_later_tiers_answer_and_the_earlier_are_not_tried():
    g = routed_guard("clinical_reasoning", "cached_data")
    g.fallbacks.register_provider("clinical_reasoning", "deepseek",
                                  lambda: pytest.fail("an earlier tier was tried"))
    g.fallbacks.register_handler("clinical_reasoning", "rule_based_engine",
                                 lambda: {"diagnosis": "rules", "confidence": 0.8})
    r = g.call("clinical_reasoning", primary, context=DX, cache_key="q")
    assert r.tier == "degraded_mode:rule_based_engine"
    assert [f.tier for f in r.passed_over] == ["cached_data"]


@pytest.mark.parametrize("service,context,tier", [
    ("emergency_triage", INFO, "degraded_mode"),  # a critical service
    ("clinical_reasoning", LIFE, "degraded_mode"),  # a life-critical request
    ("care_locator", RX, "cached_data"),  # a tier refused for prescriptive requests
    ("clinical_reasoning", ClinicalContext("administrative", "low"), "degraded_mode"),  # unvetted
    ("clinical_reasoning", DX, "no_such_tier"),  # a tier the strategy does not have
])
def test_requests_a_route_may_not_serve_keep_calling_the_primary(service, context, tier):
    g = routed_guard(service, tier)
    r = g.call(service, primary, context=context)
    assert primary.calls == 1 and r.tier == "primary"


def test_a_life_critical_request_still_fails_explicitly_when_its_primary_fails():
    g = routed_guard("clinical_reasoning", "degraded_mode")

    def down():
        raise ConnectionError("down")
    with pytest.raises(ClinicalSafetyError):
        g.call("clinical_reasoning", down, context=LIFE)


def test_clearing_the_route_sends_traffic_back_to_the_primary():
    g = routed_guard("xray_analysis", "degraded_mode")
    assert g.call("xray_analysis", primary, context=DX).tier == "degraded_mode"
    old = g.routes.clear("xray_analysis")
    assert old is not None and old.tier == "degraded_mode"
    assert g.call("xray_analysis", primary, context=DX).tier == "primary"
    assert g.routes.clear("xray_analysis") is None


def test_a_route_that_has_ended_sends_traffic_back_to_the_primary():
    g = make_guard()  # its clock is a ManualClock
    wall = g.clock.wall()
    g.routes.set("xray_analysis", Route("degraded_mode", "workflow", wall, until=wall + 10))
    primary.calls = 0
    assert g.call("xray_analysis", primary, context=DX).tier == "degraded_mode"
    g.clock.advance(10)
    assert g.call("xray_analysis", primary, context=DX).tier == "primary"
    assert primary.calls == 1


def test_the_async_form_obeys_routes_too():
    g = routed_guard("xray_analysis", "degraded_mode")

    async def aprimary():
        return primary()
    r = asyncio.run(g.acall("xray_analysis", aprimary, context=DX))
    assert r.tier == "degraded_mode" and primary.calls == 0


def test_a_routed_answer_is_audited_with_the_route_as_its_reason():
    records = []

    class Sink:
        pseudonymize = staticmethod(lambda v: "p:" + str(len(v)))

        def append(self, record):
            records.append(record)

    g = routed_guard("xray_analysis", "degraded_mode")
    g.audit = Sink()
    g.call("xray_analysis", primary, context=DX)
    [rec] = records
    text = repr(rec)
    assert "routed" in text and "manual review" in text and "MRN-1" not in text


def test_route_table_rejects_bad_routes_and_replaces_atomically():
    t = RouteTable()
    with pytest.raises(ConfigError):
        t.set("", Route("degraded_mode", "r", 0.0))
    with pytest.raises(ConfigError):
        t.set("svc", Route("", "r", 0.0))
    t.set("a", Route("cached_data", "r", 0.0))
    seen = t.routes
    t.replace({"b": Route("degraded_mode", "r", 0.0)})
    assert set(seen) == {"a"} and t.get("a") is None and t.get("b").tier == "degraded_mode"
