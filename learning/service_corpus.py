"""A labelled corpus of service telemetry that selfheal generates itself, scored like NAB.

NAB is mostly five-minute machine metrics, tweets and traffic with months of history. The
series a predictive monitor watches in production look different: hourly business and
reliability rates with only a month of history, minutely request and ingress rates over a few
days, counts that are zero most of the time, anomalies in the first weeks, heavy-tailed
latencies whose single wild values are nobody's incident. This module builds such a corpus,
deterministically from a seed, in NAB's own shape (:class:`learning.nab.Corpus`, labelled
windows after NAB's rule), so :func:`learning.nab.score_corpus` scores it unchanged:

* ``simulated/`` (made by :func:`simulation.corpus.service_corpus`, which adds them to these):
  the scenario library's services run without healing in the simulator, as error rates per
  10 seconds or per minute, each fault's start a label (the scenarios' own faults: outages,
  leaks, slow degradations, flapping);
* ``hourly_*``: crash rates, API dependency latency and purchase rates over 30 or 60 days,
  with a daily and weekly rhythm;
* ``minutely_*``: data-ingress and database request rates over 8 hours to 7 days, and a
  service-unavailable count that is zero most minutes.

Anomalies are of the kinds services have: spikes lasting hours, level shifts, drops to near
zero, gradual ramps (a leak), bursts of a count. Benign heavy-tailed outliers and quiet
series without an anomaly are in it too, so false alarms cost what they cost in production.
:func:`write_corpus` writes it to disk in NAB's layout, for ``selfheal detect`` or NAB's own
scorer.
"""

from __future__ import annotations

import itertools
import json
import math
import pathlib
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from .nab import Corpus, NabFile, nab_probation

__all__ = ["labelled_file", "synthetic_files", "write_corpus"]

# a Monday, so weekly rhythms start on one; naive, as NAB's timestamps are (UTC by convention)
_EPOCH = datetime(2026, 3, 2)  # noqa: DTZ001
Rng = np.random.Generator


def _windows(n: int, starts: list[int]) -> list[tuple[int, int]]:
    """NAB's labelling rule: all windows together span 10 % of the file, each centred on
    its anomaly's start (so a detection just before the start still counts);
    overlapping windows are merged."""
    if not starts:
        return []
    half = max(1, int(0.1 * n / len(starts)) // 2)
    merged: list[tuple[int, int]] = []
    for s in sorted(starts):  # overlapping windows are one (NAB's labels never overlap)
        lo, hi = max(0, s - half), min(n - 1, s + half)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def labelled_file(name: str, values: np.ndarray, step: timedelta, starts: list[int]) -> NabFile:
    """A series as NAB would hold it: rows ``step`` apart, NAB's probation, and a window
    (NAB's rule) around each anomaly start that falls after the probation."""
    n = len(values)
    probation = nab_probation(n)
    windows = [(s, e) for s, e in _windows(n, starts) if s >= probation]
    stamps = [_EPOCH + i * step for i in range(n)]
    return NabFile(name, stamps, [float(v) for v in values], windows, probation)


def _rhythm(n: int, step_h: float, rng: Rng, weekly: float = 0.3) -> np.ndarray:
    """A positive daily-and-weekly usage profile, around 1: busy days, quiet nights and
    weekends, with a peak hour that differs per series."""
    t = np.arange(n) * step_h
    peak = rng.uniform(10, 16)
    daily = 1 + rng.uniform(0.3, 0.8) * np.cos(2 * np.pi * (t - peak) / 24)
    weekday = ((t // 24) % 7) < 5
    return daily * np.where(weekday, 1.0, 1.0 - weekly)


def _anomaly_starts(n: int, k: int, rng: Rng, early: bool) -> list[int]:
    """``k`` starts after NAB's probation, spread apart; with ``early`` the first falls in
    the first quarter of the series (a service's trouble does not wait for history)."""
    lo = min(math.floor(0.15 * n), 750) + n // 20
    if k == 0:
        return []
    if early:
        first = int(rng.integers(lo, max(lo + 1, n // 4)))
        rest = sorted(int(x) for x in rng.integers(n // 3, n - n // 10, size=k - 1))
        return [first, *rest]
    gaps = np.linspace(lo, n - n // 10, k + 1)
    # one start in each of k equal stretches, clear of the next stretch's window
    return [int(rng.integers(int(a), max(int(a) + 1, int(b) - n // (10 * k))))
            for a, b in itertools.pairwise(gaps)]


def _apply(base: np.ndarray, starts: list[int], rng: Rng, kinds: tuple[str, ...],
           unit: int) -> np.ndarray:
    """Multiply the base level by each anomaly's shape from its start: ``unit`` is how many
    values an episode lasts at least (hours of an hourly series)."""
    factor = np.ones(len(base))
    for s in starts:
        kind = kinds[int(rng.integers(len(kinds)))]
        length = int(rng.integers(unit, 4 * unit + 1))
        e = min(len(base), s + length)
        if kind == "spike":
            factor[s:e] *= rng.uniform(2.5, 5.0)
        elif kind == "shift":
            factor[s:] *= rng.uniform(1.6, 2.5)
        elif kind == "drop":
            factor[s:e] *= rng.uniform(0.0, 0.3)
        elif kind == "ramp":  # a leak: worse and worse until it is cleared
            ramp_len = min(len(base), s + 6 * length) - s
            factor[s:s + ramp_len] *= 1 + np.linspace(0, rng.uniform(1.5, 3.0), ramp_len)
        elif kind == "dip":
            factor[s:] *= rng.uniform(0.4, 0.6)
    return base * factor


def _crash_rate(n: int, rng: Rng, starts: list[int]) -> np.ndarray:
    """Crashes per thousand sessions, hourly: counts over sessions, noisy at night."""
    sessions = 2000 * rng.uniform(0.5, 3.0) * _rhythm(n, 1.0, rng)
    rate = np.full(n, rng.uniform(0.5, 3.0)) / 1000
    rate = _apply(rate, starts, rng, ("spike", "shift", "ramp"), 3)
    crashes = rng.poisson(np.clip(rate * sessions, 0, None))
    return 1000 * crashes / np.maximum(sessions.round(), 1)


def _latency(n: int, rng: Rng, starts: list[int], step_h: float) -> np.ndarray:
    """Dependency latency (ms): a load-following level, log-normal noise, and benign
    single-value outliers (one slow request in a quiet hour is nobody's incident)."""
    level = rng.uniform(50, 400) * (1 + 0.25 * (_rhythm(n, step_h, rng) - 1))
    level = _apply(level, starts, rng, ("spike", "shift", "ramp"), 3)
    values = level * rng.lognormal(0, rng.uniform(0.05, 0.2), n)
    benign = rng.random(n) < 0.004
    values[benign] *= rng.uniform(1.5, 3.0, benign.sum())
    return values.round(1)


def _purchases(n: int, rng: Rng, starts: list[int]) -> np.ndarray:
    """Purchases per hour: strongly daily and weekly; trouble shows as a drop."""
    level = rng.uniform(50, 2000) * _rhythm(n, 1.0, rng, weekly=0.45)
    level = _apply(level, starts, rng, ("drop", "dip", "spike"), 2)
    return rng.poisson(np.clip(level, 0, None)).astype(float)


def _rate(n: int, rng: Rng, starts: list[int], kinds: tuple[str, ...]) -> np.ndarray:
    """A minutely rate (ingress records/s, database requests/s): daily rhythm, gaussian and
    autocorrelated noise, an occasional benign burst."""
    level = rng.uniform(20, 5000) * _rhythm(n, 1 / 60, rng, weekly=0.2)
    level = _apply(level, starts, rng, kinds, 15)
    noise = np.zeros(n)
    phi, sd = rng.uniform(0.3, 0.9), rng.uniform(0.02, 0.08)
    eps = rng.normal(0, sd, n)
    for i in range(1, n):  # AR(1): minutes are not independent
        noise[i] = phi * noise[i - 1] + eps[i]
    return (level * (1 + noise)).clip(0).round(2)


def _unavailable(n: int, rng: Rng, starts: list[int]) -> np.ndarray:
    """503s per minute: zero most minutes, a stray one or two now and then, and a
    sustained burst in an incident."""
    lam = np.full(n, rng.uniform(0.01, 0.08))
    for s in starts:
        e = min(n, s + int(rng.integers(5, 40)))
        lam[s:e] = rng.uniform(3, 20)
    return rng.poisson(lam).astype(float)


def synthetic_files(seed: int = 7) -> list[NabFile]:
    """The generated kinds of series (see the module doc), 42 files."""
    rng = np.random.default_rng(seed)
    files = []
    hour, minute = timedelta(hours=1), timedelta(minutes=1)
    kinds: list[tuple[str, int, timedelta, Callable[[int, list[int]], np.ndarray]]] = [
        ("hourly_crash_rate", 8, hour, lambda n, st: _crash_rate(n, rng, st)),
        ("hourly_api_latency", 8, hour, lambda n, st: _latency(n, rng, st, 1.0)),
        ("hourly_purchases", 8, hour, lambda n, st: _purchases(n, rng, st)),
        ("minutely_ingress", 6, minute,
         lambda n, st: _rate(n, rng, st, ("drop", "shift", "spike"))),
        ("minutely_db_requests", 6, minute,
         lambda n, st: _rate(n, rng, st, ("spike", "drop", "dip"))),
        ("minutely_unavailable", 6, minute, lambda n, st: _unavailable(n, rng, st)),
    ]
    for category, count, step, make in kinds:
        for i in range(count):
            if step == hour:
                n = int(rng.choice([720, 720, 1440]))  # 30 or 60 days
            else:
                n = int(rng.choice([480, 1440, 4320, 10080]))  # 8 h to 7 days
            k = 0 if i == count - 1 else int(rng.integers(1, 4))  # the last: no anomaly
            starts = _anomaly_starts(n, k, rng, early=i % 2 == 0)
            files.append(labelled_file(f"{category}/{category}_{i}.csv", make(n, starts), step,
                                   starts))
    return files


def write_corpus(corpus: Corpus, root: str | pathlib.Path) -> pathlib.Path:
    """Write ``corpus`` in NAB's layout (``data/<category>/<file>.csv``,
    ``labels/combined_windows.json``), for ``selfheal detect`` or NAB's own scorer."""
    root = pathlib.Path(root)
    labels = {}
    for f in corpus.files:
        path = root / "data" / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{t:%Y-%m-%d %H:%M:%S},{v!r}" for t, v in zip(f.timestamps, f.values,
                                                                   strict=True)]
        path.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
        labels[f.name] = [[f"{f.timestamps[s]:%Y-%m-%d %H:%M:%S}.000000",
                           f"{f.timestamps[e]:%Y-%m-%d %H:%M:%S}.000000"] for s, e in f.windows]
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels, indent=1))
    return root

