"""A run's history as labelled buckets, for training the predictive monitor.

A bucket is troubled when a fault that was not prevented acted on its service, or on one it
depends on, during any part of it.
"""

from __future__ import annotations

from learning.training import Bucket

from .records import RunResult

__all__ = ["labelled_buckets"]


def labelled_buckets(result: RunResult, bucket_s: float = 10.0) -> dict[str, list[Bucket]]:
    sc = result.scenario
    step = int(bucket_s)
    spans: dict[str, list[tuple[float, float]]] = {n: [] for n in sc.services}
    for f in result.incidents:
        if f.averted or f.impact_start >= f.actual_end:  # gone before any call failed
            continue
        for name in {f.spec.service} | sc.dependents(f.spec.service):
            spans[name].append((f.impact_start, f.actual_end))
    out = {}
    for name, log in result.logs.items():
        buckets = []
        for lo in range(0, int(sc.duration_s) - step + 1, step):
            hi = lo + step
            troubled = any(s < hi and e > lo for s, e in spans[name])
            buckets.append(Bucket(float(lo), float(sum(log.calls[lo:hi])),
                                  float(sum(log.errors[lo:hi])), troubled))
        out[name] = buckets
    return out
