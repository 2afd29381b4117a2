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
