"""The live demo's recurring deadlock: learnt from the audit trail, predicted, prevented.

A recurrence takes days to show, and a live demo lasts minutes, so the days before it are
written into the demo's own (private, temporary) audit trail as the guard and a circuit would
have written them: on each of the last five days the record database's connection pool
deadlocked at the time of day the demo's peak falls on, its reads timed out and its circuit
opened. Everything after that is the running service doing what it does in production:

1. a training reads the trail (``actors.live_history.recorded_failures``) and finds the
   daily recurrence (``learning.patterns``); an operator promotes the model that carries it
   through the control API;
2. the predictive monitor, told of the promotion, finds the occurrence due within its lead
   time and raises a ``predicted`` trigger; the orchestrator runs the database's prevention
   workflow, whose restart step (aimed here at the pool's Ray actor) recycles the pool;
3. at the peak, a pool that has been up since before it deadlocks, and a fresh one gets
   through: the narrator reads from the pool how many reads the peak had and how many failed.

Had nothing been learnt in time, the deadlock happens live and is healed like any outage;
the narrator says which of the two it saw.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from actors.live_history import recorded_failures
from actors.ray_gateway import NAMESPACE, find_actor, get, kill, named_actor, was_restarted
from actors.settings import Settings
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from healing import ClinicalContext
from healing.audit import PatientImpact, circuit_transition, failure_event

__all__ = ["DEADLOCK", "POOL", "RecordDatabase", "RecordPool", "RecordService"]

SERVICE = "database"  # the shipped catalogue's clinical record database
DEADLOCK = "database:deadlock"  # the script's key: the daily peak begins (down) or ends
POOL = "record-pool"  # the pool's Ray actor, which the database's restart steps aim at
DAY = 86400.0
DAYS = 5  # days of history before the demo: a daily pattern needs three
CAUSE = "connection pool exhausted: every connection waits on a lock held by another"


class RecordDatabase:
    """The clinical record database as its health check and its pool reach it: a TCP
    listener on loopback that accepts and hangs up. :meth:`down` closes it (connections are
    refused, as when a database host drops off the network); :meth:`up` listens again on the
    same port."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.port = 0
        self.up()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="record-database",
                                        daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        sock.settimeout(0.1)
        self.port, self._sock = sock.getsockname()[1], sock

    def down(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            # shut down first: the serving thread may be in accept() on it, which keeps a
            # merely closed socket listening until it returns
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.down()

    def _serve(self) -> None:
        while not self._stop.is_set():
            sock = self._sock
            if sock is None:
                self._stop.wait(0.05)
                continue
            with contextlib.suppress(OSError):  # a timeout, or closed by down()
                conn, _ = sock.accept()
                conn.close()


class RecordPool:
    """The record database's connection pool, as guarded reads reach it: each read takes a
    connection to the database (so reads fail while the database is off the network). A
    pool that has been up since before the daily peak (``peak_at`` for ``peak_s``) deadlocks
    in it; one that Ray restarted (a recycle) gets through it."""

    def __init__(self, database: str, peak_at: float, peak_s: float) -> None:
        host, _, port = database.rpartition(":")
        self.address = (host, int(port))
        self.peak_at, self.peak_s = peak_at, peak_s
        # Ray restarts an actor by running its constructor again: a restarted pool is fresh
        self.aged = not was_restarted()
        self.reads = self.failed = 0  # during the peak

    def read(self, question: str) -> dict[str, Any]:
        now = time.time()
        peak = self.peak_at <= now < self.peak_at + self.peak_s
        self.reads += peak
        if peak and self.aged:
            self.failed += 1
            time.sleep(0.2)  # the read waits for a connection that never comes back
            raise TimeoutError(CAUSE)
        socket.create_connection(self.address, timeout=1.0).close()
        return {"answer": "ok", "record": question, "service": SERVICE}

    def peak(self) -> dict[str, Any]:
        return {"reads": self.reads, "failed": self.failed, "aged": self.aged}


def _history(settings: Settings, peak_at: float, days: int = DAYS) -> int:
    """Write the last ``days`` days' deadlocks into the trail, as the guard and the circuit
    wrote them: a timed-out read every 4 s from the peak's start for two minutes, and the
    circuit opening 30 s in. Returns how many records were written."""
    admin = ClinicalContext("administrative", "high")
    trail = AuditTrail.from_config(settings.audit_config(), None)
    n = 0
    try:
        for day in range(days, 0, -1):
            start = peak_at - day * DAY
            for s in range(0, 120, 4):
                trail.append(failure_event(
                    service=SERVICE, at=start + s, context=admin,
                    pseudonymize=trail.pseudonymize, error_kind="TimeoutError", error=CAUSE,
                    provider="primary", recovery_actions=[], served_by=None, integrity=None,
                    clinician_notified=False,
                    patient_impact=PatientImpact.SERVICE_UNAVAILABLE))
                n += 1
            trail.append(circuit_transition(
                service=SERVICE, at=start + 30, circuit=f"{SERVICE}:primary",
                from_state="CLOSED", to_state="OPEN", reason="failure rate over its threshold"))
            n += 1
        trail.flush()
    finally:
        trail.close()
    return n


class RecordService:
    """The record database's part of the demo: the pool its reads go through and, when the
    script has a daily peak (``peak``: its wall-clock start and length), the days of
    deadlocks before the demo in the trail and a training on them, started at once in the
    background (:meth:`learnt` says what came of it)."""

    def __init__(self, settings: Settings, database: str, peak: tuple[float, float] | None,
                 api: str, operator: str) -> None:
        self.settings = settings
        at, length = peak if peak is not None else (float("inf"), 0.0)
        self.pool = named_actor(RecordPool, POOL, database, at, length, max_task_retries=-1)
        self.api = httpx.Client(base_url=api, timeout=30,
                                headers={"Authorization": f"Bearer {operator}"})
        self.outcome: dict[str, Any] | None = None
        self._learning: Future[str] | None = None
        self._told = False
        self._trainer = ThreadPoolExecutor(1, "demo-training")
        if peak is not None:
            _history(settings, at)
            self._learning = self._trainer.submit(self._learn)

    def read(self, question: str) -> Any:
        """A read of the record database, as the workload's guarded calls make it."""
        return get(self.pool.read.remote(question), timeout_s=10)

    def learnt(self) -> str | None:
        """What the training found and the operator did, once, when it is done."""
        if self._learning is None or self._told or not self._learning.done():
            return None
        self._told = True
        try:
            return self._learning.result()
        except Exception as exc:  # the demo tells it and goes on
            return f"the training failed: {type(exc).__name__}: {exc}"

    def _learn(self) -> str:
        from actors.training_job import run_training  # noqa: PLC0415 - MLflow: seconds

        store = AuditStore(self.settings.audit_database_url())
        try:
            now = time.time()
            failures = recorded_failures(store, now - 28 * DAY, now)
        finally:
            store.dispose()
        out = run_training(self.settings.mlflow_uri(), [], [], use_ray=False, promote=False,
                           live_failures=failures)
        found = [p for p in out["patterns"] if p.startswith(f"{SERVICE}:")]
        if not found:
            return "the training found no recurrence in the trail: nothing to promote"
        r = self.api.post(f"/api/v1/models/{out['version']}/promote",
                          json={"reason": "carries the record database's daily deadlock"})
        promoted = "promoted" if r.status_code == 200 else f"not promoted ({r.status_code})"
        return (f"📈 the training finds in the audit trail: {found[0]}\n"
                f"               👤 the on-call engineer: model version {out['version']} "
                f"{promoted}; the monitor is told at once")

    def verdict(self) -> str:
        """What the peak did, read from the pool itself."""
        try:
            self.outcome = seen = get(self.pool.peak.remote(), timeout_s=10)
        except Exception as exc:  # the demo tells it and goes on
            return f"the pool could not be asked how the peak went ({type(exc).__name__})"
        if seen["failed"] == 0:
            how = "the pool was recycled ahead of it" if not seen["aged"] else \
                "the pool was not recycled, yet nothing failed"
            return (f"✅ the daily deadlock did not happen: {seen['reads']} record reads in "
                    f"the peak, none failed ({how})")
        return (f"❌ the deadlock happened: {seen['failed']} of {seen['reads']} record reads "
                f"in the peak timed out (nothing was learnt in time to recycle the pool)")

    def close(self) -> None:
        # a training still running promotes through the client: it finishes first
        if self._learning is not None:
            with contextlib.suppress(Exception):
                self._learning.result(timeout=60)
        self._trainer.shutdown(wait=False)
        self.api.close()
        with contextlib.suppress(Exception):
            pool = find_actor(POOL, NAMESPACE)
            if pool is not None:
                kill(pool)
