"""Session-wide fixtures: real PostgreSQL databases, one per test that asks for one."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    name = f"selfheal_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        _ensure_postgres_running()
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cluster() -> list[str]:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def stop_postgres() -> None:
    subprocess.run([*_cluster(), "stop", "-m", "fast"], check=True, capture_output=True)


def _ensure_postgres_running() -> None:
    ok = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False)
    if ok.returncode != 0:
        subprocess.run([*_cluster(), "start"], check=True, capture_output=True)
        subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-t", "30"], check=True)


@pytest.fixture
def postgres_control() -> Iterator[tuple]:
    """Stop and start the real PostgreSQL server; always running again afterwards."""
    try:
        yield stop_postgres, _ensure_postgres_running
    finally:
        _ensure_postgres_running()


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole session (2 CPUs, no dashboard)."""
    import pathlib

    import ray

    root = str(pathlib.Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="selfheal",
             configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": root,
                                       "RAY_task_events_report_interval_ms": "0"}})
    yield ray
    ray.shutdown()


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def library_data(ray_cluster, tmp_path_factory):
    """The scenario library simulated once for the session on the Ray cluster, as the
    notebooks' sample data is made (event logs, MLflow runs, ``ready.json`` with the
    reports): the library's tests read its reports, the notebooks its files."""
    import json

    from actors.ray_gateway import as_completed
    from tests.factories import notebook_module

    root = notebook_module("sample_data").ensure(tmp_path_factory.mktemp("library"),
                                                 fan_out=as_completed)
    return root, json.loads((root / "ready.json").read_text())["reports"]

