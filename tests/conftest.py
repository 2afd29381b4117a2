"""Session-wide fixtures: real PostgreSQL databases, one per test that asks for one."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# make test runs the suite on two workers (pytest-xdist), each with its own Ray cluster, in
# units that one worker runs in order. The tests of these folders share what the machine has
# once: the Redis and the PostgreSQL on their ports (two tests stop PostgreSQL), Serve's port
# 8000: one unit. The modules that read the scenario library's session data: one unit (it is
# made once). Every other module is a unit of its own and touches none of those; so are the
# modules of those folders that run the demo and `selfheal up`, which bring their own Ray,
# Redis and data, and a free port or none.
SHARED_MACHINE = ("actors", "chaos", "serve")
SELF_CONTAINED = ("tests/serve/test_cli.py", "tests/serve/test_cli_rows.py",
                  "tests/serve/test_service_up.py")
LIBRARY_USERS = ("tests/notebooks/test_notebooks.py", "tests/simulation/test_library.py")


def work_unit(nodeid: str) -> str:
    """The unit a test runs in, from its id: tests of one unit run on one worker, in order."""
    module = nodeid.split("::", maxsplit=1)[0]
    parts = module.split("/")
    if len(parts) > 2 and parts[1] in SHARED_MACHINE and module not in SELF_CONTAINED:
        return "machine-stores"
    return "scenario-library" if module in LIBRARY_USERS else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    # xdist's own groups (--dist loadgroup) rename test ids, which pytest 9.2 no longer
    # allows; the scope of its module scheduler is the one thing to change
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByUnit(config, log)


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
    # "local": a cluster of its own, never one another test started with `ray start`
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="selfheal", configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": root,
                                       "RAY_task_events_report_interval_ms": "0"}})
    yield ray
    ray.shutdown()


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def library_data(ray_cluster, tmp_path_factory):
    """The scenario library simulated once for the session on the Ray cluster, as the
    notebooks' sample data is made (event logs, MLflow runs, ``ready.json`` with the
    reports): the library's tests read its reports, the notebooks its files. A module that
    reads it is one of ``LIBRARY_USERS`` (else its worker makes the library again)."""
    import json

    from actors.ray_gateway import as_completed
    from tests.factories import notebook_module

    root = notebook_module("sample_data").ensure(tmp_path_factory.mktemp("library"),
                                                 fan_out=as_completed)
    return root, json.loads((root / "ready.json").read_text())["reports"]
