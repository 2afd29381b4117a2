"""The service catalogue: the shipped one loads into the one policy both worlds run, and a
mistake in any of its files is one error naming the file, the line and the field."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from healing.catalogue import SHIPPED, load_catalogue
from healing.errors import ConfigError
from healing.fallback import FallbackStrategyRegistry
from healing.files import SourceError
from healing.integrity import FieldEquals, FieldType
from healing.strategies import default_strategies
from healing.workflow import Trigger
from healing.workflow_files import load_workflows
from learning.policy import policy_from
from simulation.policy import default_policy
from simulation.scenario import SCENARIOS, load_scenario


def test_the_shipped_catalogue_is_the_policy_both_worlds_run():
    cat = load_catalogue()
    live = policy_from(cat)
    # every strategy file is in the policy as written, and registers (the safety rules pass)
    live_keys = [_key(s) for s in live.strategies]
    assert all(_key(s) in live_keys for s in default_strategies())
    FallbackStrategyRegistry(strategies=live.strategies)
    # every workflow file answers every trigger of its service
    for w in load_workflows():
        for trigger in (Trigger.CIRCUIT_OPEN, Trigger.HEALTH_CHECK_FAILED,
                        Trigger.ERROR_THRESHOLD, Trigger.ANOMALY):
            assert dataclasses.replace(w, trigger=trigger) in live.workflows
    # every service has a workflow for every automatic trigger (an anomaly on a service
    # without a runbook once found none: the generic error workflow answered only its own)
    answered = {(w.trigger, w.service) for w in live.workflows}
    for name in cat.services:
        for trigger in Trigger:
            assert (trigger, name) in answered, (trigger, name)
    assert len(answered) == len(live.workflows)
    # the simulator, on any library scenario, runs the same policy for the same services
    compared = 0
    for path in sorted(SCENARIOS.glob("*.yaml")):
        sc = load_scenario(path)
        sim = default_policy(sc)
        for field in ("circuit", "health", "recovery", "cooldown_s", "error_window_s",
                      "error_check_s", "error_min_calls", "error_z"):
            assert getattr(sim, field) == getattr(live, field), (path.name, field)
        shared = set(sc.services) & set(cat.services)
        for name in shared:
            mine = [s for s in sim.strategies if s.service == name]
            theirs = [s for s in live.strategies if s.service == name]
            mine_spec, theirs_spec = sc.services[name], cat.services[name]
            if (mine_spec.providers, mine_spec.operation, mine_spec.criticality) == \
                    (theirs_spec.providers, theirs_spec.operation, theirs_spec.criticality):
                compared += 1
                assert [_key(s) for s in mine] == [_key(s) for s in theirs], (path.name, name)
                assert [w for w in sim.workflows if w.service == name] == \
                    [w for w in live.workflows if w.service == name], (path.name, name)
    assert compared >= 6


def _key(strategy):
    """A strategy's identity: integrity checks compare by what they check (their name)."""
    check = strategy.integrity_check
    return (strategy.service, strategy.tiers, check.name if check else None,
            strategy.operation_types, strategy.criticalities, strategy.stale_data_warning)


def test_a_catalogue_edit_changes_the_simulated_policy(tmp_path):
    """The simulator reads the operator's files, not a copy of its own."""
    shutil.copytree(SHIPPED, tmp_path / "c")
    policy_file = tmp_path / "c" / "policy.yaml"
    policy_file.write_text(policy_file.read_text().replace("cooldown: 2m", "cooldown: 7m")
                           .replace("wait_in_open: 30s", "wait_in_open: 45s"))
    cat = load_catalogue(tmp_path / "c")
    sc = load_scenario(SCENARIOS / "ai_provider_outage.yaml")
    sim = default_policy(sc, cat)
    assert sim.cooldown_s == 420.0 and sim.circuit.wait_in_open_s == 45.0
    assert policy_from(cat).cooldown_s == 420.0


def test_declared_integrity_checks_behave_like_the_seeds():
    [pharmaguard] = [s for s in default_strategies() if s.service == "pharmaguard"]
    check = pharmaguard.integrity_check
    assert check.reason({"interactions": []}) is None
    assert "interactions" in check.reason({"interactions": "none"})
    assert "missing" in check.reason({"warning": "unavailable"})
    [xray] = [s for s in default_strategies() if s.service == "xray_analysis"]
    assert xray.integrity_check.reason({"findings": ["ok"], "confidence": 0.9}) is None
    assert xray.integrity_check.reason({"status": "queued_for_manual_review"}) is None
    assert xray.integrity_check.reason({"findings": ["ok"], "confidence": 0.5}) is not None
    assert FieldType("n", "number").fails({"n": True})  # a bool is not a number
    assert not FieldEquals("s", 1).fails({"s": 1})
    with pytest.raises(ConfigError, match=r"FieldType\.type"):
        FieldType("n", "set")


# (file, text replaced, replacement, what the error must say)
BAD = [
    ("services.yaml", "criticality: low", "criticality: lowish",
     "services.yaml:48: services.care_locator.criticality: must be one of"),
    ("services.yaml", "error_rate: 0.001 ", "error_rate: 2 ",
     "services.yaml:10: services.clinical_reasoning.error_rate: must be in [0, 1]"),
    ("services.yaml", "providers: [gemini:pro, deepseek]", "providers: [a, a]",
     "services.yaml:7: services.clinical_reasoning.providers: must list distinct"),
    ("services.yaml", "    operation: prescriptive\n",
     "    operation: prescriptive\n    retries: 3\n",
     "services.yaml:25: services.pharmaguard.retries: is not a service field"),
    ("services.yaml", "    error_rate: 0.0005\n",
     "    error_rate: 0.0005\n    health_checks:\n      - {name: pg, kind: ping, target: x}\n",
     "services.yaml:28: services.pharmaguard.health_checks[0].kind: must be one of"),
    # call policies (healing.limit_files)
    ("services.yaml", "timeout: 5s\n      concurrency: {limit: 64,",
     "timeout: soon\n      concurrency: {limit: 64,",
     "services.yaml:28: services.pharmaguard.limits.timeout: must be seconds or a duration"),
    ("services.yaml", "{limit: 64, queue: 64, queue_timeout: 1s}", "{limit: 0}",
     "services.yaml:29: services.pharmaguard.limits.concurrency.limit: must be"),
    ("services.yaml", "{limit: 64, queue: 64, queue_timeout: 1s}", "{limit: 8, queue: 4}",
     "services.yaml:29: services.pharmaguard.limits.concurrency.queue_timeout: must be positive"),
    ("services.yaml", "adaptive: {min: 4, max: 128}", "adaptive: {min: 40, max: 8}",
     "services.yaml:15: services.clinical_reasoning.limits.concurrency.adaptive.max: must be at"),
    ("services.yaml", "adaptive: {min: 4, max: 128}", "adaptive: {min: 4, fast: true}",
     "services.yaml:15: services.clinical_reasoning.limits.concurrency.adaptive.fast: is not a"),
    ("services.yaml", "adaptive: {min: 4, max: 128}", "adaptive: {min: 4, gain: -1}",
     "services.yaml:15: services.clinical_reasoning.limits.concurrency.adaptive.gain: must be 0"),
    ("services.yaml", "deepseek: {timeout: 45s}", "claude: {timeout: 45s}",
     "services.yaml:20: services.clinical_reasoning.limits.providers.claude: must be one of"),
    ("services.yaml", "      retries: 1\n  xray", "      retries: -1\n  xray",
     "services.yaml:30: services.pharmaguard.limits.retries: must be a whole number"),
    ("services.yaml", "queue: 32\n", "queue: 32\n        reserved: {batch: 0.5}\n",
     "services.yaml:17: services.clinical_reasoning.limits.concurrency.reserved.batch: is not"),
    ("services.yaml", "queue: 32\n",
     "queue: 32\n        reserved: {urgent: 0.5, routine: 0.6}\n",
     "services.yaml:17: services.clinical_reasoning.limits.concurrency.reserved: must add up"),
    ("policy.yaml", "wait_in_open: 30s", "wait_in_open: soon",
     "policy.yaml:10: breaker.wait_in_open: must be seconds or a duration"),
    ("policy.yaml", "failure_rate_threshold: 0.5", "failure_rate_threshold: 1.5",
     "policy.yaml:9: breaker.failure_rate_threshold: must be in (0, 1]"),
    ("policy.yaml", "breaker:", "breakers:", "policy.yaml:3: breakers: is not a policy section"),
    ("policy.yaml", "scale_min: 1", "scale_min: 64",
     "policy.yaml:", ),  # scale_max < scale_min: the section is named
    ("strategies/pharmaguard.yaml", "  - {method: alternative_provider, provider: local_database}",
     "  - {method: alternative_provider, provider: local_database}\n"
     "  - {method: cached_data, max_staleness: 5m}",
     # the clinical rule: no cached data for prescriptions, refused at the tier that breaks it
     "pharmaguard.yaml:14: tiers[1].method: cannot serve prescriptive operations"),
    ("strategies/pharmaguard.yaml", "field_type: {field: interactions, type: list}",
     "field_type: {field: interactions}",
     "pharmaguard.yaml:11: integrity.all_of[1].field_type: needs 'type'"),
    ("strategies/pharmaguard.yaml", "required_fields", "required_field",
     "pharmaguard.yaml:10: integrity.all_of[0].required_field: is not an integrity check"),
    ("strategies/care_locator.yaml",
     "{method: cached_data, max_staleness: 1h, stale_data_warning: true}",
     "{method: static_fallback, max_staleness: 1h, response: {}}",
     "care_locator.yaml:9: tiers[0].max_staleness: applies only to cached_data tiers"),
    ("strategies/care_locator.yaml", "service: care_locator", "service: parking",
     "strategies: parking: has a strategy but is not a service in services.yaml"),
    ("workflows/ai_service_failure.yaml", "priority: high", "priority: urgent",
     "ai_service_failure.yaml:7: priority: must be one of"),
]


@pytest.mark.parametrize(("name", "old", "new", "says"), BAD,
                         ids=[f"{b[0]}:{b[2][:24]}" for b in BAD])
def test_a_mistake_names_the_file_line_and_field_and_loads_nothing(tmp_path, name, old, new,
                                                                 says):
    root = tmp_path / "c"
    shutil.copytree(SHIPPED, root)
    path = root / name
    text = path.read_text()
    assert old in text, "the test's edit must apply"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SourceError) as err:
        load_catalogue(root)
    message = str(err.value)
    assert says in message
    assert "\n" not in message and "Traceback" not in message


def test_a_directory_without_services_is_refused(tmp_path):
    with pytest.raises(SourceError, match=r"services\.yaml: file: is missing"):
        load_catalogue(tmp_path)
    with pytest.raises(SourceError, match="is not a directory"):
        load_catalogue(tmp_path / "nowhere")


def test_a_second_strategy_for_one_service_is_refused(tmp_path):
    root = tmp_path / "c"
    shutil.copytree(SHIPPED, root)
    shutil.copy(root / "strategies" / "care_locator.yaml", root / "strategies" / "copy.yaml")
    with pytest.raises(SourceError, match=r"already has a strategy in care_locator\.yaml"):
        load_catalogue(root)
