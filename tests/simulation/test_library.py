"""The scenario library against the bars of issue 5, once per scenario, on the Ray cluster.

The bars where a scenario allows them: gradual faults (a leak, a slow degradation) are found
by the predictive monitor within a minute, not seconds; a drug-interaction outage whose every
fallback is down cannot be healed, only failed explicitly.
"""

from __future__ import annotations

import pytest

from simulation.scenario import SCENARIOS

GRADUAL = {"api-memory-leak", "slow-degradation"}
UNHEALABLE = {"drug-interaction-outage"}


@pytest.fixture(scope="module")
def reports(library_data):
    _, runs = library_data  # the library simulated once a session (tests/conftest.py)
    assert len(runs) == len(list(SCENARIOS.glob("*.yaml")))
    return {r["scenario"]: r for r in runs}


def test_safety_and_audit_hold_everywhere(reports):
    for name, r in reports.items():
        assert r["integrity_violations"] == 0, name
        assert r["audit_completeness"] == 1.0, name
        assert r["false_negative_rate"] < 0.01, name
        assert r["false_positive_rate"] < 0.05, name


def test_detection_and_recovery_beat_the_seed_targets_with_margin(reports):
    for name, r in reports.items():
        if not r["incidents"]:
            continue
        # gradual faults are the predictive monitor's: seconds, not the minutes a threshold
        # takes to see them
        assert r["mttd_s"] < (60 if name in GRADUAL else 20), (name, r["mttd_s"])
        if name not in UNHEALABLE:
            assert r["mttr_s"] < 60, (name, r["mttr_s"])
            assert r["recovery_success_rate"] > 0.9, (name, r["recovery_success_rate"])


def test_the_baseline_shows_the_difference(reports):
    for name, r in reports.items():
        base = r["baseline"]
        assert r["availability"] >= base["availability"], name
        if r["incidents"]:
            assert r["availability"] > base["availability"], name
            assert base["mttd_s"] is None and base["false_negative_rate"] == 1.0, name


def test_prescriptive_outage_fails_explicitly_rather_than_serving_cache(reports):
    r = reports["drug-interaction-outage"]
    assert r["patient_impact"]["degraded"] == 0
    assert r["patient_impact"]["unavailable"] > 0  # explicit failures, with guidance


def test_the_weekly_deadlock_is_prevented_once_it_is_learnt(reports):
    r = reports["daily-deadlock-week"]
    assert r["prevented_faults"] >= 3  # of 7: three days to learn it, then prevented
    assert len(r["incidents"]) + r["prevented_faults"] == 7
