"""The hypothesis before an experiment: recovery at rest for the load's services."""

from __future__ import annotations

from serve.chaos.experiment import recovery_quiet

NOW = 1_800_000_000.0
LOAD = {"clinical_reasoning", "pharmaguard"}


def run(service="clinical_reasoning", ended_ago=None):
    r = {"service": service, "started_at": NOW - 400, "trigger": "error_threshold"}
    if ended_ago is not None:
        r["ended_at"] = NOW - ended_ago
    return r


def detection(service="clinical_reasoning", ago=1.0):
    return {"service": service, "trigger": "error_threshold", "at": NOW - ago,
            "admitted": "cooling_down"}


def quiet(runs=(), detections=()):
    return recovery_quiet(list(runs), list(detections), LOAD, NOW, cooldown_s=120.0)


def test_nothing_recent_is_quiet():
    assert quiet()
    assert quiet([run(ended_ago=121.0)], [detection(ago=30.0)])


def test_a_run_under_way_or_in_its_cool_down_is_not():
    # the load ramp's overload started a run: the outage after it would wait behind it
    assert not quiet([run()])
    assert not quiet([run(ended_ago=119.0)])


def test_a_detection_in_the_last_two_beats_is_not():
    # the ramp's errors still trip the watch: a run is about to begin
    assert not quiet(detections=[detection(ago=4.0)])


def test_services_outside_the_load_do_not_count():
    assert quiet([run("care_locator")], [detection("care_locator")])
