"""The audit trail's signed checkpoints: what they cost on the durable write path, and how
fast ``selfheal audit verify`` checks a trail of a million records."""

from __future__ import annotations

import os
import pathlib
import statistics
import tempfile
import threading
import time

from actors.stores.audit_checkpoints import CheckpointLog, SigningKey, public_path
from actors.stores.audit_spool import AuditSpool
from actors.stores.audit_sql import AuditStore, audit_log
from actors.stores.audit_verify import verify_trail
from healing.audit import GENESIS, chain, circuit_transition

from .harness import Figure, figure

THREADS, PER_THREAD = 16, 400
VERIFY_RECORDS = int(os.environ.get("SELFHEAL_BENCH_VERIFY_RECORDS", "1000000"))


def bench_record(i: int):
    return circuit_transition(service="svc", at=1000.0 + i, circuit="svc:provider",
                              from_state="CLOSED", to_state="OPEN", reason=f"bench {i}",
                              failure_rate=0.5)


def grouped_rate(spool: AuditSpool, threads: int = THREADS, per: int = PER_THREAD) -> float:
    """Records/s made durable by ``threads`` threads appending at once (group commit)."""
    def writer(base: int) -> None:
        for i in range(per):
            spool.append(bench_record(base + i))

    ts = [threading.Thread(target=writer, args=(j * per,)) for j in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return threads * per / (time.perf_counter() - t0)


def _write_path(d: pathlib.Path) -> list[Figure]:
    key = SigningKey.load_or_create(d / "k.key")
    log = CheckpointLog(d / "checkpoints.jsonl", key)
    rates: dict[str, list[float]] = {"none": [], "5 s": [], "50 ms": []}
    for rnd in range(7):  # interleaved, so a slower moment of the disk hits all three alike
        for label, interval in (("none", None), ("5 s", 5.0), ("50 ms", 0.05)):
            spool = AuditSpool(d / f"spool-{label.replace(' ', '')}-{rnd}",
                               checkpoints=log if interval else None,
                               checkpoint_interval_s=interval)
            rates[label].append(grouped_rate(spool))
            spool.close()
    best = {k: statistics.median(v) for k, v in rates.items()}  # fsync varies by ±15 %
    t0 = time.perf_counter()
    n = 200
    for i in range(n):
        log.append("bench", i, "0" * 64, closed=False)
    per_checkpoint = (time.perf_counter() - t0) / n
    return [
        figure("audit records durable, 16 threads, checkpoint every 5 s (the default)",
               best["5 s"], "records/s", "the same, no checkpoints", best["none"]),
        figure("audit records durable, 16 threads, checkpoint every 50 ms",
               best["50 ms"], "records/s", "the same, no checkpoints", best["none"]),
        figure("one checkpoint: Ed25519 signature + append + fdatasync", per_checkpoint * 1e3,
               "ms", "seed target for instrumentation per request", 5.0),
    ]


def _build_trail(d: pathlib.Path, n: int) -> tuple[str, pathlib.Path, pathlib.Path]:
    """``n`` chained records in SQLite from 8 writers, each closed with a checkpoint."""
    url = f"sqlite:///{d / 'big.db'}"
    store = AuditStore(url)
    store.migrate()
    key = SigningKey.load_or_create(d / "big.key")
    log = CheckpointLog(d / "big-checkpoints.jsonl", key)
    writers = 8
    for w in range(writers):
        writer, prev, batch = f"{w:032x}", GENESIS, []
        for seq in range(n // writers):
            r = chain(bench_record(seq), writer, seq, prev)
            prev = r.hash
            batch.append(r)
            if len(batch) == 5000:
                store.insert(batch)
                batch = []
        store.insert(batch)
        log.append(writer, n // writers - 1, prev, closed=True)
    store.dispose()
    return url, log.path, public_path(d / "big.key")


def _plain_read(url: str) -> float:
    """Anchor: streaming the same ledger rows with SQLAlchemy, doing nothing with them."""
    from sqlalchemy import select

    store = AuditStore(url, read_only=True)
    t0 = time.perf_counter()
    n = 0
    with store.engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
            select(audit_log).order_by(audit_log.c.writer, audit_log.c.seq))
        for _ in rows:
            n += 1
    store.dispose()
    return n / (time.perf_counter() - t0)


def _verify_speed(d: pathlib.Path) -> list[Figure]:
    url, log, pub = _build_trail(d, VERIFY_RECORDS)
    t0 = time.perf_counter()
    report = verify_trail(url, checkpoint_logs=[log], public_keys=[pub])
    rate = report.records / (time.perf_counter() - t0)
    if not report.intact or report.records != VERIFY_RECORDS // 8 * 8:
        raise RuntimeError(f"the benchmark trail did not verify: {report.findings[:3]}")
    return [figure(f"audit verify, {report.records:,} records in SQLite (chains, typed rows, "
                   "checkpoints)", rate, "records/s", "streaming the same ledger rows, no checks",
                   _plain_read(url))]


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        return _write_path(d) + _verify_speed(d)
