"""Every shipped workflow runs in both worlds from the one plan: each step the simulator ran
recorded exactly the effects the core plans for it, and the live interpreter can carry out
every kind of effect the core plans. (The live run of the same fault, compared step for step
with its simulated twin, is in tests/actors/test_live_ai_failure.py.)"""

from __future__ import annotations

import pytest

from actors.recovery_actions import LiveEffects
from healing.orchestration import TriggerEvent
from healing.recovery import RecoveryPolicy, describe, plan_step
from healing.workflow import Trigger
from healing.workflow_files import load_workflows
from simulation.engine import Simulation
from simulation.scenario import SCENARIOS, load_scenario

# a library scenario whose fault sets each shipped workflow off
BY_WORKFLOW = {
    "ai-service-failure": "ai_provider_outage",
    "database-connection-lost": "database_connection_lost",
    "memory-leak-detected": "api_memory_leak",
    "pharmaguard-down": "drug_interaction_outage",
    "imaging-analysis-down": "fallback_tiers",
}


def test_every_shipped_workflow_has_a_scenario_here():
    assert {w.id for w in load_workflows()} == set(BY_WORKFLOW)


@pytest.mark.parametrize("workflow_id", sorted(BY_WORKFLOW))
def test_the_simulator_applies_exactly_the_planned_effects(workflow_id):
    sc = load_scenario(SCENARIOS / f"{BY_WORKFLOW[workflow_id]}.yaml")
    sim = Simulation(sc)
    sim.run()
    [shipped] = [w for w in load_workflows() if w.id == workflow_id]
    runs = [r for r in sim.run_summaries if r["workflow"] == workflow_id]
    assert runs, f"{workflow_id} never ran in {sc.name}"
    run = runs[0]
    workflow = next(w for w in sim.policy.workflows
                    if w.id == workflow_id and w.trigger.value == run["trigger"])
    assert workflow.steps == shipped.steps  # the file, as the live orchestrator loads it
    event = TriggerEvent(Trigger(run["trigger"]), workflow.service,
                         _detail(sim, run))
    done = [e for e in sim.steps if e["run"] == run["run_id"] and e["status"] == "succeeded"]
    assert done
    for entry in done:
        steps = workflow.rollback_steps if entry["rollback"] else workflow.steps
        step = steps[entry["step"]]
        planned = [describe(e) for e in plan_step(step, workflow, event, sim.policy.recovery,
                                                  sc.services[workflow.service].primary)]
        assert entry["result"]["effects"] == planned


def _detail(sim, run):
    """The detail of the trigger that started ``run`` (a circuit's name, say)."""
    for d in sim.detections:
        if d.service == run["service"] and d.signal == run["trigger"] and \
                abs(d.at - run["started_s"]) < 1e-6:
            return d.detail
    return ""


def test_both_interpreters_carry_out_every_kind_of_effect_the_core_plans():
    """A plan one world could not carry out would be a decision only the other one makes."""
    import typing

    from healing.recovery import Effect

    every = set(typing.get_args(Effect))
    assert set(LiveEffects.HANDLERS) == every
    planned = set()
    for w in load_workflows():
        for step in (*w.steps, *w.rollback_steps):
            event = TriggerEvent(w.trigger, w.service, f"{w.service}:primary")
            planned |= {type(e) for e in plan_step(step, w, event, RecoveryPolicy(), "primary")}
    assert planned <= every and len(planned) >= 6
