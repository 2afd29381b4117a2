"""Workflow files: the shipped ones load; a mistake names the file, the line and the field."""

from __future__ import annotations

import textwrap

import pytest

from healing import ConfigError
from healing.workflow import FailureAction, Priority, Trigger
from healing.workflow_files import WorkflowFileError, load_workflow, load_workflows

GOOD = """\
id: test-flow
trigger: circuit_open
service: clinical_reasoning
priority: high
timeout: 30s
steps:
  - action: fallback
    config: {provider: deepseek}
  - action: alert
    config: {severity: high, channel: slack}
"""


def write(tmp_path, text, name="flow.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_the_shipped_workflows_load_and_cover_the_seed_and_clinical_cases():
    flows = {w.id: w for w in load_workflows()}
    assert set(flows) == {"ai-service-failure", "database-connection-lost",
                          "memory-leak-detected", "pharmaguard-down", "imaging-analysis-down"}
    leak = flows["memory-leak-detected"]
    assert [s.action for s in leak.steps] == ["alert", "scale", "restart"]
    assert leak.steps[2].failure_action is FailureAction.ROLLBACK and leak.timeout_s == 120
    assert flows["database-connection-lost"].priority is Priority.CRITICAL
    assert flows["database-connection-lost"].trigger is Trigger.HEALTH_CHECK_FAILED
    # pharmaguard: prescriptive, so no cache_warm and no fallback to cached data
    assert {s.action for s in flows["pharmaguard-down"].steps} == {"alert", "retry"}


def test_a_good_file_loads(tmp_path):
    w = load_workflow(write(tmp_path, GOOD))
    assert w.timeout_s == 30 and w.steps[0].config == {"provider": "deepseek"}


@pytest.mark.parametrize("edit,line,field,words", [
    (lambda t: t.replace("action: fallback", "action: reboot"), 7, "steps[0].action",
     "must be one of"),
    (lambda t: t.replace("{severity: high, channel: slack}", "{severity: high}"), 10,
     "steps[1].config", "missing ['channel']"),
    (lambda t: t.replace("timeout: 30s", "timeout: -5"), 5, "timeout", "finite number > 0"),
    (lambda t: t.replace("timeout: 30s", "timeout: soon"), 5, "timeout", "duration"),
    (lambda t: t.replace("config: {provider: deepseek}",
                         "config: {provider: deepseek}\n    failure_action: rollback"), 9,
     "steps[0].failure_action", "needs rollback_steps"),
    (lambda t: t + "rollback_steps:\n  - action: scale\n    config: {instances: 1}\n", 11,
     "rollback_steps", "would never run"),
    (lambda t: t.replace("trigger: circuit_open", "trigger: sunspots"), 2, "trigger",
     "must be one of"),
    (lambda t: t + "colour: red\n", 11, "colour", "not a workflow field"),
    (lambda t: t.replace("    config: {provider: deepseek}", "    confg: {provider: x}"), 8,
     "steps[0].confg", "not a step field"),
    (lambda t: t.replace("steps:", "stepz:"), 6, "stepz", "not a workflow field"),
    (lambda t: t + "clinical_context: {operation_type: surgical}\n", 11,
     "clinical_context.operation_type", "must be one of"),
    (lambda t: t.replace("{provider: deepseek}", "{provider: deepseek, tier: cached_data}"),
     8, "steps[0].config", "exactly one of"),
    (lambda t: t.replace("{provider: deepseek}", "{read_replica: yes please}"), 8,
     "steps[0].config.read_replica", "must be true"),
    (lambda t: t.replace("{provider: deepseek}", "{tier: degraded_mode, recheck_s: 0}"), 8,
     "steps[0].config.recheck_s", "> 0"),
    (lambda t: t.replace("action: fallback\n    config: {provider: deepseek}",
                         "action: cache_warm\n    config: {ttl_s: 60, operations: "
                         "[prescriptive]}"), 8, "steps[0].config.operations",
     "never cached"),
    (lambda t: t.replace("action: fallback\n    config: {provider: deepseek}",
                         "action: cache_warm\n    config: {ttl_s: -1}"), 8,
     "steps[0].config.ttl_s", "> 0"),
    (lambda t: t.replace("action: fallback\n    config: {provider: deepseek}",
                         "action: scale\n    config: {instances: lots}"), 8,
     "steps[0].config.instances", "like +1"),
    (lambda t: t.replace("  - action: alert", "  - action: alert\n    success_criteria:"
                         "\n      - vibes: {}"), 10, "steps[1].success_criteria",
     "must be one of"),
])
def test_a_mistake_names_the_file_line_and_field(tmp_path, edit, line, field, words):
    p = write(tmp_path, edit(GOOD))
    with pytest.raises(WorkflowFileError) as err:
        load_workflow(p)
    e = err.value
    assert e.field == field and words in str(e) and str(p) in str(e)
    if line is not None:
        assert e.line == line, str(e)


def test_broken_yaml_names_its_line(tmp_path):
    p = write(tmp_path, "id: x\nsteps: [unclosed\n")
    with pytest.raises(WorkflowFileError, match=r"flow.yaml:\d+: yaml: is not valid YAML"):
        load_workflow(p)


def test_two_workflows_for_one_trigger_and_service_are_refused(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("test-flow", "other"), "b.yaml")
    with pytest.raises(ConfigError, match="handled by both"):
        load_workflows(tmp_path)
