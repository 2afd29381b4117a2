"""An open-loop load generator: requests leave on a fixed schedule, whatever the answers do.

A closed loop (send, wait, send) slows down when the system does and so hides exactly the
queueing a chaos experiment is meant to show. Here a scheduler thread releases request ``i``
at ``i / rate`` seconds and hands it to a pool of workers; a request that waits for a free
worker is late, and how late is recorded (``sent - due``), not forgiven.

The mix is the seed's four kinds of clinical request (5.1), weighted as a clinical AI
platform sees them: diagnostic questions most, prescriptive checks next, informational
look-ups, and a tenth life-critical. Patients come from a pool, so cached answers exist and
the cache's rules are exercised; the identifiers are made up and never leave the process in
clear (the audit trail and the cache see only their pseudonyms).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from healing.clock import Clock, SystemClock

from .ledger import ERROR, Entry

__all__ = ["MIX", "OpenLoop"]

# (weight, service, operation, criticality)
MIX: tuple[tuple[int, str, str, str], ...] = (
    (30, "clinical_reasoning", "diagnostic", "high"),
    (15, "xray_analysis", "diagnostic", "high"),
    (25, "pharmaguard", "prescriptive", "high"),
    (10, "clinical_reasoning", "diagnostic", "life_critical"),
    (20, "care_locator", "informational", "low"),
)


class OpenLoop:
    """Send ``send(entry)`` at ``rate_per_s`` until :meth:`stop`; every entry is kept.

    ``workers``: 128, more than one slow provider's bulkhead holds (imaging's 16 in flight and
    16 queued; clinical reasoning's learnt limit up to 128 is the exception). With 32, as
    many as a bulkhead held, a provider answering in 2 s took every worker and the other
    services' requests waited up to 20 s for one: the generator, not selfheal, was what
    filled, and the bulkhead never had to shed (slow-provider, alone: others' p99 wait
    19.7 s with 32 workers, 0.015 s with 128).

    ``send`` fills in the entry's outcome; if it raises, the entry is marked an unexpected
    error (the harness's ``send`` catches what the guard may raise, so that should not
    happen)."""

    def __init__(self, send: Callable[[Entry], None], rate_per_s: float, *, tag: str,
                 patients: int = 200, seed: int = 0, workers: int = 128,
                 clock: Clock | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        self.send, self.rate = send, rate_per_s
        self.tag, self.patients = tag, patients
        self.clock = clock or SystemClock()
        self.rng = random.Random(seed)
        self.entries: list[Entry] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chaos-load")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0
        weights = [w for w, *_ in MIX]
        total = sum(weights)
        self._cum = [sum(weights[: i + 1]) / total for i in range(len(weights))]

    def now(self) -> float:
        """Seconds since the generator started."""
        return self.clock.now() - self.t0

    def _next(self, i: int) -> Entry:
        u = self.rng.random()
        k = next(j for j, c in enumerate(self._cum) if u <= c)
        _, service, operation, criticality = MIX[k]
        patient = f"{self.tag}-patient-{self.rng.randrange(self.patients):04d}"
        return Entry(i, service, operation, criticality, patient, due=i / self.rate)

    def _one(self, entry: Entry) -> None:
        entry.sent = self.now()
        try:
            self.send(entry)
        except Exception as exc:  # the harness's own bug: recorded, never lost
            entry.outcome, entry.error = ERROR, f"{type(exc).__name__}: {exc}"
        entry.done = self.now()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            entry = self._next(i)
            wait = entry.due - self.now()
            if wait > 0 and self._stop.wait(wait):
                break
            self.entries.append(entry)
            self._pool.submit(self._one, entry)
            i += 1

    def start(self) -> OpenLoop:
        self.t0 = self.clock.now()
        self._thread = threading.Thread(target=self._run, name="chaos-schedule", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Entry]:
        """Stop sending and wait for every request in flight; returns the whole log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=True)
        return self.entries

    def lateness(self) -> dict[str, float]:
        """How far behind its schedule the generator sent (seconds): p50, p99 and max."""
        lags = sorted(e.sent - e.due for e in self.entries if e.done is not None)
        if not lags:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        return {"p50": lags[len(lags) // 2], "p99": lags[min(len(lags) - 1,
                                                              int(len(lags) * 0.99))],
                "max": lags[-1]}
