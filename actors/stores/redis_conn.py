"""The one place Redis clients are made: short timeouts, no hidden retries.

redis-py retries a failed command three times with backoff by default, which turns an
unreachable Redis into seconds of waiting. selfheal's callers (the metric flusher, the circuit
actors) have their own retry loops and must not stall, so clients here fail fast.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["connect"]


def connect(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that fails fast."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                health_check_interval=0)
