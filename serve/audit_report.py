"""What ``selfheal audit verify`` prints: the verdict, each problem with where it is, and how
far the trail is covered by signed checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime

from actors.stores.audit_verify import VerifyReport

__all__ = ["format_report"]


def _when(at: float | None) -> str:
    if at is None:
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_report(r: VerifyReport) -> str:
    lines = []
    writers = f"{r.writers} writer{'s' if r.writers != 1 else ''}"
    if r.intact:
        lines.append(f"audit trail intact: {r.records} records from {writers}; every chain, "
                     "typed row and checkpoint verified")
    else:
        lines.append(f"audit trail TAMPERED or incomplete: {len(r.findings)} problem(s) in "
                     f"{r.records} records from {writers}")
        for p in r.findings:
            where = []
            if p.writer:
                where.append(f"writer {p.writer[:12]}")
            if p.seq >= 0 and p.writer:
                where.append(f"seq {p.seq}")
            if p.record_id:
                where.append(f"record {p.record_id}")
            if p.checkpoint and p.checkpoint not in p.problem:
                where.append(f"checkpoint {p.checkpoint}")
            lines.append(f"  {' '.join(where) or 'trail'}: {p.problem}")
    if r.checkpoints:
        for log, (first, last, t0, t1) in sorted(r.checkpoints.items()):
            lines.append(f"  covered: checkpoint log {log[:8]}, checkpoints {first}..{last} "
                         f"({_when(t0)} to {_when(t1)})")
    else:
        lines.append("  covered: no checkpoints yet; only the hash chains were checked")
    if r.unanchored:
        n = sum(c for c, _ in r.unanchored.values())
        oldest = min((t for _, t in r.unanchored.values() if t is not None), default=None)
        lines.append(f"  not yet anchored: {n} record(s) of {len(r.unanchored)} writer(s) after "
                     f"their last checkpoint, the oldest written {_when(oldest)}")
    else:
        lines.append("  not yet anchored: none")
    if r.pending:
        lines.append(f"  {r.pending} record(s) still in the spool, not yet in the database "
                     "(checked there)")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
