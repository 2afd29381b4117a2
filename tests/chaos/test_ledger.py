"""The checks the chaos suite judges experiments by: each rule fires on the history that
breaks it, and stays quiet on one that keeps it."""

from __future__ import annotations

from collections import Counter

from serve.chaos.ledger import (
    EXPLICIT,
    FALLBACK,
    PRIMARY,
    Entry,
    check_answers,
    check_audit,
    check_counters,
    check_steps,
    compare_groups,
    tally,
)

ALLOWED = {"clinical_reasoning": {"alternative_provider:deepseek"},
           "pharmaguard": {"alternative_provider:local_database"},
           "care_locator": {"cached_data"}}


def entry(i, service="clinical_reasoning", op="diagnostic", crit="high", patient="p1",
          **kw):
    e = Entry(i, service, op, crit, patient, due=i / 10)
    for k, v in kw.items():
        setattr(e, k, v)
    return e


def good_history():
    return [
        entry(0, outcome=PRIMARY, tier="primary"),
        entry(1, outcome=FALLBACK, tier="alternative_provider:deepseek",
              method="alternative_provider", patient="p2"),
        entry(2, crit="life_critical", outcome=EXPLICIT, guidance="triage manually",
              patient="p2"),
        entry(3, "care_locator", "informational", "low", outcome=FALLBACK, tier="cached_data",
              method="cached_data", staleness_s=40.0, warning="40 s old", patient="p3"),
    ]


def test_a_history_that_keeps_every_rule_has_no_violation():
    assert not check_answers(good_history(), ALLOWED)
    assert tally(good_history()) == {
        "sent": 4, "answered": 3, "by_outcome": {"explicit": 1, "fallback": 2, "primary": 1},
        "by_tier": {"alternative_provider:deepseek": 1, "cached_data": 1, "primary": 1},
        "availability": 0.75}


def test_each_safety_rule_fires_on_the_request_that_breaks_it():
    bad = [
        entry(10),  # never came back
        entry(11, outcome="error", error="KeyError: 'x'"),
        entry(12, crit="life_critical", outcome=FALLBACK, tier="alternative_provider:deepseek",
              method="alternative_provider"),
        entry(13, "pharmaguard", "prescriptive", outcome=FALLBACK, tier="cached_data",
              method="cached_data", warning="old"),
        entry(14, "care_locator", "informational", "low", outcome=FALLBACK,
              tier="cached_data", method="cached_data"),
        entry(15, outcome=EXPLICIT, guidance=None),
    ]
    v = check_answers(bad, ALLOWED)
    assert {r: v.count(r) for r in v.by_rule} == {
        "unanswered": 1, "unexpected_error": 1, "life_critical_substitute": 1,
        "prescriptive_cached": 1, "tier_not_allowed": 1, "stale_without_warning": 1,
        "failure_without_guidance": 1}


def test_the_audit_check_finds_lost_duplicated_and_unexplained_failure_records():
    history = good_history()  # p2 failed twice, p3 once, p1 never

    def pseudo(p):
        return "h-" + p

    v, t = check_audit(history, Counter({"h-p2": 2, "h-p3": 1}), pseudo)
    assert not v and t == {"expected": 3, "found": 3, "lost": 0, "duplicated": 0,
                           "unexplained": 0}
    v, t = check_audit(history, Counter({"h-p2": 1, "h-p3": 2, "h-p1": 1}), pseudo)
    assert (t["lost"], t["duplicated"], t["unexplained"]) == (1, 1, 1)
    assert set(v.by_rule) == {"audit_lost", "audit_duplicated", "audit_unexplained"}


def test_every_reported_recovery_step_must_be_audited_exactly_once():
    runs = [{"run_id": "r1", "steps": [{"step": 0, "status": "started"},
                                       {"step": 0, "status": "succeeded"}]}]
    ok = Counter({("r1", 0, "started"): 1, ("r1", 0, "succeeded"): 1})
    assert check_steps(runs, ok) == (check_steps(runs, ok)[0], {"expected": 2, "lost": 0})
    assert not check_steps(runs, ok)[0]
    v, t = check_steps(runs, Counter({("r1", 0, "started"): 2}))
    assert t["lost"] == 1 and set(v.by_rule) == {"step_lost", "step_duplicated"}


def test_counters_must_equal_the_generators_own_counts():
    history = good_history()
    exact = {"clinical_reasoning": {"total": 3, "fallbacks": 1},
             "care_locator": {"total": 1, "fallbacks": 1}}
    v, out = check_counters(history, exact)
    assert not v and out["clinical_reasoning"] == {"sent": 3, "counted": 3, "fallbacks": 1,
                                                   "fallbacks_counted": 1}
    v, _ = check_counters(history, {**exact, "care_locator": {"total": 0}})
    assert v.count("counter_mismatch") == 2


def test_the_control_group_shows_a_fault_that_spread_beyond_its_service():
    # clinical reasoning's provider hangs from 2 s to 4 s; the care locator is the control
    def history(spread: bool):
        out = []
        for i in range(60):
            due = i / 10
            faulted = i % 2 == 0
            e = entry(i, "clinical_reasoning" if faulted else "care_locator",
                      outcome=PRIMARY, tier="primary")
            e.due = e.sent = due
            held = 2 <= due < 4 and (faulted or spread)
            e.done = due + (1.5 if held else 0.01)
            out.append(e)
        return out

    contained = compare_groups(history(False), {"clinical_reasoning"}, (2.0, 4.0))
    assert contained["faulted"] == ["clinical_reasoning"]
    assert contained["experiment"]["requests"] == contained["control"]["requests"] == 10
    assert contained["experiment"]["p99_s"] == 1.5
    assert contained["control"]["p99_s"] == contained["control_before"]["p99_s"] == 0.01
    spread = compare_groups(history(True), {"clinical_reasoning"}, (2.0, 4.0))
    assert spread["control"]["p99_s"] == 1.5 > spread["control_before"]["p99_s"]
    assert spread["control"]["answered"] == 1.0  # slower, but answered
    assert compare_groups([], {"x"}, (0, 1))["control"] == {"requests": 0}
