"""The command line and the demo a newcomer runs first."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys

import pytest

from healing import CircuitState
from serve.cli import main
from serve.demo import run_demo

S = CircuitState


def test_demo_tells_the_whole_outage_story():
    out = io.StringIO()
    result = run_demo(out=out, color=False)
    text = out.getvalue()
    assert result["transitions"] == [(S.CLOSED, S.OPEN), (S.OPEN, S.HALF_OPEN),
                                     (S.HALF_OPEN, S.CLOSED)]
    served = result["served"]
    assert served[:3] == ["primary"] * 3
    assert "alternative_provider:deepseek" in served and "cached_data" in served
    assert "explicit_failure" in served and served[-3:] == ["primary"] * 3
    assert "patient-0042" not in repr(result["outcomes"])
    assert "0 contain a patient identifier" in text and "\033[" not in text


def test_cli_runs_the_demo_as_a_console_script():
    script = pathlib.Path(sys.executable).with_name("selfheal")  # installed by pyproject
    proc = subprocess.run([str(script), "demo", "--no-color", "--core-only"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Recovery" in proc.stdout and "HALF_OPEN → CLOSED" in proc.stdout
    # and the simulated outage, with its baseline
    assert "6. Two hours replayed in the simulator" in proc.stdout
    assert "self-healing" in proc.stdout and "baseline" in proc.stdout


def test_the_demos_simulation_shows_healing_beat_the_baseline():
    from serve.demo_simulation import run_simulation_demo

    out = io.StringIO()
    report = run_simulation_demo(out=out)
    assert report["availability"] == 1.0 > report["baseline"]["availability"]
    assert "MTTR" in out.getvalue() and "ai-provider-outage" in out.getvalue()


def test_the_deadlock_chapter_tells_times_and_days_from_the_scenarios_own_start():
    import dataclasses

    from serve.demo_simulation import _at, _clock
    from simulation.scenario import SCENARIOS, load_scenario

    week = load_scenario(SCENARIOS / "daily_deadlock_week.yaml")
    late = dataclasses.replace(week, start=week.start.replace(hour=21, minute=30))
    assert _clock(week, 14 * 3600) == "14:00" and _clock(late, 14 * 3600) == "11:30"
    # 14 h after a 21:30 start is the next day
    assert (_at(late, 14 * 3600).date() - late.start.date()).days == 1


def test_cli_without_a_command_explains_itself(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_catalogue_check_summarises_a_valid_catalogue_and_names_a_mistake(tmp_path, capsys,
                                                                         monkeypatch):
    import shutil

    from healing.catalogue import SHIPPED

    monkeypatch.chdir(tmp_path)  # no selfheal.toml here
    assert main(["catalogue", "check"]) == 0
    out = capsys.readouterr().out
    assert "6 services, 4 strategy files, 5 workflow files: valid" in out
    assert "pharmaguard: pharmaguard_api > local_database" in out
    shutil.copytree(SHIPPED, tmp_path / "mine")
    bad = tmp_path / "mine" / "policy.yaml"
    bad.write_text(bad.read_text().replace("interval: 5s", "interval: -5s"))
    assert main(["catalogue", "check", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "policy.yaml:13: health.interval:" in err


def test_simulate_replays_the_operators_catalogue(tmp_path, capsys, monkeypatch):
    """The same scenario under an edited catalogue runs a different policy."""
    import json
    import shutil

    import pyarrow.parquet as pq

    from healing.catalogue import SHIPPED
    from simulation.scenario import SCENARIOS

    monkeypatch.chdir(tmp_path)
    shutil.copytree(SHIPPED, tmp_path / "mine")
    # clinical_reasoning's runbook file is removed: it gets the generic workflows instead
    (tmp_path / "mine" / "workflows" / "ai_service_failure.yaml").unlink()
    scenario = str(SCENARIOS / "ai_provider_outage.yaml")
    reports, ran = {}, {}
    for name, args in (("shipped", []), ("mine", ["--catalogue", str(tmp_path / "mine")])):
        assert main(["simulate", scenario, "--no-mlflow", "--local", "--json", f"{name}.json",
                     "--events", f"{name}-events", *args]) == 0, capsys.readouterr().err
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())[0]
        [log] = (tmp_path / f"{name}-events").iterdir()
        ran[name] = set(pq.read_table(log / "runs.parquet").column("workflow").to_pylist())
    assert reports["shipped"]["workflow_runs"] >= 1 and reports["mine"]["workflow_runs"] >= 1
    # the runbook, and without it the generic workflows (both move traffic to deepseek, so
    # the figures may well agree: what differs is what ran)
    assert ran["shipped"] == {"ai-service-failure"}
    assert ran["mine"] and all(w.endswith(":clinical_reasoning") for w in ran["mine"])
    capsys.readouterr()
    assert main(["simulate", scenario, "--no-mlflow", "--local",
                 "--catalogue", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: catalogue: is not a directory" in capsys.readouterr().err


def test_the_live_demo_tells_an_outage_as_the_api_sees_it(tmp_path, ray_cluster):
    """A short script on the live demo (its own embedded state; the session's Ray): the
    narrator sees the circuit open, a recovery run, and the alert it raised; the database's
    health check fail and recover; the leaking replica's workflow start; and the daily
    deadlock of the days before learnt, predicted and prevented at today's peak."""
    from serve.demo_live import run_live_demo

    out = io.StringIO()
    kept = tmp_path / "kept"
    seen = run_live_demo(out=out, duration_s=50, port=0, rate_per_s=30, script=[
        (1, "api_server:leak", True, "the API server's replica leaks"),
        (2, "clinical_reasoning:gemini:pro", True, "gemini:pro goes down"),
        (3, "database", True, "the record database drops off the network"),
        (22, "database", False, "the record database answers again"),
        (30, "clinical_reasoning:gemini:pro", False, "gemini:pro is back"),
        (32, None, False, "clinical_reasoning:gemini:pro — reset by the on-call engineer"),
        (40, "database:deadlock", True, "the daily peak"),
        (47, "database:deadlock", False, "the peak is over")],
        keep=kept)
    text = out.getvalue()
    assert "/dashboard/" in text and "operator token: shk_" in text
    events = "\n".join(seen["events"])
    assert "circuit clinical_reasoning:gemini:pro: closed →" in events
    assert "recovery: ai-service-failure started for clinical_reasoning" in events
    assert "alert [high] clinical_reasoning" in events
    assert "→ closed" in events.split("gemini:pro: closed →", 1)[1]  # reset, or recovered
    # the database blip: its health check failed (through degraded, fall 3), its workflow
    # ran, and once it answered again (rise 2) the check said so
    assert "health check database: healthy → degraded (ConnectionRefusedError" in events
    assert "health check database: degraded → unhealthy" in events
    assert "recovery: database-connection-lost started for database" in events
    assert "health check database: unhealthy → healthy" in events
    # the leaking Serve replica: its errors (its circuit opening, or the error threshold,
    # whichever first) started its runbook, the memory-leak workflow aimed at the deployment
    assert "recovery: memory-leak-detected started for api_server" in events
    # the daily deadlock: the days before it, written into the trail, are learnt; the
    # operator's promotion reaches the monitor, which predicts today's; the orchestrator
    # recycles the pool ahead of it, and the peak's reads all succeed
    assert "the training finds in the audit trail: database: TimeoutError daily at" in events
    assert "model version 1 promoted" in events
    assert "recovery: prevent:database started for database (predicted: expected at" in events
    assert "recovery: prevent:database succeeded" in events
    peak = seen["peak"]
    assert peak["reads"] > 0 and peak["failed"] == 0 and not peak["aged"], peak
    assert "the daily deadlock did not happen" in events
    assert "patient-" not in text  # identifiers never reach the terminal
    # the state it kept reads as data frames, as a stopped service's would; the embedded
    # Redis it started is not left running
    from actors.frames import LiveFrames, open_frames
    from actors.stores.embedded_redis import EmbeddedRedis

    assert f"The state is kept in {kept}" in text
    assert not EmbeddedRedis(kept / "redis").running()
    with open_frames(kept) as frames:
        assert isinstance(frames, LiveFrames)
        failures = frames.failures(services="clinical_reasoning")
        assert len(failures) > 0 and not failures["patient_pseudonym"].str.startswith(
            "patient-").any()
        opened = frames.circuit_transitions(services="clinical_reasoning")
        assert "OPEN" in set(opened["to_state"])
        runs = frames.workflow_runs(services="clinical_reasoning")
        assert "ai-service-failure" in set(runs["workflow"])
        m = frames.metrics(services="clinical_reasoning")
        assert m["requests"].sum() > 100 and m["errors"].sum() > 0
    assert not EmbeddedRedis(kept / "redis").running()


def test_the_narrator_tells_an_alert_as_far_as_a_line_allows():
    from serve.demo_live import first_reasons

    page = ("database: error budget burning at 14.1x over 6 h and 14.1x over 30 min (alert "
            "at 6x); database: error budget burning at 14.1x over 72 h; a detector fired")
    assert first_reasons(page) == ("database: error budget burning at 14.1x over 6 h and "
                                   "14.1x over 30 min (alert at 6x) (+2 more)")
    assert first_reasons(page, width=1000) == page
    ticket = "ticket: no budget burning; a detector fired"
    assert first_reasons(ticket) == ticket
    assert first_reasons("x" * 300) == "x" * 300  # the first reason is always told
    watch = ("care_locator: error_threshold (error rate 55% (36 of 66) over 30 s; its lower "
             "confidence bound is above 10%)")
    assert first_reasons(watch, width=40) == watch  # one reason, its own "; " included


def test_demo_keep_is_checked_before_anything_starts(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("mine")
    assert main(["demo", "--live", "--keep", str(full)]) == 2
    assert "holds files already" in capsys.readouterr().err
    assert main(["demo", "--keep", str(tmp_path / "new")]) == 2
    assert "only with --live" in capsys.readouterr().err
    assert (full / "x").read_text() == "mine" and not (tmp_path / "new").exists()
