"""Tampering with a real audit trail, on SQLite and PostgreSQL: every attack is reported.

The attacker here can write the database (any row of any table) but not the signing key or
the checkpoint log file; some tests also let them edit the log file, which the database copy
of the checkpoints then exposes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from actors.stores.audit_checkpoints import CheckpointLog, SigningKey, public_path
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from actors.stores.audit_verify import VerifyError, verify_trail
from healing.audit import chain, circuit_transition
from healing.audit_checkpoint import Checkpoint
from serve.cli import main as cli
from tests.actors.crashed_writer import crashed_writer

KEY = b"k" * 32


class Trail:
    """A written trail: two closed writers and their checkpoints, and how to check it."""

    def __init__(self, tmp_path, store, records=(5, 4)):
        self.tmp, self.store = tmp_path, store
        self.key_file = tmp_path / "keys" / "audit-signing.key"
        self.log_file = tmp_path / "audit-checkpoints.jsonl"
        key = SigningKey.load_or_create(self.key_file)
        self.writers = []
        for n in records:
            t = AuditTrail(tmp_path / "spool", store, KEY, flush_interval_s=0,
                           checkpoints=CheckpointLog(self.log_file, key),
                           checkpoint_interval_s=None)
            for i in range(n):
                t.append(transition(i))
                if i == 1:
                    assert t.spool.checkpoint() is not None  # one in the middle too
            self.writers.append(t.spool.writer)
            t.close()  # the closing checkpoint, then the last flush (records and checkpoints)

    def report(self, logs=None, keys=None):
        return verify_trail(self.store.url, checkpoint_logs=logs or [self.log_file],
                            public_keys=keys or [public_path(self.key_file)])

    def problems(self, **kw):
        return [p.problem for p in self.report(**kw).findings]

    def cli(self, key=None):
        return cli(["audit", "verify", "--database-url", self.store.url, "--checkpoint-log",
                    str(self.log_file), "--public-key", str(key or public_path(self.key_file))])

    def sql(self, statement, **params):
        with self.store.engine.begin() as conn:
            return conn.execute(text(statement), params)

    def rows(self, writer):
        with self.store.engine.connect() as conn:
            return list(conn.execute(text(
                "select id, seq from audit_log where writer=:w order by seq"), {"w": writer}))

    def delete(self, record_id):
        self.sql("delete from circuit_transitions where record_id=:i", i=record_id)
        self.sql("delete from audit_log where id=:i", i=record_id)


def transition(i):
    return circuit_transition(service="svc", at=1000.0 + i, circuit="c", from_state="CLOSED",
                              to_state="OPEN", reason=f"r{i}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'audit.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = AuditStore(url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def trail(tmp_path, store):
    return Trail(tmp_path, store)


def test_an_untouched_trail_is_intact_and_fully_anchored(trail, capsys):
    r = trail.report()
    assert r.intact and r.records == 9 and r.writers == 2 and r.unanchored == {}
    (first, last, _, _), = r.checkpoints.values()
    assert (first, last) == (0, 3)  # two per writer: one mid-way, one at close
    assert trail.cli() == 0
    out = capsys.readouterr().out
    assert "intact: 9 records from 2 writers" in out and "checkpoints 0..3" in out
    assert "not yet anchored: none" in out


def test_a_changed_record(trail, capsys):
    rid = trail.rows(trail.writers[0])[2].id
    trail.sql("update audit_log set service='evil' where id=:i", i=rid)
    assert "content does not match its hash" in trail.problems()
    assert trail.cli() == 1
    assert f"seq 2 record {rid}: content does not match its hash" in capsys.readouterr().out


def test_a_record_deleted_in_the_middle(trail):
    trail.delete(trail.rows(trail.writers[0])[2].id)
    assert "records 2..2 are missing" in trail.problems()


def test_records_deleted_at_the_end_of_a_chain(trail, capsys):
    for row in trail.rows(trail.writers[0])[3:]:
        trail.delete(row.id)
    problems = trail.problems()
    assert any(p.startswith("records 3..4 are missing (anchored by checkpoint") for p in problems)
    assert trail.cli() == 1
    assert f"writer {trail.writers[0][:12]} seq 3" in capsys.readouterr().out


def test_a_whole_writers_chain_deleted(trail):
    for row in trail.rows(trail.writers[1]):
        trail.delete(row.id)
    problems = trail.problems()
    assert any(p.startswith("all 4 records of this writer are missing") for p in problems)


def test_every_record_deleted(trail, capsys):
    for table in ("circuit_transitions", "audit_log", "audit_checkpoints"):
        trail.sql(f"delete from {table}")
    r = trail.report()
    assert r.records == 0 and not r.intact
    assert sum(p.problem.startswith("all ") for p in r.findings) == 2
    assert trail.cli() == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_the_database_file_removed_with_everything_in_it(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    t = Trail(tmp_path, store)
    store.dispose()
    (tmp_path / "audit.db").unlink()
    assert t.cli() == 1  # not "could not check": the checkpoints say there was a trail


def test_records_reordered(trail):
    a, b = trail.rows(trail.writers[0])[1:3]
    trail.sql("update audit_log set seq=-1 where id=:i", i=a.id)
    trail.sql("update audit_log set seq=1 where id=:i", i=b.id)
    trail.sql("update audit_log set seq=2 where id=:i", i=a.id)
    assert "content does not match its hash" in trail.problems()


def test_a_record_inserted_after_its_writer_closed(trail):
    """Chained properly onto the head, as an attacker with plain SHA-256 can."""
    writer = trail.writers[0]
    head = next(r for r in trail.store.records() if r.writer == writer and r.seq == 4)
    forged = chain(transition(99), writer, 5, head.hash)
    trail.store.insert([forged])
    problems = trail.problems()
    assert any("written after its writer closed" in p for p in problems)


def test_a_chain_recomputed_without_the_key(trail, capsys):
    writer = trail.writers[0]
    records = [r for r in trail.store.records() if r.writer == writer]
    prev = records[1].hash
    for r in records[2:]:  # change seq 2, then rewrite every hash after it
        body = dataclasses.replace(r, service="evil" if r.seq == 2 else r.service)
        fixed = chain(body, writer, r.seq, prev)
        trail.sql("update audit_log set service=:s, prev_hash=:p, hash=:h where id=:i",
                  s=fixed.service, p=fixed.prev_hash, h=fixed.hash, i=r.id)
        prev = fixed.hash
    problems = trail.problems()
    assert "content does not match its hash" not in problems  # the chain itself is whole
    assert any("was rewritten after it was anchored" in p for p in problems)
    assert trail.cli() == 1
    assert f"seq 4 record {records[4].id}: does not match checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("attack", ["deleted", "changed", "added"])
def test_typed_rows(trail, attack):
    rid = trail.rows(trail.writers[0])[1].id
    if attack == "deleted":
        trail.sql("delete from circuit_transitions where record_id=:i", i=rid)
        expected = "circuit_transitions row is missing"
    elif attack == "changed":
        trail.sql("update circuit_transitions set to_state='CLOSED' where record_id=:i", i=rid)
        expected = "circuit_transitions row differs from the ledger"
    else:
        trail.sql("insert into operator_actions (record_id, at, service, operator_pseudonym, "
                  "action, details) values (:i, 1.0, 'svc', 'x', 'reset', '{}')", i=rid)
        expected = "operator_actions row has no ledger record of its kind"
    assert expected in trail.problems()


def test_a_typed_table_emptied(trail):
    trail.sql("delete from circuit_transitions")
    assert trail.problems().count("circuit_transitions row is missing") == 9


def test_a_checkpoint_deleted_from_the_database(trail):
    trail.sql("delete from audit_checkpoints where n=1")
    assert any("is missing from the database" in p for p in trail.problems())


def test_a_checkpoint_changed_in_the_database(trail):
    trail.sql("update audit_checkpoints set seq=0 where n=1")
    problems = trail.problems()
    assert any("signature does not verify" in p for p in problems)


def test_a_checkpoint_forged_with_another_key(trail, tmp_path):
    other = SigningKey.load_or_create(tmp_path / "attacker.key")
    log = CheckpointLog(tmp_path / "attacker.jsonl", other)
    forged = log.append(trail.writers[0], 1, "f" * 64, closed=True)
    row = dataclasses.asdict(dataclasses.replace(forged, n=99))
    trail.sql("insert into audit_checkpoints (log, n, prev, at, writer, seq, hash, count, "
              "closed, key, sig) values (:log, :n, :prev, :at, :writer, :seq, :hash, :count, "
              ":closed, :key, :sig)", **row)
    assert any("signature does not verify" in p for p in trail.problems())


def test_a_checkpoint_removed_from_the_middle_of_the_log_file(trail):
    lines = trail.log_file.read_text().splitlines(keepends=True)
    trail.log_file.write_text("".join(lines[:1] + lines[2:]))
    problems = trail.problems()
    assert any("checkpoints" in p and "#1..1 are missing from the checkpoint log" in p
               for p in problems)


def test_the_log_file_cut_short(trail):
    lines = trail.log_file.read_text().splitlines(keepends=True)
    trail.log_file.write_text("".join(lines[:2]))
    problems = trail.problems()
    assert any("is in the database but not in the checkpoint log" in p for p in problems)


def test_a_line_of_the_log_file_changed(trail):
    lines = trail.log_file.read_text().splitlines(keepends=True)
    cp = json.loads(lines[0])
    cp["seq"] = 0
    lines[0] = json.dumps(cp) + "\n"
    trail.log_file.write_text("".join(lines))
    assert any("signature does not verify" in p for p in trail.problems())


def test_an_unknown_record_kind_is_reported_not_a_crash(trail, capsys):
    rid = trail.rows(trail.writers[0])[0].id
    trail.sql("update audit_log set kind='mystery' where id=:i", i=rid)
    problems = trail.problems()
    assert "unknown record kind 'mystery'" in problems
    assert trail.cli() == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_record_whose_data_is_not_json(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    t = Trail(tmp_path, store)
    rid = t.rows(t.writers[0])[0].id
    t.sql("update audit_log set data='{not json' where id=:i", i=rid)
    assert "content does not match its hash" in t.problems()


def test_an_empty_trail_is_intact_with_zero_records(tmp_path, store, capsys):
    assert cli(["audit", "verify", "--database-url", store.url]) == 0
    assert "intact: 0 records" in capsys.readouterr().out


def test_checkpoints_without_a_public_key_cannot_be_checked(trail, tmp_path, capsys):
    assert trail.cli(key=tmp_path / "nowhere.pub") == 2
    assert "nowhere.pub: cannot be read" in capsys.readouterr().err
    with pytest.raises(VerifyError, match="no public key"):
        verify_trail(trail.store.url, checkpoint_logs=[trail.log_file], public_keys=[])


def test_records_still_in_the_spool_are_pending_not_missing(tmp_path, store):
    """A head anchored before the flusher ran: the records are in the spool, not lost."""
    key = SigningKey.load_or_create(tmp_path / "k.key")
    log = CheckpointLog(tmp_path / "cp.jsonl", key)
    t = AuditTrail(tmp_path / "spool", store, KEY, flush_interval_s=0, checkpoints=log,
                   checkpoint_interval_s=None)
    for i in range(3):
        t.append(transition(i))
    t.flush()
    t.append(transition(3))
    assert t.spool.checkpoint().seq == 3  # anchored; record 3 not yet in SQL
    pub = public_path(tmp_path / "k.key")
    r = verify_trail(store.url, checkpoint_logs=[log.path], public_keys=[pub],
                     spool_dir=tmp_path / "spool")
    assert r.intact and r.records == 4 and r.pending == 1
    without_spool = verify_trail(store.url, checkpoint_logs=[log.path], public_keys=[pub])
    assert [p.problem.split(" (")[0] for p in without_spool.findings] == \
        ["records 3..3 are missing"]
    t.close()


def test_a_writer_that_died_is_anchored_by_whoever_flushes_it(tmp_path, store):
    spool = tmp_path / "spool"
    dead = crashed_writer(spool, 3)  # no chance to close or checkpoint
    key = SigningKey.load_or_create(tmp_path / "k.key")
    log = CheckpointLog(tmp_path / "cp.jsonl", key)
    t = AuditTrail(spool, store, KEY, flush_interval_s=0, checkpoints=log,
                   checkpoint_interval_s=None)
    assert t.flush() == 3
    t.close()
    r = verify_trail(store.url, checkpoint_logs=[log.path],
                     public_keys=[public_path(tmp_path / "k.key")])
    assert r.intact and r.records == 3 and r.unanchored == {}
    anchors = [Checkpoint.from_json(x) for x in log.path.read_text().splitlines()]
    assert [(c.writer, c.seq, c.closed) for c in anchors] == [(dead, 2, True)]


# -- random tampering --------------------------------------------------------------------

EDITS = st.lists(st.tuples(st.sampled_from(["delete", "service", "at", "data", "typed",
                                            "delete_typed", "seq", "hash"]),
                           st.integers(0, 8)), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    d = tmp_path_factory.mktemp("pristine")
    store = AuditStore(f"sqlite:///{d / 'audit.db'}")
    store.migrate()
    t = Trail(d, store)
    store.dispose()
    return d, t


@example(edits=[("hash", 0), ("hash", 0)])  # once a no-op: see "hash" below
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_any_random_tampering_is_found(pristine, tmp_path_factory, edits):
    src, t0 = pristine
    d = tmp_path_factory.mktemp("copy")
    shutil.copy(src / "audit.db", d / "audit.db")
    store = AuditStore(f"sqlite:///{d / 'audit.db'}")
    with store.engine.begin() as conn:
        ids = [r.id for r in conn.execute(text("select id from audit_log order by writer, seq"))]
        for what, i in edits:
            rid = ids[i]
            stmt = {
                "delete": "delete from audit_log where id=:i",
                "service": "update audit_log set service=service || 'x' where id=:i",
                "at": "update audit_log set at=at+1 where id=:i",
                "data": "update audit_log set data=json_set(data, '$.reason', 'x') where id=:i",
                "typed": "update circuit_transitions set reason=reason || 'x' "
                         "where record_id=:i",
                "delete_typed": "delete from circuit_transitions where record_id=:i",
                "seq": "update audit_log set seq=seq+100 where id=:i",
                # 'x' is no hex digit: changed however often it is applied ('0' was a no-op
                # for a hash that began with 0, and a flip done twice undoes itself)
                "hash": "update audit_log set hash='x' || substr(hash, 2) where id=:i",
            }[what]
            if what == "delete":
                conn.execute(text("delete from circuit_transitions where record_id=:i"),
                             {"i": rid})
            conn.execute(text(stmt), {"i": rid})
    r = verify_trail(store.url, checkpoint_logs=[t0.log_file],
                     public_keys=[public_path(t0.key_file)])
    store.dispose()
    assert not r.intact, edits


def test_the_log_file_deleted_and_the_database_copy_cut_short(trail):
    """Both copies cut at once would hide the tail; a log that should be there and is not
    is reported, naming the logs the database still knows."""
    writer = trail.writers[1]
    for row in trail.rows(writer)[2:]:
        trail.delete(row.id)
    trail.sql("delete from audit_checkpoints where writer=:w and closed", w=writer)
    trail.log_file.unlink()
    r = verify_trail(trail.store.url, checkpoint_logs=[trail.log_file],
                     public_keys=[public_path(trail.key_file)], missing_logs_ok=True)
    assert any("is gone, but the database holds checkpoints" in p.problem for p in r.findings)


def test_a_log_known_only_to_the_database_is_a_note_when_other_logs_are_given(trail,
                                                                              tmp_path):
    head = [r for r in trail.store.records() if r.writer == trail.writers[0]][-1]
    other = tmp_path / "other-machine.jsonl"
    CheckpointLog(other, SigningKey.load(trail.key_file)).append(head.writer, head.seq,
                                                                  head.hash, True)
    r = verify_trail(trail.store.url, checkpoint_logs=[other],
                     public_keys=[public_path(trail.key_file)])
    assert r.intact  # the database's copy of this machine's log still checks every chain
    assert any("checked through their database copy only" in n for n in r.notes)


def test_a_checkpoint_written_while_verify_reads_is_no_finding(trail, monkeypatch):
    """A live writer appends a checkpoint to its log, then copies it to the database. When
    that happens between verify's two reads of the checkpoints, whichever it reads first,
    the trail is intact: read the log before the database, it was reported as "in the
    database but not in the checkpoint log" (the chaos suite's live verify, once)."""
    from actors.stores import audit_verify

    live = AuditTrail(trail.tmp / "spool", trail.store, KEY, flush_interval_s=0,
                      checkpoints=CheckpointLog(trail.log_file,
                                                SigningKey.load_or_create(trail.key_file)),
                      checkpoint_interval_s=None)
    live.append(transition(0))
    written = []

    def then_a_writer_checkpoints(read):
        def wrapped(*args, **kwargs):
            out = read(*args, **kwargs)
            if not written:  # after verify's first read of either copy
                live.append(transition(1))
                written.append(live.spool.checkpoint())
                live.flush()  # the checkpoint is in the log, then in the database
            return out
        return wrapped

    monkeypatch.setattr(audit_verify, "_read_logs",
                        then_a_writer_checkpoints(audit_verify._read_logs))
    monkeypatch.setattr(audit_verify, "_db_checkpoints",
                        then_a_writer_checkpoints(audit_verify._db_checkpoints))
    try:
        r = trail.report()
        assert written and written[0] is not None
        assert r.intact, [p.problem for p in r.findings]
        # and the next verify, with nothing written between, sees the checkpoint in both
        monkeypatch.undo()
        (_, last, _, _), = trail.report().checkpoints.values()
        assert last == 4  # the two writers' four, then the live one's
    finally:
        live.close()
