"""The audit trail: ledger and typed projections.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ref() -> sa.Column:
    return sa.Column("record_id", sa.String(32), sa.ForeignKey("audit_log.id"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("writer", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("writer", "seq", name="uq_audit_log_writer_seq"),
    )
    for col in ("kind", "at", "service"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])
    op.create_table(
        "failure_events", _ref(),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200)),
        sa.Column("operation_type", sa.String(32), nullable=False),
        sa.Column("criticality", sa.String(32), nullable=False),
        sa.Column("patient_pseudonym", sa.String(64)),
        sa.Column("clinician_pseudonym", sa.String(64)),
        sa.Column("error_kind", sa.String(200), nullable=False),
        sa.Column("recovery_actions", sa.JSON, nullable=False),
        sa.Column("served_by", sa.String(200)),
        sa.Column("integrity_performed", sa.Boolean, nullable=False),
        sa.Column("integrity_passed", sa.Boolean),
        sa.Column("integrity_validator", sa.String(200)),
        sa.Column("clinician_notified", sa.Boolean, nullable=False),
        sa.Column("patient_impact", sa.String(32), nullable=False),
    )
    op.create_table(
        "recovery_steps", _ref(),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("validation", sa.JSON),
    )
    op.create_table(
        "circuit_transitions", _ref(),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("circuit", sa.String(400), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("failure_rate", sa.Float),
        sa.Column("slow_call_rate", sa.Float),
    )
    op.create_table(
        "operator_actions", _ref(),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("operator_pseudonym", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    for table in ("failure_events", "recovery_steps", "circuit_transitions", "operator_actions"):
        op.create_index(f"ix_{table}_at", table, ["at"])
        if table != "operator_actions":
            op.create_index(f"ix_{table}_service", table, ["service"])
    op.create_index("ix_recovery_steps_workflow_id", "recovery_steps", ["workflow_id"])


def downgrade() -> None:
    for table in ("operator_actions", "circuit_transitions", "recovery_steps", "failure_events",
                  "audit_log"):
        op.drop_table(table)
