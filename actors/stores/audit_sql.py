"""The SQL audit trail (seed 5.2): an append-only, hash-chained ledger and typed views of it.

``audit_log`` holds every record exactly as the spool chained it; inserting is idempotent by
record id, so replaying a spool after a crash or an outage writes each record exactly once.
Four typed tables — failure events, recovery steps, circuit transitions, operator actions —
project the ledger's JSON into columns for queries and the dashboard; ``audit_checkpoints``
holds a copy of the signed checkpoint log. :mod:`actors.stores.audit_verify` checks them all.

SQLite (WAL) by default, PostgreSQL when the URL says so; the schema is made by Alembic.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from healing.audit import AuditKind, AuditRecord
from healing.audit_checkpoint import Checkpoint
from healing.errors import SelfHealError

__all__ = ["PROJECTIONS", "AuditStore", "AuditStoreError", "api_tokens", "audit_checkpoints",
           "audit_log", "metadata"]

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")

metadata = MetaData()

audit_log = Table(
    "audit_log", metadata,
    Column("id", String(32), primary_key=True),
    Column("writer", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(32), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
    Column("service", String(200), nullable=False, index=True),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("writer", "seq", name="uq_audit_log_writer_seq"),
)


def _ref() -> Column[str]:
    return Column("record_id", String(32), ForeignKey("audit_log.id"), primary_key=True)


failure_events = Table(
    "failure_events", metadata, _ref(),
    Column("at", Float, nullable=False, index=True),
    Column("service", String(200), nullable=False, index=True),
    Column("provider", String(200)),
    Column("operation_type", String(32), nullable=False),
    Column("criticality", String(32), nullable=False),
    Column("patient_pseudonym", String(64)),
    Column("clinician_pseudonym", String(64)),
    Column("error_kind", String(200), nullable=False),
    Column("recovery_actions", JSON, nullable=False),
    Column("served_by", String(200)),
    Column("integrity_performed", Boolean, nullable=False),
    Column("integrity_passed", Boolean),
    Column("integrity_validator", String(200)),
    Column("clinician_notified", Boolean, nullable=False),
    Column("patient_impact", String(32), nullable=False),
)

recovery_steps = Table(
    "recovery_steps", metadata, _ref(),
    Column("at", Float, nullable=False, index=True),
    Column("service", String(200), nullable=False, index=True),
    Column("workflow_id", String(64), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("action", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("result", JSON),
    Column("duration_s", Float, nullable=False),
    Column("validation", JSON),
)

circuit_transitions = Table(
    "circuit_transitions", metadata, _ref(),
    Column("at", Float, nullable=False, index=True),
    Column("service", String(200), nullable=False, index=True),
    Column("circuit", String(400), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("failure_rate", Float),
    Column("slow_call_rate", Float),
)

# Signed checkpoints, copied here from the checkpoint log by the flusher: the two copies check
# each other (healing.audit_checkpoint.compare_copies).
audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("log", String(32), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("prev", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("writer", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("key", String(32), nullable=False),
    Column("sig", String(200), nullable=False),
)

# The control API's bearer tokens: hashes only (actors.stores.api_tokens).
api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", Float),
)

operator_actions = Table(
    "operator_actions", metadata, _ref(),
    Column("at", Float, nullable=False, index=True),
    Column("service", String(200), nullable=False),
    Column("operator_pseudonym", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("details", JSON, nullable=False),
)


def _failure_row(r: AuditRecord) -> dict[str, Any]:
    d, c = r.data, r.data["clinical_context"]
    integ = d.get("integrity_validation") or {}
    return {"record_id": r.id, "at": r.at, "service": r.service, "provider": d.get("provider"),
            "operation_type": c["operation_type"], "criticality": c["criticality"],
            "patient_pseudonym": c.get("patient"), "clinician_pseudonym": c.get("clinician"),
            "error_kind": d["error_kind"], "recovery_actions": d["recovery_actions"],
            "served_by": d.get("served_by"),
            "integrity_performed": bool(integ.get("performed")),
            "integrity_passed": integ.get("passed"), "integrity_validator": integ.get("validator"),
            "clinician_notified": bool(d["clinician_notified"]),
            "patient_impact": d["patient_impact"]}


def _step_row(r: AuditRecord) -> dict[str, Any]:
    d = r.data
    return {"record_id": r.id, "at": r.at, "service": r.service,
            **{k: d[k] for k in ("workflow_id", "step", "action", "status", "inputs", "result",
                                 "duration_s", "validation")}}


def _transition_row(r: AuditRecord) -> dict[str, Any]:
    d = r.data
    return {"record_id": r.id, "at": r.at, "service": r.service,
            **{k: d[k] for k in ("circuit", "from_state", "to_state", "reason", "failure_rate",
                                 "slow_call_rate")}}


def _operator_row(r: AuditRecord) -> dict[str, Any]:
    d = r.data
    return {"record_id": r.id, "at": r.at, "service": r.service,
            "operator_pseudonym": d["operator"], "action": d["action"], "details": d["details"]}


PROJECTIONS: dict[AuditKind, tuple[Table, Any]] = {
    AuditKind.FAILURE_EVENT: (failure_events, _failure_row),
    AuditKind.RECOVERY_STEP: (recovery_steps, _step_row),
    AuditKind.CIRCUIT_TRANSITION: (circuit_transitions, _transition_row),
    AuditKind.OPERATOR_ACTION: (operator_actions, _operator_row),
}


class AuditStoreError(SelfHealError):
    """The audit database could not be reached or refused a write."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the flusher
    cur.execute("PRAGMA synchronous=NORMAL")  # durability comes from the spool's fsync
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class AuditStore:
    """The audit tables in one database.

    Args:
        url: a SQLAlchemy URL; ``postgresql://`` URLs use the psycopg 3 driver.
        read_only: only read (the verifier): a SQLite file is opened read-only and never
            created, and a missing one is an error.
    """

    def __init__(self, url: str, read_only: bool = False) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        engine_url = url
        if url.startswith("sqlite:///"):
            path = pathlib.Path(url.removeprefix("sqlite:///"))
            if read_only:
                if not path.is_file():
                    raise AuditStoreError(f"no audit database at {path}")
                engine_url = f"sqlite:///file:{path}?mode=ro&uri=true"
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(engine_url, pool_pre_ping=True)
        except (SQLAlchemyError, ValueError) as exc:  # a URL SQLAlchemy cannot use
            raise AuditStoreError(f"cannot use database URL {url!r}: {exc}") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite" and not read_only:
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command  # noqa: PLC0415 - only needed at start-up
        from alembic.config import Config  # noqa: PLC0415

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot migrate the audit database: {exc}") from exc

    def insert(self, records: Sequence[AuditRecord]) -> None:
        """Store ``records`` in one transaction; records already stored are left as they are."""
        if not records:
            return
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        by_kind: dict[AuditKind, list[dict[str, Any]]] = {}
        for r in records:
            by_kind.setdefault(r.kind, []).append(PROJECTIONS[r.kind][1](r))
        ledger = [{"id": r.id, "writer": r.writer, "seq": r.seq, "kind": r.kind.value,
                   "at": r.at, "service": r.service, "data": r.data, "prev_hash": r.prev_hash,
                   "hash": r.hash} for r in records]
        try:
            with self.engine.begin() as conn:
                conn.execute(ins(audit_log).on_conflict_do_nothing(index_elements=["id"]), ledger)
                for kind, rows in by_kind.items():
                    table = PROJECTIONS[kind][0]
                    conn.execute(ins(table).on_conflict_do_nothing(
                        index_elements=["record_id"]), rows)
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"audit insert of {len(records)} records failed: "
                                  f"{type(exc).__name__}") from exc

    def records(self) -> Iterator[AuditRecord]:
        """Every ledger record, by writer and sequence."""
        with self.engine.connect() as conn:
            yield from _ledger(conn)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    def count_by_kind(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.kind, func.count()).group_by(audit_log.c.kind))
            return {kind: int(n) for kind, n in rows}

    def insert_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Copy checkpoints from the log; ones already copied are left as they are."""
        if not checkpoints:
            return
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        rows = [dataclasses.asdict(cp) for cp in checkpoints]
        try:
            with self.engine.begin() as conn:
                conn.execute(ins(audit_checkpoints).on_conflict_do_nothing(
                    index_elements=["log", "n"]), rows)
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"copying {len(rows)} audit checkpoints failed: "
                                  f"{type(exc).__name__}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _ledger(conn: Any) -> Iterator[AuditRecord]:
    rows = conn.execute(select(audit_log).order_by(audit_log.c.writer, audit_log.c.seq))
    for row in rows:
        yield AuditRecord(row.id, AuditKind(row.kind), row.at, row.service, row.data,
                          row.writer, row.seq, row.prev_hash, row.hash)
