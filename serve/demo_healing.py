"""A live healing run: a Ray Serve deployment leaks, the orchestrator heals it, timed.

The same scenario serves ``make demo`` (narrated), the end-to-end test (asserted) and
``make bench`` (measured): deploy the stand-in clinical model, make its running replica
leak, trigger the memory-leak workflow, and time trigger → first action and fault →
answering again (MTTR).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from actors.alerts import AlertRouter, Endpoint
from actors.ray_gateway import get, kill
from actors.runtime import orchestrator
from actors.serve_control import delete_app, deployment_handle, replica_count, run_app
from actors.stores.redis_conn import connect
from healing import ClinicalContext
from healing.orchestration import TriggerEvent
from healing.workflow import Criterion, FailureAction, RecoveryStep, RecoveryWorkflow, Trigger

from .demo_service import build

DEPLOYMENT = "ClinicalModel"


def leak_workflow(target: str, restart_delay_s: float = 0.5) -> RecoveryWorkflow:
    """The seed's memory-leak workflow, aimed at a Serve deployment."""
    return RecoveryWorkflow(
        "memory-leak-detected", Trigger.ERROR_THRESHOLD, target, (
            RecoveryStep("alert", {"severity": "high", "channel": "slack",
                                   "message": f"{target} is leaking memory: requests fail"},
                         timeout_s=10),
            RecoveryStep("scale", {"instances": "+1", "deployment": target}, timeout_s=60),
            RecoveryStep("restart", {"graceful": True, "delay_s": restart_delay_s,
                                     "deployment": target},
                         success_criteria=(Criterion("probe_succeeds"),),
                         failure_action=FailureAction.ROLLBACK, timeout_s=90),
        ), rollback_steps=(RecoveryStep("scale", {"instances": "-1", "deployment": target},
                                        timeout_s=60),),
        timeout_s=180, priority="high", context=ClinicalContext("administrative", "medium"))


def _probe(app: str) -> Callable[[], Any]:
    async def probe() -> Any:
        return await deployment_handle(DEPLOYMENT, app).remote("probe")
    return probe


def run_healing(redis_url: str, webhook_url: str,
                say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the scenario on the connected Ray cluster; returns what happened and the times."""
    app = f"model{uuid.uuid4().hex[:6]}"
    target = f"{app}/{DEPLOYMENT}"
    switch = f"selfheal:fault:{app}"
    client = connect(redis_url)
    handle = run_app(build(redis_url, switch), app, scalable=True)
    orch = orchestrator(f"orch-{app}", workflows=[leak_workflow(target)], audit=None,
                        alerts=AlertRouter({"slack": Endpoint("slack", webhook_url)}),
                        probes={target: _probe(app)})

    def answers() -> bool:
        try:
            handle.remote("fever?").result(timeout_s=10)
        except Exception:
            return False
        return True

    try:
        get(orch.ping.remote())  # measure a running orchestrator, not its start-up
        healthy_before = answers()
        say(f"deployment {target}: 1 replica, answering: {healthy_before}")
        fault_at = time.time()
        client.set(switch, f"leak:{fault_at}")
        failing = not answers()
        say(f"fault injected: the replica has leaked memory; requests fail: {failing}")
        triggered_at = time.time()
        admission = get(orch.trigger.remote(
            TriggerEvent(Trigger.ERROR_THRESHOLD, target, "error rate over threshold")))
        say(f"error_threshold trigger → orchestrator: {admission}")
        idle = get(orch.wait_idle.remote(240))
        [run] = get(orch.runs.remote())
        history = get(orch.history.remote(run["run_id"]))
        for h in history:
            if h["status"] != "started":
                result = dict(h["result"] or {})
                effects = ", ".join(e["effect"] for e in result.pop("effects", []))
                shown = f"{effects}: {result}" if effects else (result or h["error"] or "")
                say(f"  step {h['step']} {h['action']:8s} {h['status']:10s} "
                    f"{h['duration_s']:5.1f} s  {shown}")
        deadline = time.monotonic() + 30
        while not answers() and time.monotonic() < deadline:
            time.sleep(0.05)
        healed_at = time.time()
        healthy_after = answers()
        first_action = min(h["at"] for h in history if h["status"] == "started")
        out = {"target": target, "healthy_before": healthy_before, "failing": failing,
               "admission": admission, "idle": idle, "run": run, "history": history,
               "healthy_after": healthy_after, "replicas_after": replica_count(target),
               "trigger_to_first_action_s": first_action - triggered_at,
               "mttr_s": healed_at - fault_at}
        say(f"answering again: {healthy_after}; trigger → first action "
            f"{out['trigger_to_first_action_s'] * 1e3:.0f} ms; fault → answering again "
            f"(MTTR) {out['mttr_s']:.1f} s")
        return out
    finally:
        kill(orch)
        delete_app(app)
        client.delete(switch)
