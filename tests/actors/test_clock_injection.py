"""Nothing in actors/ reads the wall clock or sleeps except through its injected Clock, so
every actor and store can be driven on a ManualClock."""

from __future__ import annotations

import pathlib
import re

import pytest

ACTORS = pathlib.Path(__file__).resolve().parents[2] / "actors"
READS_TIME = re.compile(
    r"\btime\.(time|monotonic|perf_counter|sleep)\(|\bdatetime\.(now|utcnow)\("
    r"|\basyncio\.sleep\(|^\s*(import time|from time import)", re.MULTILINE)


def test_no_actor_or_store_reads_time_except_through_its_clock():
    offenders = sorted(str(p.relative_to(ACTORS)) for p in ACTORS.rglob("*.py")
                       if READS_TIME.search(p.read_text()))
    assert offenders == []


def test_the_scan_would_see_a_clock_read():
    assert READS_TIME.search("    now = time.time()\n")
    assert READS_TIME.search("await asyncio.sleep(1)")
    assert not READS_TIME.search("now = self.clock.wall()")


def test_the_orchestrator_runs_a_workflow_on_a_manual_clock():
    """Retry backoffs of 5 s, 10 s pass in no real time: the clock jumps to each wake-up."""
    import asyncio
    import time

    from actors.orchestrator_actor import RecoveryOrchestratorActor
    from healing import ClinicalContext, ManualClock
    from healing.orchestration import TriggerEvent
    from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger

    clock = ManualClock(100.0)
    calls = []

    def probe():
        calls.append(clock.now())
        if len(calls) < 3:
            raise ConnectionError("still down")
        return "ok"

    wf = RecoveryWorkflow("reconnect", Trigger.MANUAL, "svc", (
        RecoveryStep("retry", {"max_attempts": 3, "base_delay_s": 5.0}, timeout_s=120),),
        (), 300.0, "high", ClinicalContext("administrative", "medium"))
    orch = RecoveryOrchestratorActor([wf], probes={"svc": probe}, clock=clock)

    async def main():
        assert await orch.trigger(TriggerEvent(Trigger.MANUAL, "svc", "operator")) == "queued"
        assert await orch.wait_idle(5)
        return await orch.runs()

    t0 = time.monotonic()
    [run] = asyncio.run(clock.run(main()))
    assert time.monotonic() - t0 < 5  # simulated waits, not real ones
    assert run["succeeded"] and run["started_at"] == ManualClock(100.0).wall()
    assert len(calls) == 3 and calls[0] == 100.0 and calls[-1] > calls[0]  # time moved
    assert run["ended_at"] - run["started_at"] == pytest.approx(calls[-1] - calls[0])
