"""A small Ray Serve deployment instrumented with ``actors.instrumentation.instrument``."""

from __future__ import annotations

from ray import serve

from actors.instrumentation import instrument
from actors.stores.metric_stream import MetricRecorder
from actors.stores.redis_conn import connect


def recorder_factory(redis_url: str, prefix: str):
    # Called once in the replica's own process on its first request: nothing pickled over.
    return lambda: MetricRecorder(connect(redis_url), sample_rate=1.0, flush_interval_s=0.05,
                                  prefix=prefix)


def build(redis_url: str, prefix: str):
    sink = recorder_factory(redis_url, prefix)

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Triage:
        @instrument("triage", sink)
        async def __call__(self, score: int) -> str:
            if score < 0:
                raise ValueError("score must be >= 0")
            return "urgent" if score > 7 else "routine"

    return Triage.bind()


def build_leaky(fail_after_mb: int):
    """A replica that keeps what each call allocates (``mb`` megabytes, written so that it
    is resident) and fails every call once it holds more than ``fail_after_mb``: a leak."""

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0},
                      graceful_shutdown_timeout_s=1)
    class Leaky:
        def __init__(self) -> None:
            self.hoard: list[bytes] = []

        async def __call__(self, mb: int) -> str:
            if len(self.hoard) >= fail_after_mb:
                raise MemoryError("replica out of memory")
            self.hoard += [b"x" * (1 << 20) for _ in range(mb)]
            return "ok"

    return Leaky.bind()
