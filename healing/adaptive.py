"""An adaptive concurrency limit learnt from latency: Netflix's Gradient2.

Described in Netflix's concurrency-limits (``Gradient2Limit``, with its ``WindowedLimit``
wrapper): a provider that slows down is queueing work, so its limit shrinks by the ratio of
its long-term to its recent latency before it starts failing; when latency is back to its
usual level the limit grows again by about √limit per window.

Per window of at least ``window_s`` and ``min_window_samples`` calls, with ``short`` the
window's mean latency and ``long`` an exponential average of the window means (``long_window``
windows; the first ten a plain mean)::

    if long / short > 2:        long ← 0.95 x long           (recover quickly after overload)
    if in_flight < limit / 2:   keep the limit                (the caller is not using it)
    gradient  = clamp(tolerance x long / short, 0.5, 1.0)
    new       = limit x gradient + √limit
    limit     ← clamp(limit x (1 - smoothing) + new x smoothing, min_limit, max_limit)

A timed-out call's sample is the time it was given, and — a departure from Gradient2, taken
from AIMD and DCTCP — a window with timeouts in it multiplies the limit by
``min(timeout_backoff, 1 - the share of its calls that timed out)`` instead:
Gradient2 alone takes a persistent overload's latency for the new normal (its long average
catches up) and grows the limit into the collapse; in the slow-under-load scenario over three
seeds it did so in one. A second departure, from BBR: a limit in use (the window's calls in
flight reached half of it) is at most ``gain`` x the best delivery rate (calls finished per
second) of the last ``rate_window_s`` x the long latency, about ``gain`` x the calls the
provider really serves at once (Little's law). Gradient2 lets an unsaturated limit drift to
twice the calls in flight; a provider that then turns slow all at once gets all that headroom
queued behind its workers before a window closes. A call shed before it ran is no sample.
Pure: times are passed in.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from .config import check_count, check_positive, check_ratio
from .errors import ConfigError

__all__ = ["AdaptiveConfig", "Gradient2"]


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    """Gradient2's settings; the defaults are Netflix's, except the limits, which are a
    provider's (its catalogue entry sets ``min_limit``/``max_limit``)."""

    min_limit: int = 4
    max_limit: int = 256
    smoothing: float = 0.2
    tolerance: float = 1.5
    long_window: int = 600
    window_s: float = 1.0
    min_window_samples: int = 10
    timeout_backoff: float = 0.9
    gain: float = 2.0
    rate_window_s: float = 10.0

    def __post_init__(self) -> None:
        check_count("min_limit", self.min_limit)
        check_count("max_limit", self.max_limit)
        if self.max_limit < self.min_limit:
            raise ConfigError("max_limit", self.max_limit, "must be at least min_limit")
        check_ratio("smoothing", self.smoothing)
        if not self.tolerance >= 1.0:
            raise ConfigError("tolerance", self.tolerance, "must be at least 1")
        check_count("long_window", self.long_window)
        check_positive("window_s", self.window_s)
        check_count("min_window_samples", self.min_window_samples)
        check_ratio("timeout_backoff", self.timeout_backoff)
        if not self.gain >= 0.0:
            raise ConfigError("gain", self.gain, "must be 0 (no cap) or more")
        check_positive("rate_window_s", self.rate_window_s)


class Gradient2:
    """One provider's learnt limit. :meth:`sample` every finished call; read ``limit``."""

    _WARMUP = 10

    def __init__(self, config: AdaptiveConfig, initial: int, now: float) -> None:
        self.config = config
        self.estimate = float(min(config.max_limit, max(config.min_limit, initial)))
        self.long_rtt = 0.0
        self._long_n = 0
        self._window_start = now
        self._sum = 0.0
        self._n = 0
        self._max_in_flight = 0
        self._timeouts = 0
        self._rates: deque[tuple[float, float]] = deque()  # (window end, calls/s), max first
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return int(self.estimate)

    def sample(self, latency_s: float, in_flight: int, now: float,
               timed_out: bool = False) -> int | None:
        """Add a finished call (``in_flight``: calls in flight when it started). Returns the
        new limit when a window closed, else None."""
        with self._lock:
            self._sum += latency_s
            self._n += 1
            self._timeouts += timed_out
            self._max_in_flight = max(self._max_in_flight, in_flight)
            cfg = self.config
            if self._n < cfg.min_window_samples or now - self._window_start < cfg.window_s:
                return None
            short = self._sum / self._n
            in_flight, timeouts, n = self._max_in_flight, self._timeouts, self._n
            rate = n / max(now - self._window_start, 1e-9)
            self._window_start, self._sum, self._n, self._max_in_flight = now, 0.0, 0, 0
            self._timeouts = 0
            if timeouts:
                # Cut by the share of calls that timed out (as DCTCP cuts by its share of
                # marked packets), and at least AIMD's timeout_backoff.
                cut = min(cfg.timeout_backoff, 1.0 - timeouts / n)
                self._track_long(short)
                self.estimate = max(cfg.min_limit, self.estimate * cut)
            else:
                self._update(short, in_flight)
            self._cap(rate, in_flight, now)
            return int(self.estimate)

    def _cap(self, rate: float, in_flight: int, now: float) -> None:
        # BBR's bound on data in flight: gain x the best delivery rate of the last
        # rate_window_s x the usual latency. By Little's law that is gain x the calls the
        # provider really serves at once, so a limit in use never strays far above it and a
        # sudden slowdown cannot queue more than that behind the provider's workers.
        cfg, rates = self.config, self._rates
        while rates and rates[-1][1] <= rate:
            rates.pop()
        rates.append((now, rate))
        while rates[0][0] < now - cfg.rate_window_s:
            rates.popleft()
        if cfg.gain and self._long_n >= 3 and in_flight >= self.estimate / 2:
            cap = cfg.gain * rates[0][1] * self.long_rtt
            self.estimate = max(cfg.min_limit, min(self.estimate, cap))

    def _track_long(self, short: float) -> None:
        if self._long_n < self._WARMUP:
            self._long_n += 1
            self.long_rtt += (short - self.long_rtt) / self._long_n
        else:
            self.long_rtt += (short - self.long_rtt) * 2.0 / (self.config.long_window + 1)

    def _update(self, short: float, in_flight: int) -> None:
        cfg = self.config
        self._track_long(short)
        long = self.long_rtt
        short = max(short, 1e-9)
        if long / short > 2.0:
            self.long_rtt = long = long * 0.95
        estimate = self.estimate
        if in_flight < estimate / 2:
            return
        gradient = max(0.5, min(1.0, cfg.tolerance * long / short))
        new = estimate * gradient + math.sqrt(estimate)
        new = estimate * (1 - cfg.smoothing) + new * cfg.smoothing
        self.estimate = max(cfg.min_limit, min(cfg.max_limit, new))
