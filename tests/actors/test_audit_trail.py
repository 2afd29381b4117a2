"""The durable audit trail against real SQLite and PostgreSQL: exactly once, tamper-evident."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from actors.stores.audit_spool import AuditSpool, forget_dead_writers, segments
from actors.stores.audit_sql import AuditStore, AuditStoreError, metadata
from actors.stores.audit_trail import AuditTrail
from healing import ClinicalContext, ClinicalSafetyError, FallbackExhausted, ManualClock
from healing.audit import circuit_transition
from serve.cli import main as cli
from tests.actors.crashed_writer import crashed_writer
from tests.factories import audit_problems, make_guard

KEY = b"k" * 32
DX = ClinicalContext("diagnostic", "high", patient_id="MRN-900117", clinician_id="DR-4411")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = AuditStore(url)
    s.migrate()
    yield s
    s.dispose()


def trail(tmp_path, store):
    return AuditTrail(tmp_path / "spool", store, KEY, flush_interval_s=0)


def down(*_a, **_k):
    raise ConnectionError("provider down")


def test_migrations_build_exactly_the_models_and_run_twice(store):
    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_every_failure_and_fallback_is_in_sql_exactly_once(tmp_path, store):
    t = trail(tmp_path, store)
    g = make_guard()
    g.audit = t
    g.fallbacks.register_provider("clinical_reasoning", "deepseek",
                                  lambda: {"diagnosis": "x", "confidence": 0.9})
    g.call("clinical_reasoning", down, context=DX)  # fallback served
    with pytest.raises(ClinicalSafetyError):
        g.call("emergency_triage", down, context=DX)  # explicit failure
    with pytest.raises(FallbackExhausted):
        g.call("pharmaguard", down, context=ClinicalContext("prescriptive", "high"))
    g.call("clinical_reasoning", lambda: {"confidence": 0.99}, context=DX)  # success: no record
    assert t.flush() == 3
    assert t.flush() == 0  # nothing new
    t.close()
    assert store.count() == 3 and audit_problems(store) == []
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "select service, served_by, patient_impact, clinician_notified, "
            "integrity_performed, patient_pseudonym from failure_events order by at")).all()
    by_service = {r.service: r for r in rows}
    fb = by_service["clinical_reasoning"]
    assert fb.served_by == "alternative_provider:deepseek" and fb.patient_impact == "delay"
    assert fb.integrity_performed and fb.patient_pseudonym and fb.patient_pseudonym != "MRN-900117"
    assert by_service["emergency_triage"].clinician_notified
    assert by_service["emergency_triage"].patient_impact == "service_unavailable"


def test_identifiers_are_never_stored_in_clear(tmp_path, store):
    t = trail(tmp_path, store)
    g = make_guard()
    g.audit = t
    with pytest.raises(ClinicalSafetyError):
        g.call("emergency_triage", down, context=DX)
    t.close()
    with store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for table in ("audit_log", "failure_events")
                           for r in conn.execute(text(f"select * from {table}"))])
    assert "MRN-900117" not in dump and "DR-4411" not in dump
    assert t.pseudonymize("MRN-900117") in dump


def test_a_crashed_writer_is_replayed_by_the_next_process_exactly_once(tmp_path, store):
    spool = tmp_path / "spool"
    crashed_writer(spool, 50)  # no chance to close, flush or clean up
    t = trail(tmp_path, store)
    assert t.flush() == 50
    t.flush()  # replaying again writes nothing twice
    t.close()
    assert store.count() == 50 and audit_problems(store) == []
    assert segments(spool) == []  # the dead writer's segments are gone once in SQL
    assert not any(p.name.endswith(".lock") for p in spool.iterdir())


def _transition(i: int):
    return circuit_transition(service="svc", at=float(i), circuit="c", from_state="CLOSED",
                              to_state="OPEN", reason=str(i))


def test_writers_starting_while_another_process_flushes_lose_nothing(tmp_path, store):
    # Found by the chaos suite: the orchestrator restarted on another node while the guards
    # flushed, and every record it wrote afterwards vanished (the sweep took its lock from an
    # older listing, its segment was then flushed as a dead writer's and deleted under it).
    flusher = trail(tmp_path, store)
    stop = threading.Event()

    def flush_until_stopped():
        while not stop.is_set():
            flusher.flush()

    sweeping = threading.Thread(target=flush_until_stopped)
    sweeping.start()
    writers, sent = [], 0
    try:
        for i in range(150):
            writers.append(AuditSpool(tmp_path / "spool"))
            writers[-1].append(_transition(i))
            sent += 1
    finally:
        stop.set()
        sweeping.join()
    for w in writers:
        w.append(_transition(-1))  # written after many sweeps: still its own, still on disk
        sent += 1
        w.close()
    flusher.close()
    assert store.count() == sent and audit_problems(store) == []
    assert segments(tmp_path / "spool") == []


def test_a_sweep_forgets_dead_writers_only(tmp_path, store):
    spool = tmp_path / "spool"
    dead = crashed_writer(spool, 3)
    with AuditSpool(spool) as live:
        assert forget_dead_writers(spool) == 0  # the dead one still has records to flush
        t = trail(tmp_path, store)
        assert t.flush() == 3  # the flush sends the dead writer's records and forgets it
        assert not (spool / f"{dead}.lock").exists()
        assert (spool / f"{live.writer}.lock").exists()
        live.append(_transition(1))
    assert forget_dead_writers(spool) == 0  # closed, but its segment is not in SQL yet
    assert t.flush() == 1
    assert not (spool / f"{live.writer}.lock").exists()
    t.close()
    assert store.count() == 4


def test_a_torn_last_line_is_skipped_not_misread(tmp_path, store):
    spool_dir = tmp_path / "spool"
    with AuditSpool(spool_dir) as s:
        s.append(circuit_transition(service="s", at=1.0, circuit="c", from_state="A",
                                    to_state="B", reason="r"))
        path = s.current
    with open(path, "ab") as f:
        f.write(b'{"id": "torn')  # a crash in the middle of a write
    t = trail(tmp_path, store)
    assert t.flush() == 1
    t.close()
    assert audit_problems(store) == []


def test_database_outage_delays_records_and_loses_none(tmp_path, pg_url, postgres_control):
    stop, start = postgres_control
    store = AuditStore(pg_url)
    store.migrate()
    t = trail(tmp_path, store)
    g = make_guard()
    g.audit = t
    for _ in range(5):
        g.call("care_locator", down)  # static fallback: five records
    assert t.flush() == 5
    stop()
    for _ in range(7):
        assert g.call("care_locator", down).tier == "static_fallback"  # requests unaffected
    with pytest.raises(AuditStoreError):
        t.flush()
    start()
    store.engine.dispose()  # drop connections the restart killed
    assert t.flush() == 7
    t.close()
    assert store.count() == 12 and audit_problems(store) == [] and g.audit_failures == 0
    store.dispose()


def test_verify_reports_an_altered_a_deleted_and_a_projected_row(tmp_path, store, capsys):
    t = trail(tmp_path, store)
    for i in range(4):
        t.append(circuit_transition(service="s", at=float(i), circuit="c", from_state="CLOSED",
                                    to_state="OPEN", reason=f"r{i}"))
    t.close()
    assert cli(["audit", "verify", "--database-url", store.url]) == 0
    assert "intact: 4 records" in capsys.readouterr().out
    with store.engine.begin() as conn:
        ids = [r.id for r in conn.execute(text("select id from audit_log order by seq"))]
        conn.execute(text("update circuit_transitions set to_state='CLOSED' where record_id=:i"),
                     {"i": ids[0]})
        conn.execute(text("update audit_log set service='evil' where id=:i"), {"i": ids[1]})
        conn.execute(text("delete from circuit_transitions where record_id=:i"), {"i": ids[2]})
        conn.execute(text("delete from audit_log where id=:i"), {"i": ids[2]})
    problems = {(p.record_id, p.problem) for p in audit_problems(store)}
    assert (ids[0], "circuit_transitions row differs from the ledger") in problems
    assert (ids[1], "content does not match its hash") in problems
    assert (None, "records 2..2 are missing") in problems
    assert cli(["audit", "verify", "--database-url", store.url]) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_concurrent_appends_share_syncs(tmp_path):
    async def main(spool):
        await asyncio.gather(*(spool.aappend(circuit_transition(
            service="s", at=float(i), circuit="c", from_state="A", to_state="B", reason="r"))
            for i in range(200)))

    with AuditSpool(tmp_path) as spool:
        asyncio.run(main(spool))
        assert spool.records == 200
        assert spool.syncs < 50  # group commit: 200 records in far fewer fsyncs


def test_async_guard_audits_without_blocking_the_loop(tmp_path, store):
    t = trail(tmp_path, store)
    g = make_guard(ManualClock())
    g.audit = t

    async def primary():
        raise ConnectionError("down")

    r = asyncio.run(g.acall("care_locator", primary))
    assert r.tier == "static_fallback"
    t.close()
    assert store.count() == 1


def test_spool_refuses_appends_after_close(tmp_path):
    from actors.stores.audit_spool import SpoolError

    s = AuditSpool(tmp_path)
    s.close()
    with pytest.raises(SpoolError, match="closed"):
        s.append(circuit_transition(service="s", at=1.0, circuit="c", from_state="A",
                                    to_state="B", reason="r"))


def test_files_are_private_to_the_owner(tmp_path):
    with AuditSpool(tmp_path) as s:
        s.append(circuit_transition(service="s", at=1.0, circuit="c", from_state="A",
                                    to_state="B", reason="r"))
        assert os.stat(s.current).st_mode & 0o077 == 0


def test_a_live_process_flushes_its_own_spool_and_no_one_else_does(tmp_path, store):
    mine, theirs = trail(tmp_path, store), trail(tmp_path, store)  # two writers, one spool dir
    theirs.append(circuit_transition(service="s", at=1.0, circuit="c", from_state="A",
                                     to_state="B", reason="theirs"))
    assert mine.flush() == 0  # the other writer is alive: its records are its own to send
    assert theirs.flush() == 1
    theirs.close()
    mine.close()
    assert store.count() == 1


def test_a_trail_without_a_key_refuses_identifiers(tmp_path, store):
    t = AuditTrail(tmp_path / "spool", store, None, flush_interval_s=0)
    with pytest.raises(ValueError, match="no pseudonym key"):
        t.pseudonymize("MRN-1")
    t.close()
