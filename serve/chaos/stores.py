"""Stores the chaos suite owns, so it can stop them: a private PostgreSQL and a private Redis
(and, on a multi-node stack, a private MLflow tracking server).

Stopping the machine's shared database for 30 s would break whatever else uses it; the suite
starts its own servers in its run directory from the machine's binaries (PostgreSQL's
``initdb`` and ``pg_ctl``, and ``redis-server`` through :class:`EmbeddedRedis`) and stops
and restarts them as faults. PostgreSQL refuses to run as root, so as root its files belong
to the ``postgres`` user and its commands run as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from healing.errors import SelfHealError

__all__ = ["ChaosStoreError", "PrivateMlflow", "PrivatePostgres", "free_port"]


class ChaosStoreError(SelfHealError):
    """A private store could not be created, started or stopped."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise ChaosStoreError(f"no PostgreSQL {name} on this machine: install the PostgreSQL "
                              "server package (Debian: postgresql)")
    return found


class PrivatePostgres:
    """A PostgreSQL server in ``root``, on a free loopback port, trust authentication."""

    def __init__(self, root: pathlib.Path, port: int | None = None) -> None:
        self.root = pathlib.Path(root)
        self.port = port or free_port()
        self._as: list[str] = []
        self._own_dir = False
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ChaosStoreError("running as root needs a 'postgres' user to run the "
                                      "private PostgreSQL") from exc
            self._as = ["runuser", "-u", "postgres", "--"]
            # root's run directory (0700) is closed to the postgres user: the server gets a
            # directory of its own, removed by remove()
            self.root, self._own_dir = pathlib.Path(
                tempfile.mkdtemp(prefix="selfheal-chaos-pg-")), True
        self.data = self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise ChaosStoreError(f"{pathlib.Path(args[0]).name} failed: "
                                  f"{(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> PrivatePostgres:
        """Create the cluster on first use, then start it and wait until it answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                  "-w", "start")
        return self

    def stop(self) -> None:
        """Fast shutdown: connections are cut, as a crashed or restarted server cuts them."""
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its files, when this object made the directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg  # noqa: PLC0415 - only the harness needs it

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class PrivateMlflow:
    """An MLflow tracking server (``mlflow server``) on a free loopback port, its backend
    store SQLite and its artifacts under ``root``: what a cluster's nodes reach by URL
    instead of a file on one machine's disk."""

    def __init__(self, root: pathlib.Path, port: int | None = None) -> None:
        self.root = pathlib.Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> PrivateMlflow:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "mlflow-server.log", "ab")  # noqa: SIM115 - the server's own
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", (self.root / "artifacts").as_uri()],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ChaosStoreError(f"mlflow server exited ({self._proc.returncode}); see "
                                      f"{self.root / 'mlflow-server.log'}")
            if self.running():
                return self
            time.sleep(0.5)
        self.stop()
        raise ChaosStoreError(f"mlflow server did not answer on {self.url} within "
                              f"{timeout_s:g} s")

    def running(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)  # the server and its workers
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None
