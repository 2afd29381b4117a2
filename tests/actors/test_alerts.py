"""Alerts against a real webhook receiver on loopback: Slack and PagerDuty Events v2."""

from __future__ import annotations

import pytest

from actors.alerts import AlertError, AlertManager, AlertRouter, Endpoint
from healing import ConfigError
from tests.actors.webhooks import WebhookReceiver


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def manager(url, **escalate):
    router = AlertRouter({"slack": Endpoint("slack", f"{url}/slack"),
                          "pager": Endpoint("pagerduty", f"{url}/pd", routing_key="R0UT1NG")},
                         escalate=escalate)
    return AlertManager(router, source="selfheal-test")


def test_slack_message_carries_service_severity_and_summary(receiver):
    m = manager(receiver.url)
    alert = m.trigger("clinical_reasoning", "high", "slack", "circuit opened",
                      details={"workflow": "ai-service-failure"})
    [(path, body)] = receiver.received
    assert path == "/slack" and "[HIGH] clinical_reasoning: circuit opened" in body["text"]
    assert any("ai-service-failure" in f["text"] for f in body["blocks"][1]["fields"])
    assert alert.status == "triggered" and m.active()[0]["dedup_key"] == alert.dedup_key


def test_pagerduty_trigger_acknowledge_resolve_share_one_dedup_key(receiver):
    m = manager(receiver.url)
    m.trigger("database", "critical", "pager", "database unreachable", dedup_key="db-down")
    m.acknowledge("db-down")
    m.resolve("db-down")
    bodies = [b for p, b in receiver.received if p == "/pd"]
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert all(b["dedup_key"] == "db-down" and b["routing_key"] == "R0UT1NG" for b in bodies)
    payload = bodies[0]["payload"]
    assert payload == {"summary": "database: database unreachable", "source": "selfheal-test",
                       "severity": "critical", "component": "database", "custom_details": {}}
    assert m.active() == []  # resolved


def test_critical_alerts_escalate_to_the_pager_whatever_their_channel(receiver):
    m = manager(receiver.url, critical="pager")
    m.trigger("pharmaguard", "critical", "slack", "interaction checks failing")
    assert [p for p, _ in receiver.received] == ["/slack", "/pd"]
    m.trigger("care_locator", "low", "slack", "slow answers")
    assert [p for p, _ in receiver.received][-1] == "/slack" and len(receiver.received) == 3


def test_a_retriggered_alert_is_one_active_alert(receiver):
    m = manager(receiver.url)
    a = m.trigger("x", "medium", "slack", "same thing")
    b = m.trigger("x", "medium", "slack", "same thing")
    assert a.dedup_key == b.dedup_key and len(m.active()) == 1


def test_an_unreachable_or_refusing_endpoint_is_an_error_naming_it():
    refusing = WebhookReceiver(status=500)
    try:
        with pytest.raises(AlertError, match="HTTP 500"):
            manager(refusing.url).trigger("x", "high", "slack", "s")
    finally:
        refusing.close()
    with pytest.raises(AlertError, match="unreachable"):
        manager("http://127.0.0.1:9").trigger("x", "high", "slack", "s")


def test_identifiers_in_details_and_unknown_channels_are_refused(receiver):
    m = manager(receiver.url)
    with pytest.raises(ConfigError, match="identifiers"):
        m.trigger("x", "high", "slack", "s", details={"patient_id": "MRN-1"})
    with pytest.raises(ConfigError, match="no endpoint"):
        m.trigger("x", "high", "sms", "s")
    with pytest.raises(ConfigError, match="routing_key"):
        Endpoint("pagerduty", "http://127.0.0.1:1/pd")
    assert receiver.received == []
