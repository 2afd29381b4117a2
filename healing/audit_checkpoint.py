"""Signed checkpoints over the audit chains, and the check that finds what was hidden.

A per-writer hash chain shows a changed record, a gap, a reordering. It cannot show its own
tail cut off, a whole writer's chain removed, or a chain rewritten from the changed record on
(plain SHA-256 needs no key). Checkpoints close those holes, as CloudTrail's digest files and
Certificate Transparency's signed tree heads do: at an interval, and when a writer stops, the
writer's head (last seq, last hash, how many records) is written into an append-only
checkpoint log, each checkpoint naming the digest of the one before it and signed. Whoever
can write the audit database but not the signing key can then no longer hide a deletion or a
rewrite of anything a checkpoint anchors.

This module is pure: signing and verifying signatures are given as functions, so the core
stays free of any crypto library. :class:`TrailCheck` takes records one at a time (per
writer, in seq order) and keeps only a few numbers per writer, so it checks a million
records in constant memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .audit import GENESIS, AuditRecord, ChainBreak, record_digest

__all__ = ["Checkpoint", "CheckpointError", "LogCheck", "TrailCheck", "check_log",
           "compare_copies", "next_checkpoint"]

_FIELDS = ("log", "n", "prev", "at", "writer", "seq", "hash", "count", "closed", "key")


class CheckpointError(ValueError):
    """A checkpoint line that is not a checkpoint (torn, edited, or not ours)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One writer's head, signed: ``writer`` had written ``count`` records, the last at
    ``seq`` with ``hash``, when checkpoint ``n`` of log ``log`` was made."""

    log: str
    n: int
    prev: str  # digest of checkpoint n-1 of the same log; GENESIS for n == 0
    at: float
    writer: str
    seq: int
    hash: str
    count: int
    closed: bool  # the writer stopped: nothing may follow this head
    key: str  # id of the signing key
    sig: str = ""

    @property
    def name(self) -> str:
        return f"{self.log[:8]}#{self.n}"

    def signed_bytes(self) -> bytes:
        return _canonical({k: getattr(self, k) for k in _FIELDS}).encode()

    def digest(self) -> str:
        """What the next checkpoint names as ``prev``: the signature included."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        return _canonical(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Checkpoint:
        try:
            d = json.loads(line)
            if not isinstance(d, dict) or set(d) != {*_FIELDS, "sig"}:
                raise CheckpointError("fields are not a checkpoint's")
            cp = cls(str(d["log"]), _int(d["n"]), str(d["prev"]), float(d["at"]),
                     str(d["writer"]), _int(d["seq"]), str(d["hash"]), _int(d["count"]),
                     _bool(d["closed"]), str(d["key"]), str(d["sig"]))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise CheckpointError(str(exc) if isinstance(exc, CheckpointError)
                                  else f"not a checkpoint ({exc})") from None
        return cp


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise CheckpointError(f"{v!r} is not an integer")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise CheckpointError(f"{v!r} is not true or false")
    return v


def _canonical(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def next_checkpoint(prev: Checkpoint | None, *, log: str, at: float, writer: str, seq: int,
                    hash: str, closed: bool, key: str,
                    sign: Callable[[bytes], str]) -> Checkpoint:
    """The checkpoint after ``prev`` in ``log`` (the first if None), signed with ``sign``."""
    cp = Checkpoint(log, 0 if prev is None else prev.n + 1,
                    GENESIS if prev is None else prev.digest(), at, writer, seq, hash, seq + 1,
                    closed, key)
    return replace(cp, sig=sign(cp.signed_bytes()))


# -- the checkpoint logs ---------------------------------------------------------------------

@dataclass
class LogCheck:
    """What one copy of a checkpoint log holds once checked: the checkpoints that can be
    trusted (signature good) by log and number, and what was wrong."""

    valid: dict[str, dict[int, Checkpoint]] = field(default_factory=dict)
    findings: list[ChainBreak] = field(default_factory=list)


def check_log(where: str, entries: Iterable[Checkpoint | CheckpointError],
              signature_ok: Callable[[Checkpoint], bool],
              gaps_are_findings: bool = True) -> LogCheck:
    """Check one copy of checkpoint logs: every signature, and (for an append-only file,
    ``gaps_are_findings``) that each checkpoint follows the one before it."""
    out = LogCheck()
    last: dict[str, Checkpoint] = {}
    for i, e in enumerate(entries, 1):
        if isinstance(e, CheckpointError):
            out.findings.append(_cp_finding(f"{where} entry {i} is not a checkpoint: {e}"))
            continue
        if not signature_ok(e):
            out.findings.append(_cp_finding(
                f"checkpoint {e.name} in {where}: signature does not verify (changed or forged)",
                e))
            continue
        out.valid.setdefault(e.log, {})[e.n] = e
        prev = last.get(e.log)
        if gaps_are_findings:
            if prev is None and e.n != 0:
                out.findings.append(_cp_finding(
                    f"checkpoints {e.log[:8]}#0..{e.n - 1} are missing from {where}", e))
            elif prev is not None and e.n != prev.n + 1:
                out.findings.append(_cp_finding(
                    f"checkpoints {e.log[:8]}#{prev.n + 1}..{e.n - 1} are missing from {where}"
                    if e.n > prev.n + 1 else
                    f"checkpoint {e.name} in {where} is out of order", e))
            elif prev is not None and e.prev != prev.digest():
                out.findings.append(_cp_finding(
                    f"checkpoint {e.name} in {where} does not follow {prev.name}", e))
            elif prev is None and e.prev != GENESIS:
                out.findings.append(_cp_finding(
                    f"checkpoint {e.name} in {where} does not start its log", e))
        last[e.log] = e
    return out


def compare_copies(files: LogCheck, database: LogCheck, file_logs: set[str]) -> list[ChainBreak]:
    """Each log read from a file against its copy in the database.

    The database copy lags the file (the flusher copies checkpoints), so checkpoints past its
    last are not missing from it; one absent below that, or one in the database that the file
    lacks, or one that differs, is."""
    findings: list[ChainBreak] = []
    for log in sorted(file_logs):
        f, d = files.valid.get(log, {}), database.valid.get(log, {})
        top = max(d, default=-1)
        for n, cp in sorted(f.items()):
            other = d.get(n)
            if other is None and n < top:
                findings.append(_cp_finding(f"checkpoint {cp.name} is missing from the database",
                                            cp))
            elif other is not None and other != cp:
                findings.append(_cp_finding(
                    f"checkpoint {cp.name} differs between the checkpoint log and the database",
                    cp))
        for n, cp in sorted(d.items()):
            if n not in f:
                findings.append(_cp_finding(
                    f"checkpoint {cp.name} is in the database but not in the checkpoint log "
                    "(the log was cut short or edited)", cp))
    return findings


def _cp_finding(problem: str, cp: Checkpoint | None = None) -> ChainBreak:
    return ChainBreak(cp.writer if cp else "", cp.seq if cp else -1, None, problem,
                      cp.name if cp else None)


# -- the records against their chains and their anchors ----------------------------------

@dataclass
class _Writer:
    seq: int = -1
    hash: str = GENESIS
    records: int = 0
    unanchored: int = 0
    first_unanchored_at: float | None = None


class TrailCheck:
    """Every record's chain, and every chain against the checkpoints that anchor it.

    Feed each writer's records in seq order (writers may interleave), then call
    :meth:`finish` for the findings. ``anchors`` are checkpoints whose signatures are good.
    """

    def __init__(self, anchors: Iterable[Checkpoint] = ()) -> None:
        self._at: dict[tuple[str, int], list[Checkpoint]] = {}
        self._head: dict[str, Checkpoint] = {}
        for cp in anchors:
            self._at.setdefault((cp.writer, cp.seq), []).append(cp)
            head = self._head.get(cp.writer)
            if head is None or (cp.seq, cp.closed) > (head.seq, head.closed):
                self._head[cp.writer] = cp
        self._writers: dict[str, _Writer] = {}
        self.findings: list[ChainBreak] = []
        self.records = 0

    def add(self, r: AuditRecord, raw_kind: str | None = None) -> None:
        """Check ``r``; ``raw_kind`` is the kind as stored when it is not one we know."""
        self.records += 1
        w = self._writers.setdefault(r.writer, _Writer())
        expected = w.seq + 1
        if r.seq != expected:
            self.findings.append(ChainBreak(
                r.writer, expected, None, f"records {expected}..{r.seq - 1} are missing"
                if r.seq > expected else f"seq {r.seq} out of order"))
        elif r.prev_hash != w.hash:
            self.findings.append(ChainBreak(r.writer, r.seq, r.id,
                                            "link to the previous record broken"))
        if raw_kind is not None:
            self.findings.append(ChainBreak(r.writer, r.seq, r.id,
                                            f"unknown record kind {raw_kind!r}"))
        if record_digest(r, raw_kind) != r.hash:
            self.findings.append(ChainBreak(r.writer, r.seq, r.id,
                                            "content does not match its hash"))
        for cp in self._at.get((r.writer, r.seq), ()):
            if cp.hash != r.hash:
                self.findings.append(ChainBreak(
                    r.writer, r.seq, r.id, f"does not match checkpoint {cp.name}: the chain "
                    "was rewritten after it was anchored", cp.name))
        head = self._head.get(r.writer)
        if head is None or r.seq > head.seq:
            if head is not None and head.closed:
                self.findings.append(ChainBreak(
                    r.writer, r.seq, r.id, f"written after its writer closed at checkpoint "
                    f"{head.name}: added later", head.name))
            w.unanchored += 1
            if w.first_unanchored_at is None:
                w.first_unanchored_at = r.at
        w.seq, w.hash = r.seq, r.hash
        w.records += 1

    def finish(self) -> list[ChainBreak]:
        """The findings, with every anchored record that never came."""
        for writer, head in sorted(self._head.items()):
            w = self._writers.get(writer)
            if w is None:
                self.findings.append(ChainBreak(
                    writer, 0, None, f"all {head.count} records of this writer are missing "
                    f"(anchored by checkpoint {head.name})", head.name))
            elif w.seq < head.seq:
                self.findings.append(ChainBreak(
                    writer, w.seq + 1, None, f"records {w.seq + 1}..{head.seq} are missing "
                    f"(anchored by checkpoint {head.name})", head.name))
        return self.findings

    @property
    def writers(self) -> int:
        return len(self._writers)

    def unanchored(self) -> dict[str, tuple[int, float | None]]:
        """Per writer: records after its last checkpoint, and when the first was written."""
        return {k: (w.unanchored, w.first_unanchored_at)
                for k, w in self._writers.items() if w.unanchored}
