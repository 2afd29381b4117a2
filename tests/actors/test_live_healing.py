"""End to end: a failing Ray Serve deployment healed by the orchestrator, MTTR measured."""

from __future__ import annotations

from serve.demo_healing import run_healing
from tests.actors.webhooks import WebhookReceiver
from tests.conftest import REDIS_URL


def test_the_memory_leak_workflow_scales_restarts_and_the_service_answers_again(
        ray_cluster):
    receiver = WebhookReceiver()
    try:
        seen = run_healing(REDIS_URL, f"{receiver.url}/slack", say=print)
    finally:
        receiver.close()
    assert seen["healthy_before"] and seen["failing"] and seen["admission"] == "queued"
    assert seen["idle"] and seen["run"]["succeeded"], seen["run"]
    done = {h["action"]: h for h in seen["history"] if h["status"] == "succeeded"}
    assert done["scale"]["result"]["to"] == 2
    assert done["restart"]["result"]["replaced"] == 2  # every replica there at the time
    assert seen["healthy_after"]  # the service answers again, from fresh replicas
    # The workflow added one replica for good (as the seed's does); the restart's own extra
    # replica is gone again.
    assert seen["replicas_after"] == 2
    [(path, body)] = receiver.received
    assert path == "/slack" and seen["target"].split("/")[0] in body["text"]
    assert 0 < seen["trigger_to_first_action_s"] < seen["mttr_s"]
