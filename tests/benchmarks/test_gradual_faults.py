"""The predictive suite's gradual-fault figures: the ramp is timed on its own, and its
variants are the library's ramp changed only where they say."""

import math

from benchmarks.simulation import mttd_of, ramp_variants
from simulation.scenario import SCENARIOS, FaultKind, load_scenario


def test_ramp_variants_hold_the_ramp_alone_over_seeds_slopes_rates_and_traffic():
    base = load_scenario(SCENARIOS / "slow_degradation.yaml")
    ramp = next(f for f in base.faults if f.kind is FaultKind.DEGRADATION)
    variants = ramp_variants(base)
    assert len(variants) == 24
    seen = set()
    for sc in variants:
        fault, = sc.faults  # the latency spike after the ramp is gone
        assert fault.kind is FaultKind.DEGRADATION and fault.at_s == ramp.at_s
        assert fault.params["bad_answer_share"] == ramp.params["bad_answer_share"]
        assert sc.duration_s == ramp.at_s + 1800.0
        service, = sc.services.values()
        seen.add((sc.seed, fault.params["ramp"], fault.params["error_rate"], service.rps))
    assert len(seen) == 24
    assert (base.seed, ramp.params["ramp"], ramp.params["error_rate"],
            next(iter(base.services.values())).rps) in seen  # the library's own ramp too


def test_mttd_of_of_one_kind_leaves_the_others_out():
    metrics = {"incidents": [
        {"kind": "degradation", "impact_s": 1200.0, "detected_s": 1250.0},
        {"kind": "latency_spike", "impact_s": 5400.0, "detected_s": 5410.0},
        {"kind": "degradation", "impact_s": 7000.0, "detected_s": None},
        {"kind": "memory_leak", "impact_s": 3000.0, "detected_s": 2000.0},
    ]}
    assert mttd_of(metrics, "degradation") == 50.0
    assert mttd_of(metrics, "latency_spike") == 10.0
    assert mttd_of(metrics, "memory_leak") == 0.0  # seen ahead of its first failure
    assert math.isnan(mttd_of(metrics, "outage"))


def test_a_ramp_never_seen_counts_as_the_whole_run_after_it():
    from benchmarks.simulation import _ramp_ttd

    sc = ramp_variants(load_scenario(SCENARIOS / "slow_degradation.yaml"))[0]
    missed = {"incidents": [{"kind": "degradation", "impact_s": sc.faults[0].at_s,
                             "detected_s": None}]}
    seen = {"incidents": [{"kind": "degradation", "impact_s": sc.faults[0].at_s,
                           "detected_s": sc.faults[0].at_s + 40.0}]}
    assert _ramp_ttd(missed, sc) == 1800.0
    assert _ramp_ttd(seen, sc) == 40.0
