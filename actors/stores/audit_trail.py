"""The audit trail as the guard sees it: append durably now, reach SQL soon.

:class:`AuditTrail` is an :class:`~healing.audit.AuditSink`: ``append`` returns once the
record is fsync'd in the local spool, and a background flusher moves spooled records to SQL
in batches, off the request path. When the database is down the flusher keeps retrying and
the spool keeps growing; nothing is lost. On start it also flushes what dead writers (a
crashed process, an earlier run) left behind; inserts are idempotent by record id, so a
record flushed twice is stored once.

With a checkpoint log, the spool signs its head into it (see :mod:`.audit_spool`), and the
flusher copies the log into the database. When it sends the last records of a writer that
died without closing, it signs that writer's head as closed on its behalf, so a crash leaves
no tail that is never anchored.
"""

from __future__ import annotations

import logging
import pathlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from healing.audit import AuditRecord
from healing.audit_checkpoint import Checkpoint
from healing.safety import pseudonym

from .audit_checkpoints import CheckpointLog, SigningKey, read_checkpoints
from .audit_spool import AuditSpool, forget_dead_writers, read_records, segments
from .audit_sql import AuditStore, AuditStoreError

__all__ = ["AuditTrail", "FlushStats"]

_log = logging.getLogger("selfheal.audit")

BATCH = 2_000


@dataclass
class FlushStats:
    flushed: int = 0
    failed_attempts: int = 0
    last_error: str | None = None
    segments_removed: int = 0
    offsets: dict[pathlib.Path, int] = field(default_factory=dict)
    checkpoints_copied: int = 0
    checkpoint_offset: int = 0


class AuditTrail:
    """Spool + flusher + SQL store.

    Args:
        spool_dir: the local spool directory.
        store: the SQL store (already migrated).
        key: HMAC key for patient, clinician and operator pseudonyms; None for a writer
            whose records hold no identifiers (the circuit actors), which then never sees it.
        flush_interval_s: how often the flusher looks for new records; 0 means never on its
            own (tests call :meth:`flush`).
        checkpoints: the checkpoint log; None for a trail without checkpoints.
        checkpoint_interval_s: how often the spool anchors a head that moved.
    """

    def __init__(self, spool_dir: str | pathlib.Path, store: AuditStore, key: bytes | None,
                 flush_interval_s: float = 0.5, *, checkpoints: CheckpointLog | None = None,
                 checkpoint_interval_s: float | None = 5.0) -> None:
        self.spool = AuditSpool(spool_dir, checkpoints=checkpoints,
                                checkpoint_interval_s=checkpoint_interval_s)
        self.checkpoints = checkpoints
        self.store = store
        self._key = key
        self.stats = FlushStats()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval_s > 0:
            self._thread = threading.Thread(target=self._run, args=(flush_interval_s,),
                                            name="audit-flusher", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: bytes | None) -> AuditTrail:
        """A trail from :meth:`actors.settings.Settings.audit_config` (what actors are given)."""
        log = None
        if cfg.get("signing_key_file") and cfg.get("checkpoint_log"):
            log = CheckpointLog(cfg["checkpoint_log"],
                                SigningKey.load_or_create(cfg["signing_key_file"]))
        return cls(cfg["spool_dir"], AuditStore(cfg["database_url"]), key,
                   cfg.get("flush_interval_s", 0.5), checkpoints=log,
                   checkpoint_interval_s=cfg.get("checkpoint_interval_s", 5.0))

    def pseudonymize(self, identifier: str) -> str:
        if self._key is None:
            raise ValueError("this audit trail has no pseudonym key: it may not record ids")
        return pseudonym(identifier, self._key)

    def append(self, record: AuditRecord) -> None:
        self.spool.append(record)

    async def aappend(self, record: AuditRecord) -> None:
        await self.spool.aappend(record)

    def flush(self) -> int:
        """Move every spooled record to SQL; returns how many were sent.

        Raises:
            AuditStoreError: the database refused; what was not sent stays in the spool.
        """
        with self._flush_lock:
            sent = 0
            segs = segments(self.spool.dir, own=self.spool)
            last_of = {s.writer: s.number for s in segs}
            heads: dict[str, AuditRecord] = {}
            for seg in segs:
                if seg.others:
                    continue  # a live process flushes its own; dead ones' are everyone's job
                offset = self.stats.offsets.get(seg.path, 0)
                try:
                    records, end = read_records(seg.path, offset)
                except FileNotFoundError:  # another process flushed and removed it
                    self.stats.offsets.pop(seg.path, None)
                    continue
                for i in range(0, len(records), BATCH):
                    self.store.insert(records[i:i + BATCH])
                    sent += len(records[i:i + BATCH])
                if records:
                    heads[seg.writer] = records[-1]
                self.stats.offsets[seg.path] = end
                try:
                    size = seg.path.stat().st_size
                except FileNotFoundError:  # another process sent it too, and removed it
                    self.stats.offsets.pop(seg.path, None)
                    continue
                if seg.closed and end == size:
                    dead = seg.writer != self.spool.writer
                    if dead and seg.number == last_of[seg.writer] and seg.writer in heads:
                        self._adopt(heads[seg.writer])
                    seg.path.unlink(missing_ok=True)
                    self.stats.offsets.pop(seg.path, None)
                    self.stats.segments_removed += 1
            self._copy_checkpoints()
            # A writer with no segments left and no live process is forgotten.
            forget_dead_writers(self.spool.dir,
                                own=self.spool if self.spool.current is not None else None)
            self.stats.flushed += sent
            return sent

    def _adopt(self, head: AuditRecord) -> None:
        """Anchor the head of a writer that died without closing, before its files go."""
        if self.checkpoints is not None:
            self.checkpoints.append(head.writer, head.seq, head.hash, closed=True)

    def _copy_checkpoints(self) -> None:
        """Copy the checkpoint log's new lines into the database (the second copy)."""
        if self.checkpoints is None or not self.checkpoints.path.exists():
            return
        entries, end = read_checkpoints(self.checkpoints.path, self.stats.checkpoint_offset)
        good = [e for e in entries if isinstance(e, Checkpoint)]
        self.store.insert_checkpoints(good)  # a bad line is the verifier's to report
        self.stats.checkpoints_copied += len(good)
        self.stats.checkpoint_offset = end

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
                self.stats.last_error = None
            except AuditStoreError as exc:
                # The database is down: records wait in the spool, durable, and go later.
                self.stats.failed_attempts += 1
                self.stats.last_error = str(exc)
                _log.warning("audit flush failed, will retry: %s", exc)
            except Exception:  # the flusher must outlive any single bad batch
                self.stats.failed_attempts += 1
                _log.exception("audit flush failed unexpectedly, will retry")

    def close(self, flush: bool = True) -> None:
        """Stop the flusher, close the spool, and (by default) try a last flush."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.spool.close()
        if flush:
            try:
                self.flush()
            except AuditStoreError as exc:
                _log.warning("records left in the spool for the next start: %s", exc)
