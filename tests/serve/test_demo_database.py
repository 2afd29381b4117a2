"""The live demo's record database: its pool deadlocks at the daily peak unless recycled, and
the days of deadlocks written before the demo read back as the daily pattern they are."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.live_history import recorded_failures
from actors.ray_gateway import NAMESPACE, find_actor, get, kill, named_actor, restart_actor
from actors.settings import Settings
from actors.stores.audit_sql import AuditStore
from learning.patterns import DAY, PatternRecognizer
from serve.demo_database import CAUSE, RecordDatabase, RecordPool, _history


def test_an_aged_pool_deadlocks_in_the_peak_and_a_recycled_one_gets_through(ray_cluster):
    database = RecordDatabase()
    name = f"pool-{uuid.uuid4().hex[:6]}"
    # the peak is on now and lasts the test; a read takes a connection to the database
    pool = named_actor(RecordPool, name, database.address, time.time() - 1, 600.0,
                       max_task_retries=-1)
    try:
        with pytest.raises(TimeoutError, match="connection pool exhausted"):
            get(pool.read.remote("case-1"), timeout_s=30)
        assert get(pool.peak.remote(), timeout_s=30)["aged"]
        # what the prevention workflow's restart step does: Ray starts the pool afresh
        restart_actor(f"{NAMESPACE}/{name}")
        deadline = time.monotonic() + 30
        while True:
            try:
                seen = get(pool.peak.remote(), timeout_s=30)
                if not seen["aged"] or time.monotonic() > deadline:
                    break
            except Exception:  # the kill is asynchronous: the old one may still answer
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        assert not seen["aged"]
        assert get(pool.read.remote("case-2"), timeout_s=30)["record"] == "case-2"
        assert get(pool.peak.remote(), timeout_s=30)["failed"] == 0
        # the database off the network: the pool cannot read, fresh or not (refused, or
        # reset when the connection reached the closing listener's backlog)
        database.down()
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
            get(pool.read.remote("case-3"), timeout_s=30)
    finally:
        database.close()
        kill(find_actor(name, NAMESPACE))


def test_the_days_before_the_demo_read_back_as_a_daily_deadlock(tmp_path):
    settings = Settings.embedded(tmp_path)
    store = AuditStore(settings.audit_database_url())
    store.migrate()
    peak = time.time() + 120.0
    try:
        written = _history(settings, peak)
        assert written == 5 * 31  # 30 timed-out reads and the circuit opening, per day
        failures = recorded_failures(store, peak - 28 * DAY, peak)
        assert len(failures) == 5 and {f.kind for f in failures} == {"TimeoutError"}
        [pattern] = PatternRecognizer().fit(failures)
        assert pattern.service == "database" and pattern.frequency == "daily"
        assert (pattern.occurrences, pattern.recommended_action) == (5, "restart")
        # expected today at the peak's own second: what the monitor acts ahead of
        assert pattern.next_after(peak - 300) == pytest.approx(peak, abs=1e-3)
        messages = {r.data.get("error") for r in store.records()}
        assert CAUSE in messages
    finally:
        store.dispose()
