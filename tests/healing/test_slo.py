"""Error budgets, multiwindow multi-burn-rate alerts and two-key paging (healing.slo)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healing import ConfigError
from healing.slo import SLO, WORKBOOK, BurnRule, ErrorBudget, Pager, PagingMode

MIN = 60.0
HOUR = 3600.0


def feed(budget, service, start, minutes, total, bad):
    for m in range(minutes):
        budget.observe(service, start + m * MIN, total, bad)
    return start + minutes * MIN


def test_burn_rate_is_the_unanswered_share_over_the_budget():
    budget = ErrorBudget(SLO(0.999))
    end = feed(budget, "svc", 0.0, 120, 1000, 1)  # 0.1 % unanswered: exactly on budget
    assert budget.burn("svc", HOUR, end) == pytest.approx(1.0)
    assert budget.alerts("svc", end) == []
    assert budget.burn("nobody", HOUR, end) == 0.0
    assert budget.remaining("svc", end) == pytest.approx(0.0)


def test_a_fast_burn_pages_and_the_short_window_resets_it_soon_after_it_stops():
    budget = ErrorBudget()
    t = feed(budget, "svc", 0.0, 300, 1000, 0)  # five healthy hours
    t = feed(budget, "svc", t, 45, 1000, 25)  # 2.5 % unanswered for 45 min: 25x
    [alert] = [a for a in budget.alerts("svc", t) if a.rule.factor == 14.4]
    assert alert.severity == "page" and alert.burn_short == pytest.approx(25.0)
    assert alert.burn_long == pytest.approx(25.0 * 45 / 60)  # the hour's share of it
    assert "14.4x" in alert.describe()
    t = feed(budget, "svc", t, 6, 1000, 0)  # it stops: within the 5 min window, no page
    assert budget.burn("svc", HOUR, t) > 6.0  # the hour still remembers it...
    assert [a for a in budget.alerts("svc", t) if a.severity == "page"] == []  # ...not paged


def test_a_slow_burn_over_days_opens_a_ticket_not_a_page():
    budget = ErrorBudget()
    t = feed(budget, "svc", 0.0, 3 * 24 * 60, 100, 0.15)  # 1.5x for three days
    assert [a.severity for a in budget.alerts("svc", t)] == ["ticket"]
    assert budget.remaining("svc", t) == pytest.approx(1 - 1.5, abs=1e-6)  # overspent


def test_long_windows_keep_a_bounded_number_of_buckets():
    budget = ErrorBudget()
    t = feed(budget, "svc", 0.0, 10 * 24 * 60, 10, 0)
    budget.burn("svc", 3 * 86400.0, t)
    windows = budget._windows["svc"]
    assert max(len(w.buckets) for w in windows.values()) <= 721


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20000), st.integers(0, 50), st.integers(0, 50)),
                max_size=80),
       st.floats(0, 30000))
def test_burn_matches_a_brute_force_count_whatever_the_order(events, later):
    """Late events land in their own bucket; the window is the buckets that start at or
    after ``now - length``, at the window's bucket size."""
    now = max([at for at, _, _ in events], default=0.0) + later
    slo = SLO(0.99, rules=(BurnRule("page", 2.0, 3600.0, 300.0),))
    budget = ErrorBudget(slo)
    for at, total, bad in events:
        budget.observe("s", at, total, min(bad, total))
    for length in budget.lengths:
        step = max(60.0, length / 720)
        inside = [(t, min(b, t)) for at, t, b in events
                  if int(at // step) * step >= now - length]
        total = sum(t for t, _ in inside)
        expected = (sum(b for _, b in inside) / total / 0.01) if total else 0.0
        assert budget.burn("s", length, now) == pytest.approx(expected, abs=1e-9)


def page_alert(service, at):
    return [a for a in [_alert(service, at)] if a is not None]


def _alert(service, at):
    budget = ErrorBudget()
    feed(budget, service, at - 10 * MIN, 10, 100, 5)  # 50x
    alerts = budget.alerts(service, at)
    assert any(a.severity == "page" for a in alerts)
    return next(a for a in alerts if a.severity == "page")


def test_two_keys_page_once_per_incident_either_alone_is_a_ticket():
    pager = Pager()
    burning = page_alert("svc", 1000.0)
    assert pager.decide("svc", [], 100.0) is None
    pager.detected("svc", 100.0)
    ticket = pager.decide("svc", [], 160.0)  # a detector alone
    assert ticket.level == "ticket" and "a detector fired" in ticket.why
    page = pager.decide("svc", burning, 220.0)  # the budget burns too: raised to a page
    assert page.level == "page" and "14.4x" in page.why and pager.paged("svc")
    assert pager.decide("svc", burning, 280.0) is None  # the same incident: paged once
    assert pager.decide("svc", [], 280.0 + 3000) is None  # quiet, but not for an hour yet
    assert pager.decide("svc", [], 280.0 + 3700) is None and not pager.paged("svc")
    # a new incident whose detection is too old to agree: burn alone is a ticket
    assert pager.decide("svc", burning, 280.0 + 3760).level == "ticket"
    other = Pager()
    assert other.decide("api", page_alert("api", 50.0), 50.0).level == "ticket"


def test_the_single_key_modes_page_on_their_own_key():
    detection = Pager(PagingMode.DETECTION)
    detection.detected("svc", 10.0)
    assert detection.decide("svc", [], 20.0).level == "page"
    burn = Pager("burn")
    assert burn.decide("svc", page_alert("svc", 30.0), 30.0).level == "page"
    burn_ticket = Pager("burn")
    ticket_rule = BurnRule("ticket", 1.0, 3600.0, 300.0)
    budget = ErrorBudget(SLO(rules=(ticket_rule,)))
    feed(budget, "svc", 0.0, 60, 100, 0.2)
    assert burn_ticket.decide("svc", budget.alerts("svc", 3600.0), 3600.0).level == "ticket"


@pytest.mark.parametrize("make,field", [
    (lambda: SLO(objective=1.0), "objective"),
    (lambda: SLO(rules=()), "rules"),
    (lambda: BurnRule("page", 14.4, 300.0, 3600.0), "long_s"),
    (lambda: BurnRule("wake", 14.4, 3600.0, 300.0), "severity"),
    (lambda: Pager(mode="loud"), "mode"),
    (lambda: ErrorBudget(finest_s=0), "finest_s"),
])
def test_bad_settings_are_refused_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_the_workbook_rules_are_the_defaults():
    assert [(r.severity, r.factor, r.long_s, r.short_s) for r in SLO().rules] == [
        ("page", 14.4, 3600.0, 300.0), ("page", 6.0, 21600.0, 1800.0),
        ("ticket", 1.0, 259200.0, 21600.0)]
    assert SLO().rules is WORKBOOK and SLO().budget == pytest.approx(0.001)
