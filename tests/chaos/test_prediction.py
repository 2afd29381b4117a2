"""The simulator's prediction of an experiment, beside which the live MTTD and MTTR are
reported: a stopped Redis blinds the error-threshold watch, and the prediction models it; a
live figure beyond 1.5x of it carries the known reason, or is reported as unexplained."""

from __future__ import annotations

from healing.catalogue import load_catalogue
from serve.chaos.experiment import Experiment
from serve.chaos.faults import ActorCrash, MetricBuffersFull, ProviderFault, StoreDown
from serve.chaos.prediction import DIFFERENCES, ORCHESTRATOR_KILLED, predict
from serve.chaos.report import agreement, markdown, summary
from serve.chaos.timing import trail, watch_lines

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


def test_live_and_predicted_agree_within_one_and_a_half_times_or_one_beat_of_the_watch():
    assert agreement(12.5, 10.0, beat_s=5.0) == "within"
    assert agreement(1.2, 5.0, beat_s=5.0) == "within"  # the watch's beat, not the model
    assert agreement(84.0, 63.0, beat_s=5.0) == "within"  # 1.33x
    assert agreement(29.0, 13.0, beat_s=5.0) == "beyond"  # 2.2x and 16 s apart
    assert agreement(6.7, None, beat_s=5.0) == "beyond"  # seen live, never in the replay
    assert agreement(None, None, beat_s=5.0) == "within"


def _judged_report(exp: Experiment, tmp_path, mttd_s: float, duration_s: float = 120) -> dict:
    p = predict(exp, load_catalogue(), duration_s, tmp_path)
    fault = exp.faults[0]
    timing = {"service": fault.service, "fault": fault.name, "mttd_s": mttd_s,
              "mttr_s": p["incidents"][0]["mttr_s"]}
    return {"name": exp.name, "prediction": p, "timings": [timing], "faults": [fault.name],
            "passed": True, "lost": 0, "safety_violations": 0,
            "load": {"sent": 1, "answered": 1, "by_tier": {"primary": 1},
                     "by_outcome": {"primary": 1}},
            "audit": {"found": 0}, "steps": {"expected": 0, "lost": 0}}


def test_a_figure_beyond_the_prediction_carries_its_known_reason_or_is_unexplained(tmp_path):
    hang = Experiment("hang", [ProviderFault(20, 10, key=CR, mode="hang")], 120, 200.0)
    outage = _outage()
    seen_hang = predict(hang, load_catalogue(), 120, tmp_path)["incidents"][0]["mttd_s"]
    experiments = [_judged_report(hang, tmp_path, mttd_s=seen_hang + 20),
                   _judged_report(outage, tmp_path, mttd_s=40.0)]
    s = summary(experiments)
    assert s["predictions"] == {"within": 0, "beyond_explained": 1, "beyond_unexplained": 1}
    text = markdown({"started": "now", "mode": "test", "machine": "here",
                     "rate": {"note": ""}, "experiments": experiments, "summary": s})
    assert f"beyond 1.5x: {DIFFERENCES['hang']}" in text
    assert "beyond 1.5x, unexplained" in text
    for e in experiments:  # live as predicted
        e["timings"][0]["mttd_s"] = e["prediction"]["incidents"][0]["mttd_s"]
    assert summary(experiments)["predictions"]["within"] == 2


def test_two_faults_of_one_service_are_each_judged_against_their_own_replay(tmp_path):
    blip = Experiment("blip", [ProviderFault(5, 6, key=CR, timed=False),
                               ProviderFault(45, 60, key=CR)], 240, 200.0)
    p = predict(blip, load_catalogue(), 240, tmp_path)
    first, second = p["incidents"]
    assert (first["start_s"], second["start_s"]) == (5, 45)
    report = _judged_report(blip, tmp_path, mttd_s=second["mttd_s"], duration_s=240)
    report["timings"][0].update(start_s=45.3, mttr_s=second["mttr_s"])
    assert summary([report])["predictions"]["within"] == 1
    # against the blip's replay instead (as when incidents were keyed by service alone), an
    # outage's recovery is not a blip's
    assert first["mttr_s"] != second["mttr_s"]


def test_an_outage_while_the_orchestrator_is_killed_carries_that_reason(tmp_path):
    p = predict(_outage(ActorCrash(25, actor="orchestrator")), load_catalogue(), 120, tmp_path)
    assert p["differences"] == {f"provider {CR} down": ORCHESTRATOR_KILLED}
    assert predict(_outage(), load_catalogue(), 120, tmp_path)["differences"] == {}


def test_a_timing_carries_the_faults_trail_in_time_order_until_its_recovery():
    """The report says what the circuits and the orchestrator did between a fault and its
    recovery (how a 105 s MTTR against a predicted 63 is read), from the audit trail."""
    def moved(at, to, reason):
        return {"at": at, "data": {"circuit": "gemini:pro", "from_state": "X", "to_state": to,
                                   "reason": reason}}

    def step(at, n, status):
        return {"at": at, "data": {"step": n, "action": "switch_provider", "status": status}}

    lines = trail([moved(1012.0, "OPEN", "failure rate 100 %"), moved(1090.0, "CLOSED", "ok"),
                    moved(1200.0, "OPEN", "later fault")],
                   [step(1005.5, 1, "succeeded")], start=1000.0, until=1095.0,
                   detections=[{"at": 1004.0, "trigger": "error_threshold",
                                "admitted": "no_workflow"}])
    assert lines == ["+4.0 s detected by error_threshold: no_workflow",
                     "+5.5 s step 1 switch_provider: succeeded",
                     "+12.0 s circuit gemini:pro X -> OPEN (failure rate 100 %)",
                     "+90.0 s circuit gemini:pro X -> CLOSED (ok)"]


def test_the_watchs_readings_run_in_the_trail_until_the_detection_not_the_recovery():
    """A service with a cache recovers at once; the error watch's rounds up to its late
    detection are what say why it was late (GET /api/v1/watch)."""
    def round_(at, errors, calls, admitted=None, took=0.01):
        return {"at": at, "took_s": took, "services": {
            "care_locator": {"errors": errors, "calls": calls, "recent_errors": errors / 2,
                             "recent_calls": calls / 4, "admitted": admitted},
            "other": {"errors": 0, "calls": 5, "recent_errors": 0, "recent_calls": 1,
                      "admitted": None}}}

    rounds = [round_(995.4, 0, 1700), round_(1000.4, 10, 1760), round_(1005.4, 300, 1770,
                                                                      took=2.5),
              round_(1010.4, 600, 1780, "queued"), round_(1015.4, 900, 1790)]
    watched = watch_lines(rounds, "care_locator", until=1010.4)
    assert [at for at, _ in watched] == [995.4, 1000.4, 1005.4, 1010.4]
    assert watched[2][1] == ("watch: 300 errors in 1770 calls (16.9 %), recent 150/442; "
                             "quiet (round 2.50 s)")
    assert watch_lines([round_(1000.0, 0, 0)], "care_locator", 2000.0)[0][1].startswith(
        "watch: 0 errors in 0 calls, recent")
    assert watch_lines(rounds, "absent", 2000.0) == []
    lines = trail([], [], start=1000.0, until=1006.0,
                  detections=[{"at": 1010.4, "trigger": "error_threshold",
                               "admitted": "queued"}], watched=watched)
    assert lines[0].startswith("-4.6 s watch: 0 errors") and len(lines) == 5
    assert lines[-2:] == ["+10.4 s detected by error_threshold: queued",
                          "+10.4 s watch: 600 errors in 1780 calls (33.7 %), recent 300/445; "
                          "queued (round 0.01 s)"]
