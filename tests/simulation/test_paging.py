"""Two-key paging in simulated outages: fewer pages than paging on every detection, and no
incident that needed a human left without one."""

from __future__ import annotations

import pytest

from simulation.engine import Simulation
from simulation.paging import paging
from simulation.scenario import SCENARIOS, load_scenario


@pytest.fixture(scope="module")
def runs():
    return {name: Simulation(load_scenario(SCENARIOS / f"{name}.yaml")).run()
            for name in ("ai_provider_outage", "drug_interaction_outage")}


def test_an_outage_the_fallbacks_absorb_wakes_nobody_under_two_keys(runs):
    """The AI provider goes down; the fallback tiers answer every diagnostic request: the
    detector fires (a page if it alone decided), the budget does not burn (a ticket)."""
    r = runs["ai_provider_outage"]
    detection, two_key = paging(r, "detection"), paging(r, "two_key")
    assert detection.pages >= 1 and detection.needs_human == 0
    assert two_key.pages == 0 and two_key.tickets >= 1 and two_key.missed == []


def test_an_outage_patients_feel_is_paged_by_two_keys(runs):
    """Drug-interaction checks are life-critical: no substitute answer, so the outage
    costs answers; the budget burns and the detector agrees: paged, nothing missed."""
    r = runs["drug_interaction_outage"]
    two_key, burn = paging(r, "two_key"), paging(r, "burn")
    assert two_key.needs_human >= 1
    assert two_key.pages >= 1 and two_key.missed == []
    assert burn.missed == [] and two_key.pages <= paging(r, "detection").pages
    [first] = [n for n in two_key.notices if n.level == "page"][:1]
    assert "budget burning" in first.why and "a detector fired" in first.why
