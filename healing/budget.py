"""Retry budgets: retries at most a share of a service's requests, with a floor.

Envoy's retry budget (``retry_budget``: ``budget_percent`` 20 %, ``min_retry_concurrency``
3) bounds retries against the requests in flight; Finagle's ``RetryBudget`` bounds them
against recent requests, with a small reserve per second so a quiet service can still
retry. This is the second form, which needs no view of what is in flight: over the last
``window_s`` seconds a service may retry at most::

    min_per_s x window_s + ratio x (requests in the window)

When a provider fails every call, each request may otherwise retry ``max_attempts - 1``
times and the provider sees that many times its load exactly when it can least bear it; with
the budget it sees at most ``1 + ratio`` times (plus the floor). Pure: times are passed in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .config import check_count, check_non_negative, check_ratio

__all__ = ["RetryBudget", "RetryBudgetConfig"]


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    ratio: float = 0.2
    min_per_s: float = 1.0
    window_s: int = 10

    def __post_init__(self) -> None:
        check_ratio("ratio", self.ratio, allow_zero=True)
        check_non_negative("min_per_s", self.min_per_s)
        check_count("window_s", self.window_s)


class RetryBudget:
    """One service's budget: :meth:`request` for every request, :meth:`try_retry` before
    every retry (True: the retry is spent; False: do not retry)."""

    def __init__(self, config: RetryBudgetConfig | None = None) -> None:
        self.config = cfg = config if config is not None else RetryBudgetConfig()
        n = cfg.window_s
        self._requests = [0] * n  # per whole second, a ring
        self._retries = [0] * n
        self._second = [-1] * n  # which second each slot holds
        self._floor = cfg.min_per_s * n
        self._lock = threading.Lock()
        self.granted = 0
        self.refused = 0

    def request(self, now: float) -> None:
        with self._lock:
            self._slot(now, self._requests)

    def try_retry(self, now: float) -> bool:
        with self._lock:
            sec = int(now)
            n = self.config.window_s
            requests = retries = 0
            for i in range(n):
                if sec - self._second[i] < n:
                    requests += self._requests[i]
                    retries += self._retries[i]
            if retries >= self._floor + self.config.ratio * requests:
                self.refused += 1
                return False
            self._slot(now, self._retries)
            self.granted += 1
            return True

    def spend(self, now: float) -> None:
        """Count a retry that is made whatever the budget says (a life-critical one)."""
        with self._lock:
            self._slot(now, self._retries)
            self.granted += 1

    def _slot(self, now: float, counts: list[int]) -> None:
        sec = int(now)
        i = sec % self.config.window_s
        if self._second[i] != sec:  # the slot held an older second: start it afresh
            self._second[i] = sec
            self._requests[i] = 0
            self._retries[i] = 0
        counts[i] += 1
