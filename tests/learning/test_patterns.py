"""Recurring failures found in history, and prevention due ahead of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healing import ConfigError
from learning.patterns import (
    DAY,
    FailureEvent,
    PatternRecognizer,
    ProactivePreventionEngine,
)

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def at(day, hour, minute=0, second=0):
    return MONDAY + day * DAY + hour * 3600 + minute * 60 + second


def test_a_daily_1400_deadlock_is_found_with_its_time_cause_and_advice():
    events = [FailureEvent("database", at(d, 14, 0, 8), "connection_loss") for d in range(5)]
    events += [FailureEvent("database", at(2, 3, 17), "error_threshold")]  # a one-off
    [p] = PatternRecognizer().fit(events)
    assert p.service == "database" and p.frequency == "daily"
    assert p.occurrences == 5 and p.periods_observed == 5 and p.priority == "high"
    assert p.typical_cause == "connection_loss" and p.recommended_action == "restart"
    assert datetime.fromtimestamp(p.seconds_of_period, UTC).strftime("%H:%M") == "14:00"
    assert p.last_occurrence == at(4, 14, 0, 8) and "14:00 UTC" in p.describe()


def test_a_weekly_pattern_and_noise_that_is_no_pattern():
    weekly = [FailureEvent("billing", at(7 * w + 2, 9, 30), "circuit_open") for w in range(4)]
    noise = [FailureEvent("api", at(d, (d * 7) % 24), "error_threshold") for d in range(10)]
    found = PatternRecognizer().fit(weekly + noise)
    assert [(p.service, p.frequency) for p in found] == [("billing", "weekly")]
    assert found[0].recommended_action == "fallback" and "Wed 09:30" in found[0].describe()


def test_one_service_two_recurrences_each_with_its_own_cause_and_outages_count_once():
    """A 02:00 backup that times queries out and a 14:00 peak that exhausts the pool: two
    patterns. Each 14:00 incident lasts an hour with an event a minute: still one a day."""
    backup = [FailureEvent("db", at(d, 2, 0, 30), "TimeoutError") for d in range(6)]
    peak = [FailureEvent("db", at(d, 14, m), "PoolExhausted") for d in range(6)
            for m in range(60)]
    found = PatternRecognizer().fit(backup + peak)
    assert [(p.frequency, p.typical_cause, p.occurrences) for p in found] == [
        ("daily", "TimeoutError", 6), ("daily", "PoolExhausted", 6)]
    assert [datetime.fromtimestamp(p.seconds_of_period, UTC).strftime("%H:%M")
            for p in found] == ["02:00", "14:00"]
    assert found[1].last_occurrence == at(5, 14, 0)  # the incident's start


def test_services_that_fail_together_are_a_combination_with_a_leader():
    """The database fails, the two services on it follow within a minute, four times (at
    different hours: no time pattern); one unrelated failure of billing is not part of it."""
    events = []
    for k, hour in enumerate((3, 9, 15, 21)):
        t = at(k, hour, 7)
        events += [FailureEvent("database", t, "ConnectionError"),
                   FailureEvent("api", t + 20, "circuit_open"),
                   FailureEvent("reasoning", t + 45, "TimeoutError")]
    events.append(FailureEvent("billing", at(1, 12), "circuit_open"))
    recognizer = PatternRecognizer()
    [combo] = recognizer.combinations(events)
    assert combo.services == ("api", "database", "reasoning")
    assert combo.occurrences == 4 and combo.leader == "database" and combo.led == 4
    assert combo.typical_cause == "ConnectionError" and combo.typical_spread_s == 45
    assert combo.priority == "high" and combo.recommended_action.startswith("heal database")
    assert "api + database + reasoning fail together" in combo.describe()
    assert recognizer.fit(events) == []  # four different hours: no recurrence by time
    assert PatternRecognizer(min_occurrences=5).combinations(events) == []


def test_too_little_history_is_no_pattern():
    events = [FailureEvent("db", at(d, 14), "connection_loss") for d in range(2)]
    assert PatternRecognizer(min_occurrences=3).fit(events) == []


def test_prevention_is_due_once_per_occurrence_within_the_lead_time():
    events = [FailureEvent("database", at(d, 14), "connection_loss") for d in range(4)]
    engine = ProactivePreventionEngine(PatternRecognizer().fit(events), lead_s=300)
    assert engine.due(at(5, 13, 50)) == []  # ten minutes ahead: not yet
    [action] = engine.due(at(5, 13, 55, 30))
    assert action.due_at == at(5, 14) and action.act_at == at(5, 13, 55)
    assert engine.due(at(5, 13, 57)) == []  # already acted for this one
    assert len(engine.due(at(6, 13, 56))) == 1  # the next day's


@pytest.mark.parametrize("field,value", [("slot_s", 0), ("min_occurrences", 0),
                                         ("min_share", -1), ("together_s", 0),
                                         ("max_per_service", 0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        PatternRecognizer(**{field: value})


def test_incidents_are_signals_with_their_failures_cause_and_background_errors_are_none():
    from learning.patterns import FailureEvent, PatternRecognizer, incidents

    day = 86400.0
    failures = [FailureEvent("db", d * day + 14 * 3600 + s, "Deadlock")
                for d in range(5) for s in (0, 30, 60)]
    # calls an open circuit refused are no cause, however many
    failures += [FailureEvent("db", d * day + 14 * 3600 + 50 + s, "rejected")
                 for d in range(5) for s in range(10)]
    # a background error every day at about 03:00: on its own, it would look recurrent
    failures += [FailureEvent("db", d * day + 3 * 3600 + 60 * d, "Timeout") for d in range(5)]
    assert [round(p.seconds_of_period / 3600) for p in PatternRecognizer().fit(
        [f for f in failures if f.kind != "rejected"])] == [3, 14]
    signals = [("db", d * day + 14 * 3600 + 45, "circuit_open") for d in range(5)]
    signals.append(("db", 6 * day, "database-connection-lost"))  # no failures around it
    found = incidents(failures, signals, around_s=120)
    # each dated from the first failure before its signal
    assert [(e.at, e.kind) for e in found] == [
        *[(d * day + 14 * 3600, "Deadlock") for d in range(5)],
        (6 * day, "database-connection-lost")]
    [p] = PatternRecognizer().fit(found)
    assert p.seconds_of_period == 14 * 3600 and p.typical_cause == "Deadlock"
    assert incidents(failures, []) == []
