"""History for training, from what the stores keep: outcome events and trouble spans.

The live metric streams and the simulator's event logs keep the same outcome events —
``(at, service, ok, error_kind)``, every error and a sample of the successes — so one
function turns either into a service's labelled :class:`~learning.training.Bucket`\\ s:
successes re-weighted by the sample rate, each bucket troubled when it overlaps one of the
service's trouble spans (a fault window in simulated history; in live history, the time a
circuit stood open or a recovery workflow ran).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from healing.outcome import NOT_CALLED

from .training import Bucket

__all__ = ["buckets_from_events", "event_counts"]

def event_counts(ok: bool, error_kind: str | None,
                 sample_rate: float) -> tuple[float, float] | None:
    """What one streamed event stands for: ``(calls, errors)`` of the primary, a sampled
    success standing for ``1 / sample_rate`` calls; None when the primary was not called."""
    if error_kind in NOT_CALLED:
        return None
    if ok and error_kind is None:
        return 1.0 / sample_rate, 0.0
    return 1.0, 1.0


def buckets_from_events(events: Iterable[tuple[float, str, bool, str | None]],
                        trouble: Mapping[str, Sequence[tuple[float, float]]],
                        sample_rate: float = 0.1, bucket_s: float = 10.0
                        ) -> dict[str, list[Bucket]]:
    """Per service, its buckets in time order, from first to last event."""
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    counts: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for at, service, ok, error_kind in events:
        seen = event_counts(ok, error_kind, sample_rate)
        if seen is None:
            continue
        b = counts[service].setdefault(int(at // bucket_s), [0.0, 0.0])
        b[0] += seen[0]
        b[1] += seen[1]
    out = {}
    for service, by_index in counts.items():
        spans = trouble.get(service, ())
        lo, hi = min(by_index), max(by_index)
        buckets = []
        for i in range(lo, hi + 1):
            calls, errors = by_index.get(i, (0.0, 0.0))
            start = i * bucket_s
            troubled = any(s < start + bucket_s and e > start for s, e in spans)
            buckets.append(Bucket(start, calls, errors, troubled))
        out[service] = buckets
    return out
