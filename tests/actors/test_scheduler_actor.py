"""Scheduled training on the real cluster: due runs train end to end, and missed or failed
runs are visible in Redis."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime

import pytest

from actors.runtime import training_scheduler
from actors.settings import Settings
from actors.stores.redis_conn import connect
from learning.model_registry import champion
from tests.conftest import REDIS_URL

LEAK = """\
name: small-leak
duration: 40m
seed: {seed}
services:
  api_server:
    rps: 10
    latency_ms: {{p50: 50, p99: 400}}
    error_rate: 0.001
    providers: [api_server]
    operation: administrative
faults:
  - service: api_server
    kind: memory_leak
    at: 25m
    params: {{growth: 0.02}}
"""


def minute(m):
    return datetime(2026, 11, 29, 3, m, tzinfo=UTC).timestamp()


@pytest.fixture
def scenario_files(tmp_path):
    paths = []
    for seed in (1, 2):
        p = tmp_path / f"leak{seed}.yaml"
        p.write_text(textwrap.dedent(LEAK.format(seed=seed)))
        paths.append(str(p))
    return paths


def test_due_runs_train_and_missed_and_failed_ones_are_recorded(ray_cluster, tmp_path,
                                                                 scenario_files):
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sched = training_scheduler("* * * * *", uri, REDIS_URL, scenario_files,
                               name=f"sched-{prefix}", start=False, key_prefix=prefix,
                               now=minute(0))
    try:
        assert ray_cluster.get(sched.tick.remote(minute(0) + 30)) is None  # not due yet
        assert ray_cluster.get(sched.tick.remote(minute(1) + 5)) == minute(1)
        # the next minute comes while that training still runs: missed, not queued
        assert ray_cluster.get(sched.tick.remote(minute(2) + 1)) is None
        assert ray_cluster.get(sched.wait_idle.remote(300))
        runs = ray_cluster.get(sched.runs.remote())
        by_time = {r["scheduled_for"]: r for r in runs}
        assert by_time[minute(2)]["status"] == "missed"
        assert "still running" in by_time[minute(2)]["detail"]
        done = by_time[minute(1)]
        assert done["status"] == "succeeded", done
        assert done["version"] == "1" and done["run_id"]
        # promoted or not, the registry agrees with what the run reported
        assert (champion(uri) is not None) == done["promoted"]
    finally:
        ray_cluster.kill(sched)
    # a scheduler that restarts later resumes from Redis and reports what it slept through
    again = training_scheduler("* * * * *", uri, REDIS_URL, ["/no/such/history.yaml"],
                               name=f"sched2-{prefix}", start=False, key_prefix=prefix)
    try:
        assert ray_cluster.get(again.tick.remote(minute(5) + 1)) == minute(5)
        assert ray_cluster.get(again.wait_idle.remote(60))
        runs = ray_cluster.get(again.runs.remote())
        statuses = {r["scheduled_for"]: r["status"] for r in runs}
        assert statuses[minute(3)] == statuses[minute(4)] == "missed"
        assert statuses[minute(5)] == "failed"  # and why, for the operator
        assert "cannot be read" in next(r for r in runs if r["status"] == "failed")["detail"]
    finally:
        ray_cluster.kill(again)
        connect(REDIS_URL).delete(f"{prefix}selfheal:training:runs",
                                  f"{prefix}selfheal:training:last_fire")


def test_a_scheduled_training_learns_from_the_live_stores_and_fans_out_on_ray(ray_cluster,
                                                                              tmp_path,
                                                                              scenario_files):
    """What `selfheal up` starts: the live metric streams and audit trail are history, the
    live service is judged on its own history by the promotion gate, every phase is timed."""
    from actors.training_job import PHASES, LiveSource
    from tests.actors.test_training_job import write_live_history

    prefix = f"t{uuid.uuid4().hex[:6]}:"
    service = f"live{uuid.uuid4().hex[:6]}"
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    recorder = write_live_history(service, audit_url)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sched = training_scheduler("0 3 * * *", uri, REDIS_URL, scenario_files[:1],
                               name=f"sched-{prefix}", start=False, key_prefix=prefix,
                               now=minute(0), live=LiveSource(REDIS_URL, audit_url, 0.1))
    try:
        assert ray_cluster.get(sched.tick.remote(minute(0) + 86400)) is not None
        assert ray_cluster.get(sched.wait_idle.remote(300))
        [run] = ray_cluster.get(sched.runs.remote())
        assert run["status"] == "succeeded", run
        assert set(run["phases_s"]) == set(PHASES)
        assert any(r.startswith(f"live history of {service}:") for r in run["reasons"])
        from mlflow.tracking import MlflowClient

        params = MlflowClient(uri).get_run(run["run_id"]).data.params
        assert service in params["services"].split(",")  # trained on the live stream
        assert "api_server" in params["services"].split(",")  # and on the scenario
    finally:
        ray_cluster.kill(sched)
        client = connect(REDIS_URL)
        client.delete(f"metrics:{service}", f"metrics:{service}:count",
                      f"{prefix}selfheal:training:runs", f"{prefix}selfheal:training:last_fire")
        recorder.close()


def test_the_schedule_setting_is_validated():
    with pytest.raises(ValueError, match="cron expression"):
        Settings(training_schedule="at dawn")
    assert Settings(training_schedule="0 3 * * *").training_schedule == "0 3 * * *"
    assert Settings().training_schedule == "0 3 * * *"  # `selfheal up` trains nightly
    assert Settings(training_schedule="off").training_schedule is None
