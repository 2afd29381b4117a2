"""Progress of a long ``selfheal simulate``: simulated time, requests/s, time left.

On a terminal it is a live rich progress bar on standard error; elsewhere (a log, CI) a plain
line every ten seconds, so a long run is never silent and never floods a log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["SimulationProgress", "describe_estimate", "refuse_estimate"]

_PLAIN_EVERY_S = 10.0
_LARGE_S = 60.0
_LARGE_BYTES = 1 << 30


def describe_estimate(cost: dict[str, float]) -> str | None:
    """A warning for a simulation that will take long or use much memory; None otherwise."""
    if cost["seconds"] < _LARGE_S and cost["bytes"] < _LARGE_BYTES:
        return None
    return (f"a large simulation: about {_count(cost['requests'])} simulated requests, "
            f"roughly {_duration(cost['seconds'])} here and {cost['bytes'] / 1e9:.1f} GB of "
            "memory per run; Ctrl-C stops it and keeps the runs that finished")


def refuse_estimate(cost: dict[str, float], memory_bytes: int | None = None) -> str | None:
    """Why a simulation must not start, or None: its per-second counters alone would not fit
    in this machine's memory (``memory_bytes``; read from the system when None), so it would
    stop part-way with MemoryError. A long run is the user's choice; one that cannot finish
    is refused before it starts."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not a POSIX system: no refusal
            return None
    if cost["bytes"] <= memory_bytes:
        return None
    return (f"needs about {cost['bytes'] / 1e9:,.0f} GB of memory for its per-second "
            f"counters, more than this machine's {memory_bytes / 1e9:,.0f} GB; shorten the "
            "duration or split the scenario")


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


class SimulationProgress:
    """``update(simulated_s, total_s, requests)`` as the simulation reports it."""

    def __init__(self, out: TextIO, clock: Callable[[], float] | None = None) -> None:
        self.out = out
        self._now = clock or time.monotonic
        self._start = self._now()
        self._last_plain = self._start
        self._bar = None
        self._task = None
        if out.isatty():
            from rich.console import Console  # noqa: PLC0415 - only on a terminal
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

            self._bar = Progress(TextColumn("simulating"), BarColumn(),
                                 TextColumn("{task.fields[sim]}"),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(file=out), transient=True)

    def __enter__(self) -> SimulationProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, done_s: float, total_s: float, requests: int) -> None:
        now = self._now()
        elapsed = max(now - self._start, 1e-9)
        sim = f"{_duration(done_s)} of {_duration(total_s)} simulated"
        rate = f"{requests / elapsed:,.0f} requests/s"
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("sim", total=total_s, sim=sim, rate=rate)
            self._bar.update(self._task, completed=done_s, sim=sim, rate=rate)
        elif now - self._last_plain >= _PLAIN_EVERY_S and done_s < total_s:
            self._last_plain = now
            left = elapsed * (total_s - done_s) / done_s if done_s > 0 else float("inf")
            print(f"selfheal: {sim}, {rate}, about {_duration(left)} left", file=self.out,
                  flush=True)
