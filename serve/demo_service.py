"""A Ray Serve deployment standing in for a clinical AI service, with a fault switch.

Used by ``make demo``, the live healing test and the benchmark.

The switch is a Redis key read on every request: ``ok``, ``fail`` (every call errors),
``hang`` (calls never answer) or ``leak:<epoch>`` (replicas started before that moment have
leaked and fail; fresh replicas answer: a restart cures it).
"""

from __future__ import annotations

import asyncio
import time

from ray import serve

from actors.stores.redis_conn import connect


def build(redis_url: str, switch_key: str):
    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0},
                      health_check_period_s=1, graceful_shutdown_timeout_s=1)
    class ClinicalModel:
        def __init__(self) -> None:
            self.started = time.time()
            self.redis = connect(redis_url)

        async def __call__(self, question: str = "fever?") -> dict:
            mode = (self.redis.get(switch_key) or b"ok").decode()
            if mode == "fail":
                raise ConnectionError("model backend refused the request")
            if mode == "hang":
                await asyncio.sleep(3600)
            if mode.startswith("leak:") and self.started < float(mode[5:]):
                raise MemoryError("replica out of memory")
            return {"diagnosis": "pneumonia", "confidence": 0.91, "question": question}

    return ClinicalModel.bind()
