"""Traffic written as a service's own recorder writes it, for tests of what the running
monitor makes of the metric streams."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator

REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def burning_budget(prefix: str, seed: int) -> Iterator[str]:
    """A new service's last ten minutes at 10 requests a second, one in a hundred
    unanswered (10x the burn of a 99.9 % objective), recorded as its guard would: every
    failure and a tenth of the successes. Yields the service's name; its streams go after."""
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing.outcome import OutcomeRecord
    from healing.safety import Criticality, OperationType

    service = f"{prefix}{uuid.uuid4().hex[:6]}"
    recorder = MetricRecorder(connect(REDIS_URL), sample_rate=0.1, flush_interval_s=60,
                              rng=random.Random(seed))
    now = time.time()
    for k in range(6000):
        bad = k % 100 == 0
        recorder.record(OutcomeRecord(service, "main", not bad, 0.01,
                                      "ConnectionError" if bad else None,
                                      "none" if bad else "primary", None,
                                      OperationType.ADMINISTRATIVE, Criticality.MEDIUM,
                                      now - 600 + k / 10))
    recorder.flush()
    try:
        yield service
    finally:
        recorder.close()
        connect(REDIS_URL).delete(f"metrics:{service}", f"metrics:{service}:count")
