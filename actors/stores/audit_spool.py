"""The durable local spool in front of the SQL audit trail.

``append`` returns only once the record is on disk (``fdatasync``), so an audit record
survives a crash or a database outage from the moment the guarded call that produced it
returns. Appends from many threads share one sync (group commit): a writer thread takes
everything queued while the previous sync ran, chains it, writes it and syncs once.

Layout: one writer per process, ``{writer}.lock`` (held with ``flock`` while the writer
lives; it appears already locked, so a live writer is never seen unlocked) and segments
``{writer}.{n:06d}.log`` of JSON lines, each line a chained
:class:`~healing.audit.AuditRecord`. A segment is never modified once the writer moves on;
the flusher deletes it once every line is in SQL. A torn last line after a crash was never
acknowledged to anyone, so readers skip it.

With a :class:`~actors.stores.audit_checkpoints.CheckpointLog`, the writer thread also signs
its head into the checkpoint log: every ``checkpoint_interval_s`` while it has written
something new, on request (:meth:`AuditSpool.checkpoint`), and when it closes. A checkpoint
is made after the records queued before it are durable, so it never anchors a record that
could still be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pathlib
import threading
import uuid
from dataclasses import dataclass

from healing.audit import GENESIS, AuditRecord, chain
from healing.audit_checkpoint import Checkpoint
from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError

from .audit_checkpoints import CheckpointLog

__all__ = ["AuditSpool", "Segment", "SpoolError", "forget_dead_writers", "segments"]

DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024

_log = logging.getLogger("selfheal.audit")


class SpoolError(SelfHealError):
    """The spool could not make a record durable; the record must be treated as unwritten."""


class _Waiter:
    __slots__ = ("error", "event", "future", "loop", "result")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.event = threading.Event() if loop is None else None
        self.future = loop.create_future() if loop is not None else None
        self.result: AuditRecord | Checkpoint | None = None
        self.error: BaseException | None = None

    def done(self, result: AuditRecord | Checkpoint | None,
             error: BaseException | None) -> None:
        self.result, self.error = result, error
        if self.event is not None:
            self.event.set()
        else:
            self.loop.call_soon_threadsafe(_resolve, self.future, result, error)  # type: ignore[union-attr]


def _resolve(fut: asyncio.Future[AuditRecord], result: AuditRecord | None,
             error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)  # type: ignore[arg-type]


class AuditSpool:
    """Append-only, fsync'd, hash-chained audit spool for one process.

    Args:
        directory: the spool directory (shared by every process on the machine).
        segment_bytes: start a new segment past this size.
        checkpoints: the checkpoint log this writer signs its head into; None for none.
        checkpoint_interval_s: how often to checkpoint a head that moved; None: only on
            request and at close.
        clock: for the interval (the system's by default).
    """

    def __init__(self, directory: str | os.PathLike[str],
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, *,
                 checkpoints: CheckpointLog | None = None,
                 checkpoint_interval_s: float | None = None,
                 clock: Clock | None = None) -> None:
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = uuid.uuid4().hex
        self.segment_bytes = segment_bytes
        self._lock_fd = _locked_lock_file(self.dir, self.writer)
        self._seq = 0
        self._prev = GENESIS
        self._segment_no = -1
        self._fd = -1
        self._size = 0
        self.current: pathlib.Path | None = None
        self._open_next_segment()
        self._queue: list[tuple[AuditRecord | None, _Waiter | None]] = []  # None: checkpoint
        self._cv = threading.Condition()
        self._closing = False
        self.syncs = 0
        self.records = 0
        self.checkpoints = checkpoints
        self._interval = checkpoint_interval_s
        self._clock = (clock or SystemClock()).now
        self._anchored_seq = -1  # the head's seq at the last checkpoint
        self._last_checkpoint = self._clock()
        self.checkpoint_failures = 0
        self._thread = threading.Thread(target=self._run, name=f"audit-spool-{self.writer[:8]}",
                                        daemon=True)
        self._thread.start()

    # -- appending ---------------------------------------------------------------------

    def append(self, record: AuditRecord) -> AuditRecord:
        """Make ``record`` durable; returns it as chained. Raises SpoolError if it could not."""
        waiter = _Waiter()
        self._enqueue(record, waiter)
        waiter.event.wait()  # type: ignore[union-attr]
        if waiter.error is not None:
            raise SpoolError(f"audit record {record.id} not written: {waiter.error}") \
                from waiter.error
        return waiter.result  # type: ignore[return-value]

    async def aappend(self, record: AuditRecord) -> AuditRecord:
        """The asyncio form of :meth:`append`: waits without blocking the event loop."""
        waiter = _Waiter(asyncio.get_running_loop())
        self._enqueue(record, waiter)
        try:
            return await waiter.future  # type: ignore[misc]
        except OSError as exc:
            raise SpoolError(f"audit record {record.id} not written: {exc}") from exc

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head into the checkpoint log once everything queued is durable; None
        when there is no log or nothing new to anchor. Raises SpoolError if it failed."""
        waiter = _Waiter()
        self._enqueue(None, waiter)
        waiter.event.wait()  # type: ignore[union-attr]
        if waiter.error is not None:
            raise SpoolError(f"checkpoint not written: {waiter.error}") from waiter.error
        return waiter.result  # type: ignore[return-value]

    def _enqueue(self, record: AuditRecord | None, waiter: _Waiter) -> None:
        with self._cv:
            if self._closing:
                raise SpoolError("the audit spool is closed")
            self._queue.append((record, waiter))
            self._cv.notify()

    def close(self) -> None:
        """Write what is queued, stop the writer, release the lock."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.current = None  # every segment of a closed spool is closed
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> AuditSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    if not self._cv.wait(self._due()):
                        break  # the interval passed with nothing queued
                batch, self._queue = self._queue, []
                if not batch and self._closing:
                    self._checkpoint(closed=True)
                    return
            records = [(r, w) for r, w in batch if r is not None]
            if records:
                self._write(records)  # type: ignore[arg-type]
            requests = [w for r, w in batch if r is None]
            if requests or (self._interval is not None and self._due() == 0):
                self._answer(requests, self._checkpoint(closed=False,
                                                        raise_errors=bool(requests)))

    def _due(self) -> float | None:
        """Seconds until the next interval checkpoint; None: none is due while idle."""
        if self.checkpoints is None or self._interval is None or self._seq - 1 == \
                self._anchored_seq:
            return None
        return max(0.0, self._last_checkpoint + self._interval - self._clock())

    @staticmethod
    def _answer(waiters: list[_Waiter | None],
                result: Checkpoint | BaseException | None) -> None:
        for w in waiters:
            if w is not None:
                if isinstance(result, BaseException):
                    w.done(None, result)
                else:
                    w.done(result, None)

    def _checkpoint(self, closed: bool,
                    raise_errors: bool = False) -> Checkpoint | BaseException | None:
        """Sign the head (the last durable record) into the checkpoint log."""
        head = self._seq - 1
        if self.checkpoints is None or head < 0 or (head == self._anchored_seq and not closed):
            return None
        self._last_checkpoint = self._clock()
        try:
            cp = self.checkpoints.append(self.writer, head, self._prev, closed)
        except OSError as exc:
            # The records are durable either way; only their anchor waits for the next try.
            self.checkpoint_failures += 1
            _log.warning("audit checkpoint of writer %s failed: %s", self.writer[:12], exc)
            return exc if raise_errors else None
        self._anchored_seq = head
        return cp

    def _write(self, batch: list[tuple[AuditRecord, _Waiter]]) -> None:
        seq, prev = self._seq, self._prev
        chained = []
        for record, _ in batch:
            r = chain(record, self.writer, seq, prev)
            chained.append(r)
            seq, prev = seq + 1, r.hash
        data = "".join(r.to_json() + "\n" for r in chained).encode()
        try:
            os.write(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            # Nothing past the last good sync is acknowledged; start a fresh segment so a
            # partial write cannot sit in the middle of one.
            with contextlib.suppress(OSError):
                self._open_next_segment()
            for _, waiter in batch:
                waiter.done(None, exc)
            return
        self._seq, self._prev = seq, prev
        self._size += len(data)
        self.syncs += 1
        self.records += len(batch)
        for r, (_, waiter) in zip(chained, batch, strict=True):
            waiter.done(r, None)
        if self._size >= self.segment_bytes:
            self._open_next_segment()

    def _open_next_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._segment_no += 1
        self.current = self.dir / f"{self.writer}.{self._segment_no:06d}.log"
        self._fd = os.open(self.current, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._size = 0
        # The new file's directory entry must be durable too, or a crash could lose it.
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True)
class Segment:
    path: pathlib.Path
    writer: str
    number: int
    closed: bool  # no live writer will append to it again
    others: bool = False  # written by another live process, which flushes it itself


def _writer_alive(directory: pathlib.Path, writer: str) -> bool:
    try:
        fd = os.open(directory / f"{writer}.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def segments(directory: str | os.PathLike[str], own: AuditSpool | None = None) -> list[Segment]:
    """Every segment in the spool, oldest first per writer, saying which are closed."""
    d = pathlib.Path(directory)
    found: dict[str, list[tuple[int, pathlib.Path]]] = {}
    for p in d.glob("*.log"):
        writer, _, number = p.stem.partition(".")
        if number.isdigit():
            found.setdefault(writer, []).append((int(number), p))
    out = []
    for writer, segs in sorted(found.items()):
        segs.sort()
        if own is not None and writer == own.writer:
            current = own.current
            out += [Segment(p, writer, n, p != current) for n, p in segs]
            continue
        alive = _writer_alive(d, writer)
        last = segs[-1][0]
        out += [Segment(p, writer, n, not alive or n < last, alive) for n, p in segs]
    return out


def read_records(path: pathlib.Path, offset: int = 0) -> tuple[list[AuditRecord], int]:
    """Complete lines of ``path`` from ``offset``: the records and the offset after them."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a torn last line was never acknowledged: skip it
    records = [AuditRecord.from_json(line) for line in data[:end].decode().splitlines() if line]
    return records, offset + end


def _locked_lock_file(directory: pathlib.Path, writer: str) -> int:
    """Create ``{writer}.lock`` already locked: made and locked under a private name, then
    renamed into place. Were it created first and locked after, another process could find
    it unlocked in between, judge the writer dead and sweep its files while it writes."""
    private = directory / f".{writer}.locking"
    fd = os.open(private, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(private, directory / f"{writer}.lock")
    except BaseException:
        os.close(fd)
        private.unlink(missing_ok=True)
        raise
    return fd


def forget_dead_writers(directory: pathlib.Path, own: AuditSpool | None = None) -> int:
    """Remove the lock of every dead writer with no segment left; returns how many.

    Each writer is judged while its lock is held by this process: a live writer holds its
    own, so it is never touched; a dead one cannot start writing again (writer ids are never
    reused), so a segment seen missing under the lock stays missing. Deciding from an earlier
    listing instead swept the lock of a writer that started in between, and then its records
    were flushed as a dead writer's and deleted while it still appended to them.
    """
    removed = 0
    for lock in directory.glob("*.lock"):
        writer = lock.stem
        if own is not None and writer == own.writer:
            continue  # our own: released when the spool closes, removed by a later sweep
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # another process forgot it first
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            if not any(directory.glob(f"{writer}.*.log")):
                lock.unlink(missing_ok=True)
                removed += 1
        finally:
            os.close(fd)  # releases the probe's lock
    return removed
