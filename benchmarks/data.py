"""The analysts' data interface (actors.frames): a range is read as a range.

A day of one service's outcomes in its Redis metric stream (20 requests/s, every error and a
tenth of the successes, as live); an hour of per-minute metrics out of it, through
``actors.frames``, against reading the whole day's stream and keeping the hour (what a
loader without ranges does). Needs Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid

from .harness import Figure, figure

REDIS_URL = "redis://127.0.0.1:6379/0"
DAY_S, RPS = 86400, 20


def _write_day(service: str, t0: float) -> None:
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing.outcome import OutcomeRecord
    from healing.safety import Criticality, OperationType

    rng = random.Random(1)
    recorder = MetricRecorder(connect(REDIS_URL), sample_rate=0.1, maxlen=1_000_000,
                              buffer_max=10_000_000, flush_interval_s=0, rng=rng)
    for i in range(DAY_S * RPS):
        bad = rng.random() < 0.01
        recorder.record(OutcomeRecord(service, "main", not bad, 0.05 + rng.random() / 10,
                                      "Timeout" if bad else None, "none" if bad else "primary",
                                      None, OperationType.DIAGNOSTIC, Criticality.HIGH,
                                      t0 + i / RPS))
    recorder.close()


def run() -> list[Figure]:
    import pandas as pd

    from actors.frames import LiveFrames
    from actors.settings import Settings
    from actors.stores.audit_sql import AuditStore
    from actors.stores.metric_stream import read_events
    from actors.stores.redis_conn import connect

    service = f"bench-frames-{uuid.uuid4().hex[:6]}"
    t0 = 1_899_999_960.0  # on a minute: the hour holds 60 whole minutes
    _write_day(service, t0)
    client = connect(REDIS_URL)
    tmp = tempfile.TemporaryDirectory()
    settings = Settings.embedded(tmp.name).model_copy(update={"redis_url": REDIS_URL})
    AuditStore(settings.audit_database_url()).migrate()  # the frames only read it
    lo, hi = t0 + 12 * 3600, t0 + 13 * 3600
    try:
        with LiveFrames(settings) as frames:
            def ranged() -> int:
                return len(frames.metrics(lo, hi, service))

            def whole() -> int:  # the day's stream, then the hour kept
                events = pd.DataFrame(read_events(client, service),
                                      columns=["at", "latency_s", "ok", "error_kind", "tier",
                                               "provider"])
                return int(events["at"].between(lo, hi, inclusive="left").sum())

            found = ranged()
            assert found == 60, found
            times: dict[str, list[float]] = {"ranged": [], "whole": []}
            for _ in range(5):  # interleaved: a slower moment hits both alike
                for name, fn in (("ranged", ranged), ("whole", whole)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
    finally:
        for key in client.scan_iter(f"metrics:{service}*"):
            client.delete(key)
        tmp.cleanup()
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return [figure("an hour of per-minute metrics out of a day's stream (actors.frames)",
                   ms["ranged"], "ms", "the whole day's stream read, the hour kept",
                   ms["whole"])]
