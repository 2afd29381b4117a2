"""``selfheal audit verify``: read the trail, its checkpoints and its spool, and judge them.

What is read, in this order, so that records landing during the check are never mistaken
for tampering: the checkpoint log files; the records still in the spool (durable, not yet
in SQL); then the database. A record anchored by a checkpoint was durable in the spool before
the checkpoint was written, so by the time the database is read it is either still in the
spool or already in SQL. Typed rows and their ledger records are read in one statement (a
writer inserts both in one transaction), and the ledger is streamed: a million records are
checked in constant memory. The database is opened read-only; nothing is ever created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Text, cast, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from healing.audit import AuditKind, AuditRecord, ChainBreak
from healing.audit_checkpoint import (
    Checkpoint,
    CheckpointError,
    LogCheck,
    TrailCheck,
    check_log,
    compare_copies,
)
from healing.errors import SelfHealError

from .audit_checkpoints import KeyFileError, PublicKeys, read_checkpoints
from .audit_spool import read_records
from .audit_sql import PROJECTIONS, AuditStore, AuditStoreError, audit_checkpoints, audit_log

__all__ = ["VerifyError", "VerifyReport", "verify_trail"]

_STREAM = 5_000


class VerifyError(SelfHealError):
    """The trail could not be checked (a bad URL, no database, an unreadable file)."""


@dataclass
class VerifyReport:
    records: int = 0
    writers: int = 0
    findings: list[ChainBreak] = field(default_factory=list)
    pending: int = 0  # records in the spool, not yet in SQL (checked all the same)
    checkpoints: dict[str, tuple[int, int, float, float]] = field(default_factory=dict)
    unanchored: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings


def verify_trail(url: str, *, checkpoint_logs: list[pathlib.Path],
                 public_keys: list[pathlib.Path], spool_dir: pathlib.Path | None = None,
                 missing_logs_ok: bool = False, missing_keys_ok: bool = True) -> VerifyReport:
    """Check the trail at ``url`` against the given checkpoint logs and public keys.

    Raises:
        VerifyError: it could not be checked; one line saying why.
    """
    _check_url(url)
    report = VerifyReport()
    file_entries = _read_logs(checkpoint_logs, missing_logs_ok)
    file_logs = {e.log for e in file_entries if isinstance(e, Checkpoint)}
    pending = _spool(spool_dir)
    report.pending = sum(len(v) for v in pending.values())  # less what SQL has, below

    try:
        store: AuditStore | None = AuditStore(url, read_only=True)
    except AuditStoreError as exc:
        if not file_entries and not pending:
            raise VerifyError(f"{exc}: nothing has been recorded there "
                              "(or this is the wrong place)") from None
        store = None  # the database is gone, but checkpoints say there was a trail
        report.notes.append(str(exc))
    db_entries: list[Checkpoint | CheckpointError] = []
    try:
        with _connect(store) as conn:
            tables = set(inspect(conn).get_table_names()) if conn is not None else set()
            if "audit_checkpoints" in tables:
                db_entries = _db_checkpoints(conn)
            keys = _keys(public_keys, bool(file_entries or db_entries), missing_keys_ok)
            files = check_log("the checkpoint log", file_entries, keys.signature_ok)
            database = check_log("the database", db_entries, keys.signature_ok,
                                 gaps_are_findings=False)
            report.findings += files.findings + database.findings
            # The logs are read first (so that every record a checkpoint anchors is, by the
            # time the spool and the database are read, in one of them), but a live writer
            # may append a checkpoint to its log and copy it to the database between that
            # read and the database's: compared with the first read, it was reported as "in
            # the database but not in the checkpoint log", a tampering finding (the chaos
            # suite's live verify, once). A checkpoint reaches the database only after its
            # log, so the copies are compared with the logs read again, after the database.
            again = _read_logs(checkpoint_logs, missing_logs_ok)
            logs_now = file_logs | {e.log for e in again if isinstance(e, Checkpoint)}
            report.findings += compare_copies(
                check_log("the checkpoint log", again, keys.signature_ok), database, logs_now)
            report.findings += _logs_unaccounted(checkpoint_logs, database, logs_now, report)
            anchors = {(cp.log, cp.n): cp for c in (database, files)
                       for per_log in c.valid.values() for cp in per_log.values()}
            check = TrailCheck(anchors.values())
            if "audit_log" in tables:
                report.findings += _orphans(conn)
                for record, raw_kind, problems in _merged(_ledger(conn), pending):
                    check.add(record, raw_kind)
                    report.findings += problems
                report.pending = _still_pending(report.pending, check.records, conn)
            elif not anchors and not pending:
                raise VerifyError(f"no audit tables in {_safe(url)}: nothing has been "
                                  "recorded there (or this is the wrong database)")
            else:
                for record, _, _ in _merged(iter(()), pending):
                    check.add(record)
                report.notes.append(f"{_safe(url)} holds no audit tables")
    except SQLAlchemyError as exc:
        raise VerifyError(f"cannot read the audit database {_safe(url)}: "
                          f"{_first_line(exc)}") from None
    finally:
        if store is not None:
            store.dispose()
    report.findings += check.finish()
    report.records, report.writers = check.records, check.writers
    report.unanchored = check.unanchored()
    for log, per_log in _by_log(anchors.values()).items():
        ns = sorted(per_log)
        report.checkpoints[log] = (ns[0], ns[-1], per_log[ns[0]].at, per_log[ns[-1]].at)
    return report


def _logs_unaccounted(paths: list[pathlib.Path], database: LogCheck, file_logs: set[str],
                      report: VerifyReport) -> list[ChainBreak]:
    """Checkpoint logs the database knows of but no file given covers. With a log file
    expected and gone, that is a finding (deleting the file and cutting the database copy
    short would otherwise hide a tail); with other files given (other machines' logs, say),
    a note: those logs were checked through their database copy only."""
    others = sorted(set(database.valid) - file_logs)
    if not others:
        return []
    names = ", ".join(log[:8] for log in others)
    gone = [p for p in paths if not p.exists()]
    if gone:
        return [ChainBreak("", -1, None, f"checkpoint log {gone[0]} is gone, but the database "
                                         f"holds checkpoints of log(s) {names}: the log was "
                                         "deleted, or give its copy with --checkpoint-log")]
    report.notes.append(f"checkpoint log(s) {names} checked through their database copy "
                        "only (give each machine's log with --checkpoint-log)")
    return []


def _read_logs(paths: list[pathlib.Path],
               missing_ok: bool) -> list[Checkpoint | CheckpointError]:
    entries: list[Checkpoint | CheckpointError] = []
    for path in paths:
        if missing_ok and not path.exists():
            continue
        try:
            entries += read_checkpoints(path)[0]
        except OSError as exc:
            raise VerifyError(f"{path}: checkpoint log cannot be read ({exc.strerror})") from None
    return entries


@contextlib.contextmanager
def _connect(store: AuditStore | None) -> Iterator[Any]:
    if store is None:
        yield None
        return
    with store.engine.connect() as conn:
        yield conn


def _still_pending(in_spool: int, judged: int, conn: Any) -> int:
    """Spool records not in SQL: everything judged beyond what the ledger holds."""
    ledger = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    return max(0, min(in_spool, judged - int(ledger)))


def _check_url(url: str) -> None:
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise VerifyError(f"database URL {url!r} is not a URL (like sqlite:///path/audit.db "
                          "or postgresql://host/db)") from None
    if backend not in ("sqlite", "postgresql"):
        raise VerifyError(f"database URL {_safe(url)} must be sqlite:// or postgresql://")


def _safe(url: str) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _first_line(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _keys(paths: list[pathlib.Path], needed: bool, missing_ok: bool) -> PublicKeys:
    present = [p for p in paths if p.exists() or not missing_ok]
    if needed and not present:
        names = ", ".join(str(p) for p in paths) or "none given"
        raise VerifyError(f"checkpoints found but no public key to check them ({names}); "
                          "give --public-key FILE")
    try:
        return PublicKeys.load(present)
    except KeyFileError as exc:
        raise VerifyError(str(exc)) from None


def _spool(spool_dir: pathlib.Path | None) -> dict[str, dict[int, AuditRecord]]:
    """Records still in the spool, by writer and seq (read-only: no lock is touched)."""
    out: dict[str, dict[int, AuditRecord]] = {}
    if spool_dir is None or not spool_dir.is_dir():
        return out
    for path in sorted(spool_dir.glob("*.log")):
        try:
            records, _ = read_records(path)
        except (OSError, ValueError, KeyError):
            continue  # the spool is a staging area; what matters reaches SQL
        for r in records:
            out.setdefault(r.writer, {})[r.seq] = r
    return out


def _db_checkpoints(conn: Any) -> list[Checkpoint | CheckpointError]:
    t = audit_checkpoints
    out: list[Checkpoint | CheckpointError] = []
    for row in conn.execute(select(t).order_by(t.c.log, t.c.n)):
        try:
            out.append(Checkpoint.from_json(json.dumps(dict(row._mapping))))
        except CheckpointError as exc:
            out.append(exc)
    return out


def _by_log(cps: Any) -> dict[str, dict[int, Checkpoint]]:
    out: dict[str, dict[int, Checkpoint]] = {}
    for cp in cps:
        out.setdefault(cp.log, {})[cp.n] = cp
    return out


def _text(col: Any) -> Any:
    """JSON columns are read as text and parsed here, so a mangled value is a finding."""
    return cast(col, Text) if isinstance(col.type, JSON) else col


def _orphans(conn: Any) -> list[ChainBreak]:
    out = []
    for table, _ in PROJECTIONS.values():
        rows = conn.execute(select(table.c.record_id).where(
            ~select(audit_log.c.id).where(audit_log.c.id == table.c.record_id).exists()))
        out += [ChainBreak("", -1, r.record_id, f"{table.name} row has no ledger record")
                for r in rows]
    return out


_Row = tuple[AuditRecord, str | None, list[ChainBreak]]


@dataclasses.dataclass(frozen=True)
class _Typed:
    """Where one typed table's columns sit in a joined row, and which hold JSON."""

    kind: AuditKind
    name: str
    project: Callable[[AuditRecord], dict[str, Any]]
    columns: tuple[tuple[str, int, bool], ...]  # (name, position, is JSON)
    record_id: int  # position of its record_id


def _ledger(conn: Any) -> Iterator[_Row]:
    """Each ledger record, with what is wrong with it and with its typed row, streamed."""
    cols = [_text(c).label(c.name) for c in audit_log.c]
    joined = audit_log
    typed = []
    for kind, (table, project) in PROJECTIONS.items():
        at = len(cols)
        cols += [_text(c).label(f"{table.name}__{c.name}") for c in table.c]
        joined = joined.outerjoin(table, table.c.record_id == audit_log.c.id)
        columns = tuple((c.name, at + k, isinstance(c.type, JSON))
                        for k, c in enumerate(table.c))
        typed.append(_Typed(kind, table.name, project, columns,
                            at + list(table.c.keys()).index("record_id")))
    q = select(*cols).select_from(joined).order_by(audit_log.c.writer, audit_log.c.seq)
    result = conn.execution_options(stream_results=True, yield_per=_STREAM).execute(q)
    for row in result:
        yield _judge(row, typed)


def _judge(row: Any, typed: list[_Typed]) -> _Row:
    rid, writer, seq, raw, at, service, text_data, prev_hash, hash_ = row[:9]  # audit_log.c
    problems: list[ChainBreak] = []
    try:
        data = json.loads(text_data)
    except (TypeError, ValueError):
        data = text_data  # kept as text: its hash cannot match, which is reported
    raw_kind = None
    try:
        kind = AuditKind(raw)
    except ValueError:
        kind, raw_kind = AuditKind.OPERATOR_ACTION, str(raw)  # placeholder, see raw_kind
    r = AuditRecord(rid, kind, at, service, data, writer, seq, prev_hash, hash_)
    for t in typed:
        mine = t.kind is kind and raw_kind is None
        if row[t.record_id] is None:
            if mine:
                problems.append(_at(r, f"{t.name} row is missing"))
            continue
        if not mine:
            problems.append(_at(r, f"{t.name} row has no ledger record of its kind"))
            continue
        stored = {name: _json(row[i]) if is_json else row[i] for name, i, is_json in t.columns}
        try:
            expected = t.project(r)
        except (KeyError, TypeError, AttributeError):
            problems.append(_at(r, f"its data no longer has the shape of a {kind.value}"))
            continue
        if _normalise(stored) != _normalise(expected):
            problems.append(_at(r, f"{t.name} row differs from the ledger"))
    return r, raw_kind, problems


def _json(v: Any) -> Any:
    if v is None:
        return None
    try:
        return json.loads(v)
    except ValueError:
        return ("not JSON", v)


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in row.items()}


def _at(r: AuditRecord, problem: str) -> ChainBreak:
    return ChainBreak(r.writer, r.seq, r.id, problem)


def _merged(rows: Iterator[_Row],
            pending: dict[str, dict[int, AuditRecord]]) -> Iterator[_Row]:
    """The database's records with the spool's not yet flushed, per writer in seq order."""
    current: str | None = None
    queue: deque[AuditRecord] = deque()
    for row in rows:
        r = row[0]
        if r.writer != current:
            yield from ((p, None, []) for p in queue)
            current = r.writer
            queue = deque(sorted(pending.pop(r.writer, {}).values(), key=lambda x: x.seq))
        while queue and queue[0].seq < r.seq:
            yield queue.popleft(), None, []
        if queue and queue[0].seq == r.seq:
            queue.popleft()  # flushed already: the database's copy is the one judged
        yield row
    yield from ((p, None, []) for p in queue)
    for writer in sorted(pending):
        yield from ((p, None, []) for p in sorted(pending[writer].values(),
                                                  key=lambda x: x.seq))
