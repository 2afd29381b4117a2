"""The analysts' data interface (actors.frames) against real stores: Redis streams and
orchestrator state on the machine's Redis, the audit trail in PostgreSQL, a stopped embedded
setup's own Redis and SQLite, Parquet event logs, MLflow on SQLite. Each frame is checked
against what was written, and against the path the live system itself reads."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
import redis

from actors.frames import COLUMNS, EventLogFrames, FramesError, LiveFrames, open_frames, to_segments
from actors.live_history import live_history, recorded_failures
from actors.orchestrator_actor import RecoveryOrchestratorActor
from actors.settings import Settings
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from actors.stores.metric_stream import MetricRecorder
from actors.stores.redis_conn import connect
from healing import CircuitConfig, ClinicalContext, Guard, ManualClock
from healing.audit import circuit_transition, operator_action
from healing.errors import ConfigError
from healing.events import CircuitTransitioned
from healing.orchestration import TriggerEvent
from healing.outcome import NOT_CALLED
from healing.registry import CircuitBreakerRegistry
from healing.workflow import RecoveryStep, RecoveryWorkflow, Trigger
from learning.patterns import PatternRecognizer
from tests.conftest import REDIS_URL

EPOCH = datetime(2027, 3, 1, tzinfo=UTC)
PATIENT, CLINICIAN, OPERATOR = "MRN-0042-SECRET", "DR-HOUSE-SECRET", "alice@hospital.example"
DAY = 86400.0


class Both:
    """The guard's sink: the real recorder, and the test's own list (the ground truth)."""

    def __init__(self, recorder):
        self.recorder, self.seen = recorder, []

    def record(self, outcome):
        self.recorder.record(outcome)
        self.seen.append(outcome)


@pytest.fixture
def live(tmp_path, pg_url):
    """Four days of one service failing at 14:00 for five minutes (2 calls every 10 s from
    13:50 to 14:10), a circuit that opens and closes, a recovery run, an operator's change:
    written by the real guard, recorder, audit trail and orchestrator."""
    service = f"frames{uuid.uuid4().hex[:6]}"
    orch = f"orch-{uuid.uuid4().hex[:6]}"
    settings = Settings.embedded(tmp_path).model_copy(update={
        "redis_url": REDIS_URL, "database_url": pg_url,
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    store = AuditStore(pg_url)
    store.migrate()
    clock = ManualClock(0.0, epoch=EPOCH)
    trail = AuditTrail.from_config(settings.audit_config(), settings.pseudonym_key_bytes())
    recorder = MetricRecorder(connect(REDIS_URL), sample_rate=0.1, flush_interval_s=0,
                              rng=random.Random(7))
    sink = Both(recorder)
    breakers = CircuitBreakerRegistry(clock, CircuitConfig(window_size=10,
                                                           minimum_number_of_calls=5,
                                                           wait_in_open_s=60))
    transitions = []

    def audit_transition(e):
        if isinstance(e, CircuitTransitioned):
            transitions.append((clock.wall(), e.to_state.name))
            trail.append(circuit_transition(
                service=service, at=clock.wall(), circuit=f"{e.circuit} (process p1)",
                from_state=e.from_state.name, to_state=e.to_state.name, reason=e.reason,
                failure_rate=e.failure_rate, slow_call_rate=e.slow_call_rate))
    breakers.add_listener(audit_transition)
    guard = Guard(clock=clock, breakers=breakers, sink=sink, audit=trail)
    ctx = ClinicalContext("diagnostic", "high", patient_id=PATIENT, clinician_id=CLINICIAN)

    def provider():
        t = clock.wall() % DAY
        if 14 * 3600 <= t < 14 * 3600 + 300:
            raise ConnectionError("deadlock")
        return "ok"

    for day in range(4):
        clock.set(day * DAY + 13 * 3600 + 50 * 60)
        for _ in range(120):
            for _ in range(2):
                # no fallback for this service: a failure is explicit, and audited first
                with contextlib.suppress(Exception):
                    guard.call(service, provider, context=ctx, provider="db")
            clock.advance(10)
    trail.append(operator_action(service=service, at=clock.wall(), operator=OPERATOR,
                                 action="circuit_reset", pseudonymize=trail.pseudonymize,
                                 details={"reason": "drill"}))
    wf = RecoveryWorkflow("reconnect", Trigger.MANUAL, service, (
        RecoveryStep("retry", {"max_attempts": 2, "base_delay_s": 5.0}, timeout_s=60),),
        (), 300.0, "high", ClinicalContext("administrative", "medium"))
    o = RecoveryOrchestratorActor([wf], probes={service: lambda: "ok"}, clock=clock,
                                  redis_url=REDIS_URL, state_prefix=f"selfheal:{orch}",
                                  audit=settings.audit_config())

    async def run():
        await o.trigger(TriggerEvent(Trigger.MANUAL, service, "operator drill"))
        assert await o.wait_idle(10)
    asyncio.run(clock.run(run()))
    recorder.flush()
    o.audit.flush()
    trail.flush()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield {"settings": settings, "service": service, "orch": orch, "seen": sink.seen,
               "transitions": transitions, "store": store, "trail": trail, "clock": clock,
               "recorder": recorder}
    finally:
        for key in [*client.scan_iter(f"metrics:{service}*"),
                    *client.scan_iter(f"selfheal:{orch}*")]:
            client.delete(key)
        recorder.close(flush=False)
        trail.close()
        o.audit.close()
        store.dispose()


def at(day, h, m=0):
    return EPOCH.timestamp() + day * DAY + h * 3600 + m * 60


def test_live_frames_hold_what_was_written_and_only_what_was_asked(live):
    service, seen = live["service"], live["seen"]
    with LiveFrames(live["settings"], orchestrator=live["orch"], clock=live["clock"]) as f:
        out = f.outcomes(services=service)
        assert list(out.columns) == COLUMNS["outcomes"]
        assert isinstance(out["time"].dtype, pd.DatetimeTZDtype)
        errors = [s for s in seen if s.error_kind is not None]
        assert int(out["error_kind"].notna().sum()) == len(errors)  # every error streamed
        assert 0.8 * len(seen) < out["weight"].sum() < 1.2 * len(seen)  # the sample, weighted
        # a range reads that range: day 1, 14:00 to 14:05
        lo, hi = at(1, 14), at(1, 14, 5)
        part = f.outcomes(datetime.fromtimestamp(lo, UTC), pd.Timestamp(hi, unit="s"), service)
        assert part["time"].min().timestamp() >= lo and part["time"].max().timestamp() < hi
        assert len(part) == sum(1 for s in errors if lo <= s.at < hi) > 0
        # per minute: the primary's errors exactly, the error rate where it failed
        m = f.metrics(services=[service])
        assert list(m.columns) == COLUMNS["metrics"]
        assert m["errors"].sum() == sum(1 for s in errors if s.error_kind not in NOT_CALLED)
        minute = m[m["time"] == pd.Timestamp(at(2, 14, 1), unit="s", tz="UTC")]
        assert float(minute["error_rate"].iloc[0]) == 1.0
        assert f.outcomes(services="nobody").empty and f.metrics(services="nobody").empty


def test_live_audit_frames_carry_pseudonyms_only(live):
    service, trail = live["service"], live["trail"]
    with LiveFrames(live["settings"], orchestrator=live["orch"], clock=live["clock"]) as f:
        frames = {n: getattr(f, n)(services=service) for n in (
            "failures", "recovery_steps", "circuit_transitions", "operator_actions",
            "workflow_runs", "detections", "trouble", "outcomes", "history")}
        failures = frames["failures"]
        assert list(failures.columns) == COLUMNS["failure_event"]
        audited = [s for s in live["seen"] if s.error_kind is not None]
        assert len(failures) == len(audited)
        assert set(failures["patient_pseudonym"]) == {trail.pseudonymize(PATIENT)}
        assert set(failures["clinician_pseudonym"]) == {trail.pseudonymize(CLINICIAN)}
        [op] = frames["operator_actions"].to_dict("records")
        assert op["operator_pseudonym"] == trail.pseudonymize(OPERATOR)
        assert op["action"] == "circuit_reset" and op["details"] == {"reason": "drill"}
        for name, df in frames.items():
            text = df.to_json(orient="records", default_handler=str, date_format="iso")
            for secret in (PATIENT, CLINICIAN, OPERATOR):
                assert secret not in text, (name, secret)
        # circuits: every transition, and trouble from each opening to its closing
        tr = frames["circuit_transitions"]
        assert list(zip(tr["time"].map(pd.Timestamp.timestamp), tr["to_state"], strict=True)) \
            == live["transitions"]
        # (half-open is still trouble: a span ends when the circuit closes)
        opened = [t for t, s in live["transitions"] if s == "OPEN"]
        closed = [t for t, s in live["transitions"] if s == "CLOSED"]
        spans = frames["trouble"]
        assert len(spans) == len(closed) == 4  # one a day
        assert spans["start"].map(pd.Timestamp.timestamp).tolist() == [
            min(t for t in opened if c - DAY < t < c) for c in closed]
        assert spans["end"].map(pd.Timestamp.timestamp).tolist() == closed
        # the recovery run, its steps, the trigger that started it
        [run] = frames["workflow_runs"].to_dict("records")
        assert run["trigger"] == "manual" and run["succeeded"] and run["workflow"] == "reconnect"
        steps = frames["recovery_steps"]
        assert set(steps["workflow_id"]) == {run["run_id"]}
        assert list(steps["status"]) == ["started", "succeeded"]
        [det] = frames["detections"].to_dict("records")
        assert det["trigger"] == "manual" and det["admitted"] == "queued"
        assert det["time"] == run["started"]


def test_live_history_and_patterns_match_what_the_live_system_learns_from(live):
    """The labelled history equals the scheduled training's (actors.live_history), and the
    recurring pattern equals the control API's (the SQL path) on PostgreSQL."""
    service, settings = live["service"], live["settings"]
    with LiveFrames(settings, orchestrator=live["orch"], clock=live["clock"]) as f:
        history = f.history(services=service)
        client = connect(REDIS_URL)
        try:
            expected = live_history(client, settings.database_url, [service], 0.1)
        finally:
            client.close()
        assert to_segments(history) == {service: [expected[service]]}
        assert history["troubled"].any() and not history["troubled"].all()
        found = f.patterns(services=service)
        sql = PatternRecognizer().fit(recorded_failures(live["store"], at(0, 0), at(5, 0)))
        assert list(found["description"]) == [p.describe() for p in sql]
        [daily] = found.to_dict("records")
        assert daily["frequency"] == "daily" and daily["occurrences"] == 4
        assert daily["service"] == service and "14:0" in daily["description"]


def test_a_stopped_embedded_setup_is_read_from_its_data_directory(tmp_path):
    """What `selfheal up` (embedded) leaves: its Redis's append-only file and audit.db. The
    frames start that Redis to read it, and stop it again; nothing is written."""
    from actors.process import bootstrap
    from actors.stores.embedded_redis import EmbeddedRedis
    from healing.audit import chain

    settings, server = bootstrap(Settings.embedded(tmp_path))
    assert server is not None
    try:
        recorder = MetricRecorder(connect(settings.redis_url),
                                  sample_rate=settings.metrics_sample_rate, flush_interval_s=0)
        from healing.outcome import OutcomeRecord
        from healing.safety import Criticality, OperationType
        t0 = 1_900_000_000.0
        for i in range(30):  # failures: every one is streamed, whatever the sample rate
            recorder.record(OutcomeRecord("api", "main", False, 0.01 * (i + 1), "Timeout",
                                          "none", None, OperationType.ADMINISTRATIVE,
                                          Criticality.MEDIUM, t0 + i))
        recorder.close()
        store = AuditStore(settings.audit_database_url())
        store.insert([chain(circuit_transition(service="api", at=t0 + 5, circuit="api:main",
                                               from_state="CLOSED", to_state="OPEN",
                                               reason="test"), "w", 0, "")])
        store.dispose()
    finally:
        server.stop()
    db = tmp_path / "audit.db"
    before = db.stat().st_mtime_ns
    with open_frames(tmp_path) as f:
        assert isinstance(f, LiveFrames)
        m = f.metrics()
        assert m["requests"].sum() == m["errors"].sum() == m["unanswered"].sum() == 30
        # t0 is 40 s into a minute: 20 calls (10-200 ms) in the first, 10 (210-300 ms) next
        assert m["events"].tolist() == [20, 10]
        assert m["p95_latency_s"].tolist() == pytest.approx([0.19, 0.30])
        assert m["p50_latency_s"].tolist() == pytest.approx([0.10, 0.25])
        assert f.circuit_transitions()["to_state"].tolist() == ["OPEN"]
    assert not EmbeddedRedis(tmp_path / "redis").running()  # stopped again
    assert db.stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def event_logs(tmp_path_factory):
    from simulation.runner import simulate
    from simulation.scenario import load_scenario

    root = tmp_path_factory.mktemp("frames-events")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sc = load_scenario("simulation/scenarios/cascading_database_failure.yaml")
    reports = simulate([sc], runs=2, events_dir=str(root / "events"), mlflow_uri=uri)
    return root, uri, reports[0]


def test_event_log_frames_match_the_run(event_logs):
    from simulation.eventlog import read_training_history

    root, uri, report = event_logs
    f = open_frames(root)
    assert isinstance(f, EventLogFrames) and f.mlflow_uri == uri
    runs = f.workflow_runs()
    assert sorted(runs["run"].unique()) == sorted(p.rsplit("/", 1)[-1]
                                                  for p in report["event_logs"])
    assert len(runs) == report["workflow_runs"] > 0
    # detections and steps are placed on the wall clock, inside the scenario's two hours
    start = pd.Timestamp("2026-01-05", tz="UTC")
    for df, col in ((f.detections(), "time"), (f.recovery_steps(), "time"), (runs, "started")):
        assert df[col].min() >= start and df[col].max() < start + pd.Timedelta(hours=2)
    # history is the training path's, run by run
    segs = to_segments(f.history())
    for i, log in enumerate(sorted(report["event_logs"])):
        for service, buckets in read_training_history(log).items():
            assert segs[service][i] == buckets
    # ranges and services narrow what is read
    part = f.failures("2026-01-05T00:50", "2026-01-05T01:00", ["database"])
    assert set(part["service"]) == {"database"} and len(part) < len(f.failures())
    assert part["time"].between(pd.Timestamp("2026-01-05T00:50", tz="UTC"),
                                pd.Timestamp("2026-01-05T01:00", tz="UTC")).all()
    troubled = f.trouble(services="database")
    assert len(troubled) == 2 and (troubled["end"] > troubled["start"]).all()
    # MLflow: the two simulated runs, with their parameters and outcome metrics
    ml = f.mlflow_runs()
    assert len(ml) == 2 and set(ml["params.scenario"]) == {"cascading-database-failure"}
    assert ml["metrics.availability"].between(0, 1).all()
    assert f.mlflow_runs(start="2001-01-01", end="2002-01-01").empty


def test_every_frame_has_its_documented_columns_and_types(event_logs, tmp_path):
    """docs/data.md's types, on frames with rows and on empty ones."""
    from actors.frames_build import BOOLS, FLOATS, INTS, TIMES

    full = open_frames(event_logs[0])
    empty_range = ("2001-01-01", "2001-01-02")
    names = {"outcomes": "outcomes", "metrics": "metrics", "failures": "failure_event",
             "recovery_steps": "recovery_step", "circuit_transitions": "circuit_transition",
             "operator_actions": "operator_action", "workflow_runs": "workflow_runs",
             "detections": "detections", "trouble": "trouble", "history": "history",
             "patterns": "patterns"}
    for method, name in names.items():
        for df in (getattr(full, method)(), getattr(full, method)(*empty_range)):
            assert list(df.columns) == COLUMNS[name], method
            for c in df.columns:
                kind = df[c].dtype
                if c in TIMES:
                    assert isinstance(kind, pd.DatetimeTZDtype) and str(kind.tz) == "UTC"
                elif c in FLOATS:
                    assert kind == "float64", (method, c, kind)
                elif c in INTS:
                    assert kind == "int64", (method, c, kind)
                elif c in BOOLS:
                    assert kind == "bool", (method, c, kind)
                elif len(df) and c in ("service", "run", "error_kind", "action", "trigger"):
                    assert pd.api.types.is_string_dtype(kind), (method, c, kind)


def test_registered_models_are_a_frame(event_logs, tmp_path):
    from actors.training_job import run_training
    from learning.model_registry import versions

    root, _, report = event_logs
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_training(uri, [], [], use_ray=False, promote=True,
                       event_logs=report["event_logs"][:1])
    models = EventLogFrames(root / "events", mlflow_uri=uri).models()
    [row] = models.to_dict("records")
    assert row["version"] == int(out["version"]) and row["run_id"] == out["run_id"]
    assert row["champion"] == (versions(uri)["champion"] == out["version"])


def test_bad_sources_and_arguments_say_what_is_wrong(tmp_path, event_logs):
    with pytest.raises(FramesError, match="no such folder"):
        open_frames(tmp_path / "missing")
    with pytest.raises(FramesError, match="no event log here"):
        open_frames(tmp_path)
    one = sorted((event_logs[0] / "events").iterdir())[0]
    broken = tmp_path / "copy"
    broken.mkdir()
    for p in one.iterdir():
        if p.name != "run.json":
            (broken / p.name).write_bytes(p.read_bytes())
    with pytest.raises(FramesError, match=r"copy/run.json: missing"):
        EventLogFrames(broken)
    f = EventLogFrames(one)
    with pytest.raises(ConfigError, match="start is not a time"):
        f.failures(start="last tuesday-ish")
    with pytest.raises(FramesError, match="must be after start"):
        f.failures(start="2026-01-05T01:00", end="2026-01-05T00:00")
    with pytest.raises(ConfigError, match="services must be service names"):
        f.failures(services=[""])
    with pytest.raises(FramesError, match="no MLflow store"):
        f.models()
