"""Two-key paging, live: the real predictive monitor keeps each service's error budget from
the metric streams and sends its burn-rate alerts to the real orchestrator, whose pager
pages (PagerDuty, on loopback) only when a burn-rate alert and a detection agree; a
detection alone is a ticket (Slack, on loopback), and a workflow's paging alert step waits
for the same agreement."""

from __future__ import annotations

import time
import uuid

import ray

from actors.alerts import AlertRouter, Endpoint
from actors.runtime import orchestrator, predictive_monitor
from actors.stores.metric_stream import MetricRecorder
from actors.stores.redis_conn import connect
from healing import ClinicalContext
from healing.orchestration import TriggerEvent
from healing.outcome import OutcomeRecord
from healing.safety import Criticality, OperationType
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger
from tests.actors.webhooks import WebhookReceiver
from tests.conftest import REDIS_URL

ADMIN = ClinicalContext("administrative", "medium")
PAGE_STEP = RecoveryStep("alert", {"severity": "critical", "channel": "pager"}, timeout_s=10)


def wait_for(fn, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    return fn()


def test_a_detection_alone_is_a_ticket_and_a_burning_budget_with_it_pages(ray_cluster):
    uid = uuid.uuid4().hex[:6]
    quiet, burning = f"quiet{uid}", f"burning{uid}"
    prefix, orch_name = f"pg{uid}", f"orch-pg-{uid}"
    receiver = WebhookReceiver()
    router = AlertRouter({"slack": Endpoint("slack", f"{receiver.url}/slack"),
                          "pager": Endpoint("pagerduty", f"{receiver.url}/pd", "R" * 32)},
                         escalate={"critical": "pager"})
    flows = [RecoveryWorkflow(f"wake:{s}", Trigger.ANOMALY, s, (PAGE_STEP,), (), 30.0, "high",
                              ADMIN) for s in (quiet, burning)]
    orch = orchestrator(orch_name, workflows=flows, alerts=router, paging="two_key")
    mon = predictive_monitor(REDIS_URL, f"monitor-{uid}", orch_name, start=False,
                             prefix=prefix, sample_rate=1.0, settle_s=0.0)
    client = connect(REDIS_URL)
    recorder = MetricRecorder(client, sample_rate=1.0, prefix=prefix, flush_interval_s=60)
    try:
        # A detection with every request answered: the workflow's paging step and the pager
        # both say so on Slack; PagerDuty hears nothing.
        ray.get(orch.trigger.remote(TriggerEvent(Trigger.ANOMALY, quiet, "a drill")))
        ray.get(orch.wait_idle.remote(30))

        def said_on_slack():
            return [b for p, b in receiver.received if p == "/slack" and quiet in b["text"]]

        # both messages: they arrive one after the other, and waiting for the first alone
        # failed once in CI with the second not yet delivered
        wait_for(lambda: len(said_on_slack()) >= 2)
        slack = said_on_slack()
        assert len(slack) == 2, slack
        assert any("ticket: no error budget burning yet" in b["text"] for b in slack)
        assert any("ticket:" in b["text"] and "a detector fired" in b["text"] for b in slack)
        assert not [b for p, b in receiver.received if p == "/pd"]
        # An hour answered, then 20 minutes with one request in five unanswered: the
        # monitor sees the anomaly and the budget burning at 200x; the two keys agree.
        t0 = time.time() - 4800
        for k in range(4800):
            bad = k >= 3600 and k % 5 == 0
            recorder.record(OutcomeRecord(burning, "main", not bad, 0.01,
                                          "ConnectionError" if bad else None,
                                          "none" if bad else "primary", None,
                                          OperationType.ADMINISTRATIVE, Criticality.MEDIUM,
                                          t0 + k))
        recorder.flush()
        ray.get(mon.step.remote(now=t0 + 4800))
        slo = ray.get(mon.slo.remote())["services"][burning]
        assert slo["burn_rates"]["3600"] > 14.4 and slo["budget_remaining"] < 0
        assert {a["severity"] for a in slo["alerts"]} >= {"page"}
        pages = wait_for(lambda: [b for p, b in receiver.received
                                  if p == "/pd" and b.get("dedup_key") == f"slo-{burning}"])
        assert pages and pages[0]["event_action"] == "trigger"
        assert pages[0]["payload"]["severity"] == "critical"
        assert "error budget burning" in pages[0]["payload"]["summary"]
        # the alert the operator sees is the page now, not the ticket it started as
        # the alert manager records the alert after posting it, so the page can reach
        # PagerDuty a moment before the orchestrator shows it (failed once under load)
        def shown_now():
            return [a for a in ray.get(orch.active_alerts.remote())
                    if a["dedup_key"] == f"slo-{burning}" and a["severity"] == "critical"]

        [shown] = wait_for(shown_now) or [a for a in ray.get(orch.active_alerts.remote())
                                          if a["dedup_key"] == f"slo-{burning}"]
        assert shown["severity"] == "critical" and shown["summary"].startswith("page:")
        assert "pager" in shown["channels"]
        # the quiet service, whose budget never burned, was never paged
        assert not [b for p, b in receiver.received if p == "/pd" and quiet in str(b)]
        # A restarted monitor keeps the budget spent: the streams' events are not read twice
        ray.get(mon.save_state.remote())
        ray.kill(mon, no_restart=False)
        deadline = time.monotonic() + 30
        while ray.get(mon.state.remote())["events_read"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the kill is asynchronous: wait for the new instance
        client.delete(f"selfheal:monitor-{uid}:slo")
        ray.get(mon.step.remote(now=t0 + 4800))
        again = ray.get(mon.slo.remote())["services"][burning]
        assert again["burn_rates"]["3600"] == slo["burn_rates"]["3600"]
    finally:
        ray.kill(mon)
        ray.kill(orch)
        receiver.close()
        recorder.close()
        client.delete(f"{prefix}:{burning}", f"{prefix}:{burning}:count")
        for key in client.scan_iter(f"selfheal:monitor-{uid}:*"):
            client.delete(key)
