"""Many runs on the real Ray cluster, logged to a real MLflow store, event logs as Parquet;
and the ``selfheal simulate`` command."""

from __future__ import annotations

import json
import pathlib

import pyarrow.parquet as pq
import pytest

from actors.ray_gateway import as_completed
from serve.cli import main
from simulation.runner import simulate
from simulation.scenario import SCENARIOS, FaultKind, FaultSpec, Scenario, ServiceSpec
from simulation.tracking import EXPERIMENT

DX = "diagnostic"


def small(name="outage", seed=3):
    svc = ServiceSpec("clinical_reasoning", 10, 0.8, 3.0, 0.001, ("gemini:pro", "deepseek"),
                      DX, "high")
    fault = FaultSpec("clinical_reasoning", FaultKind.OUTAGE, 200, 120, "gemini:pro")
    return Scenario(name, 900, {"clinical_reasoning": svc}, (fault,), seed)


def test_runs_fan_out_on_ray_with_means_spread_event_logs_and_mlflow(ray_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [report] = simulate([small()], runs=3, fan_out=as_completed, events_dir=str(tmp_path / "ev"),
                        mlflow_uri=uri)
    assert report["runs"] == 3 and report["seed"] == 3
    assert report["spread"]["requests"]["n"] == 3
    assert report["spread"]["requests"]["min"] <= report["requests"] <= \
        report["spread"]["requests"]["max"]
    assert {i["run"] for i in report["incidents"]} == {0, 1, 2}
    assert report["baseline"]["availability"] < report["availability"] == 1.0
    # the same runs in this process give the same report: Ray changes nothing
    [local] = simulate([small()], runs=3, events_dir=str(tmp_path / "ev2"))
    strip = ("event_logs",)
    assert {k: v for k, v in local.items() if k not in strip} == \
        {k: v for k, v in report.items() if k not in strip}
    # event logs: the live shapes
    logs = [pathlib.Path(p) for p in report["event_logs"]]
    assert [p.name for p in logs] == ["outage-seed3", "outage-seed4", "outage-seed5"]
    outcomes = pq.read_table(logs[0] / "outcomes.parquet")
    assert outcomes.column_names == ["at", "service", "latency_s", "ok", "error_kind", "tier",
                                     "provider"]
    kinds = set(outcomes.column("error_kind").to_pylist())
    assert "ProviderError" in kinds and None in kinds and len(outcomes) > 100
    audit = pq.read_table(logs[0] / "audit.parquet")
    assert audit.column_names == ["id", "kind", "at", "service", "data"]
    assert {"failure_event", "recovery_step"} <= set(audit.column("kind").to_pylist())
    assert len(pq.read_table(logs[0] / "detections.parquet")) >= 1
    assert len(pq.read_table(logs[0] / "steps.parquet")) >= 2
    # MLflow: one run per seed with parameters, both sets of metrics and the artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["3", "4", "5"]
    one = runs[0]
    assert one.data.params["scenario"] == "outage"
    assert one.data.metrics["availability"] == 1.0
    assert one.data.metrics["baseline_availability"] < 1.0
    assert "mttr_s" in one.data.metrics and "baseline_mttr_s" in one.data.metrics
    arts = {a.path for a in client.list_artifacts(one.info.run_id)}
    assert {"report.json", "event_log"} <= arts


def test_the_command_prints_the_table_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["simulate", str(SCENARIOS / "ai_provider_outage.yaml"), "--local",
                 "--no-mlflow", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "ai-provider-outage" in text and "self-healing" in text and "baseline" in text
    [report] = json.loads(out.read_text())
    for key in ("scenario", "seed", "runs", "simulated_seconds", "requests", "availability",
                "mttd_s", "mttr_s", "recovery_success_rate", "false_positive_rate",
                "false_negative_rate", "integrity_violations", "audit_completeness",
                "incidents", "baseline"):
        assert key in report, key
    for key in ("service", "kind", "start_s", "end_s", "detected_s", "recovered_s",
                "automated"):
        assert key in report["incidents"][0], key


def test_a_bad_scenario_is_named_and_nothing_runs(tmp_path, capsys):
    good = str(SCENARIOS / "ai_provider_outage.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nservices:\n  a: {rps: -1, providers: [p]}\n")
    out = tmp_path / "report.json"
    assert main(["simulate", good, str(bad), "--local", "--no-mlflow", "--json",
                 str(out)]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:3: services.a.rps" in captured.err and captured.out == ""
    assert not out.exists()  # the good file did not run either


@pytest.mark.parametrize("runs", [0, -2])
def test_runs_must_be_positive(runs, capsys):
    assert main(["simulate", str(SCENARIOS / "ai_provider_outage.yaml"), "--runs",
                 str(runs), "--local", "--no-mlflow"]) == 2
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_progress_counts_simulated_time_and_changes_no_result():
    seen = []
    [with_progress] = simulate([small()], runs=2,
                               progress=lambda done, total, n: seen.append((done, total, n)))
    [plain] = simulate([small()], runs=2)
    assert with_progress == plain  # the progress timer is not part of the simulation
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and seen[-1][0] == seen[-1][1] == 2 * 2 * 900
    assert seen[-1][2] == with_progress["requests"] * 2 + with_progress["baseline"]["requests"] * 2
    assert len(seen) > 4 * 900 / 60 - 4  # every simulated minute, healing and baseline


def test_ctrl_c_keeps_the_runs_that_finished():
    from simulation.runner import SimulationInterrupted

    def interrupt_in_the_second_run(done, total, n):
        if done > 2 * 900 + 300:
            raise KeyboardInterrupt

    with pytest.raises(SimulationInterrupted) as exc:
        simulate([small()], runs=2, progress=interrupt_in_the_second_run)
    assert (exc.value.finished, exc.value.total) == (1, 2)
    [report] = exc.value.reports
    [alone] = simulate([small()], runs=1)
    assert report == alone  # the finished run, reported as if it had been the only one
