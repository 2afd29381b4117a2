"""The simulator's prediction of an experiment, beside which the live MTTD and MTTR are
reported: a stopped Redis blinds the error-threshold watch, and the prediction models it."""

from __future__ import annotations

from healing.catalogue import load_catalogue
from serve.chaos.experiment import Experiment
from serve.chaos.faults import MetricBuffersFull, ProviderFault, StoreDown
from serve.chaos.prediction import predict

CR = "clinical_reasoning:gemini:pro"


def _outage(*store_faults) -> Experiment:
    return Experiment("outage", [ProviderFault(20, 60, key=CR), *store_faults], 120, 200.0)


def test_an_outage_is_first_seen_by_the_error_threshold_watch(tmp_path):
    p = predict(_outage(StoreDown(90, 10, store="redis")), load_catalogue(), 120, tmp_path)
    assert "modelled" not in p  # Redis stopped long after the fault was seen
    [incident] = p["incidents"]
    assert incident["mttd_s"] <= 5.0  # the watch's first check after the fault


def test_with_redis_stopped_when_it_is_seen_only_the_circuit_can_see_it(tmp_path):
    # as in make chaos's metric-buffers experiment: Redis stops five seconds into the outage,
    # when the watch would have seen it; live, the outage was seen after 12.3 s
    seen = predict(_outage(), load_catalogue(), 120, tmp_path)["incidents"][0]["mttd_s"]
    p = predict(_outage(MetricBuffersFull(20 + seen, 30)), load_catalogue(), 120,
                tmp_path)
    assert "error-threshold watch" in p["modelled"]
    [incident] = p["incidents"]
    # the circuit opens once failures are half of its 30 s window
    assert 8.0 <= incident["mttd_s"] <= 15.0
