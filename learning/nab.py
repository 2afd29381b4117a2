"""The Numenta Anomaly Benchmark's scoring rules, for judging detectors on its corpus.

Implements the rules as the NAB corpus README (docs/learning.md summarises them) and the NAB
paper state them:

* the first 15 % of each file (at most 750 rows) is probationary: detections there are not
  scored, and windows starting there are dropped;
* inside a window only the earliest detection counts, worth ``A_TP * s(y) / s(-1)`` where
  ``y`` runs from -1 at the window's left edge to 0 at its right and
  ``s(y) = 2 / (1 + e^(5y)) - 1``; a window without one costs ``A_FN``;
* a detection outside every window costs ``A_FP * s(y)`` with ``y`` its distance after the
  previous window in that window's widths (-1 before the first window: a full ``A_FP``);
* one threshold per (detector, profile) for the whole corpus, the one that maximises the
  total: found exactly by sweeping every distinct score, highest first;
* normalised so that never detecting scores 0 and detecting at every window's left edge
  (and nowhere else) scores 100.
"""

from __future__ import annotations

import bisect
import csv
import functools
import json
import math
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["PROFILES", "Corpus", "NabFile", "Profile", "hourly_means", "load_corpus",
           "nab_probation", "raw_at", "score_corpus", "score_detector", "score_file",
           "score_held_out"]


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES = (Profile("standard", 1.0, 0.11, 1.0), Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
            Profile("reward_low_FN_rate", 1.0, 0.11, 2.0))


def _s(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


_S_LEFT = _s(-1.0)


@dataclass
class NabFile:
    name: str
    timestamps: list[datetime]
    values: list[float]
    windows: list[tuple[int, int]]  # row indices, inclusive, after the probationary cut
    probation: int  # rows [0, probation) are not scored

    @functools.cached_property
    def seconds(self) -> list[float]:
        """Each row's time in epoch seconds (UTC), as a detector is given it."""
        return [t.replace(tzinfo=UTC).timestamp() for t in self.timestamps]

    @property
    def value_range(self) -> tuple[float, float]:
        """The file's minimum and maximum: NAB's range hint."""
        return min(self.values), max(self.values)


@dataclass
class Corpus:
    files: list[NabFile]

    @property
    def windows(self) -> int:
        return sum(len(f.windows) for f in self.files)


def nab_probation(rows: int) -> int:
    """NAB's probationary period: the first 15 % of a file's rows, at most 750, unscored."""
    return min(math.floor(0.15 * rows), 750)


def load_corpus(root: str | pathlib.Path, labels: str = "combined_windows.json") -> Corpus:
    root = pathlib.Path(root)
    spec = json.loads((root / "labels" / labels).read_text())
    files = []
    for name in sorted(spec):
        stamps, values = [], []
        with open(root / "data" / name, newline="") as f:
            for row in csv.DictReader(f):
                stamps.append(datetime.fromisoformat(row["timestamp"]))
                values.append(float(row["value"]))
        n = len(values)
        probation = nab_probation(n)
        windows = []
        for start, end in spec[name]:
            s = bisect.bisect_left(stamps, datetime.fromisoformat(start))
            e = bisect.bisect_right(stamps, datetime.fromisoformat(end)) - 1
            if s >= probation and e >= s:
                windows.append((s, e))
        files.append(NabFile(name, stamps, values, windows, probation))
    return Corpus(files)


def hourly_means(corpus: Corpus, step_s: float = 300.0, per: int = 12) -> Corpus:
    """Every file of ``corpus`` whose step is ``step_s`` as the means of each ``per`` rows
    (NAB's 5-minute series as hourly ones), its windows on the rows they fall in and NAB's
    probation taken again: short hourly series (a few hundred to about 1,300 values), real
    and labelled, as a month of a service's hourly metrics is. The windows keep NAB's
    labelling (a tenth of the file, shared among its anomalies)."""
    files = []
    for f in corpus.files:
        gaps = sorted(b - a for a, b in zip(f.seconds, f.seconds[1:], strict=False))
        if not gaps or gaps[len(gaps) // 2] != step_s:
            continue
        n = len(f.values) // per
        values = [sum(f.values[i * per:(i + 1) * per]) / per for i in range(n)]
        probation = nab_probation(n)
        windows = [(s // per, min(e // per, n - 1)) for s, e in f.windows
                   if probation <= s // per < n]
        files.append(NabFile(f.name, f.timestamps[:n * per:per], values, windows, probation))
    return Corpus(files)


def _row_costs(f: NabFile, profile: Profile) -> list[tuple[int, float]]:
    """Per row: (window index or -1, the value of a detection there)."""
    out: list[tuple[int, float]] = []
    w = 0
    prev: tuple[int, int] | None = None
    for i in range(len(f.values)):
        while w < len(f.windows) and f.windows[w][1] < i:
            prev = f.windows[w]
            w += 1
        if i < f.probation:
            out.append((-2, 0.0))  # not scored
        elif w < len(f.windows) and f.windows[w][0] <= i:
            s, e = f.windows[w]
            y = -(e - i + 1) / (e - s + 1)
            out.append((w, profile.tp * _s(y) / _S_LEFT))
        elif prev is None:
            out.append((-1, -profile.fp))
        else:
            y = (i - prev[1]) / (prev[1] - prev[0] + 1)
            out.append((-1, profile.fp * (_s(y) if y <= 3.0 else -1.0)))
    return out


def score_corpus(corpus: Corpus, scores: Sequence[Sequence[float]],
                 profile: Profile) -> tuple[float, float]:
    """The normalised NAB score of ``scores`` (one list per file, one score per row) and the
    threshold that earns it."""
    events: list[tuple[float, int, int, int, float]] = []  # (score, file, row, window, value)
    total_windows = 0
    for k, (f, sc) in enumerate(zip(corpus.files, scores, strict=True)):
        if len(sc) != len(f.values):
            raise ValueError(f"{f.name}: {len(sc)} scores for {len(f.values)} rows")
        for i, (w, v) in enumerate(_row_costs(f, profile)):
            if w != -2:
                events.append((float(sc[i]), k, i, w, v))
        total_windows += len(f.windows)
    null = -profile.fn * total_windows
    perfect = profile.tp * total_windows
    events.sort(key=lambda e: -e[0])
    total = null
    best, best_threshold = total, 1.0 + 1e-9
    first: dict[tuple[int, int], tuple[int, float]] = {}  # window -> (row, its value)
    i = 0
    while i < len(events):
        threshold = events[i][0]
        while i < len(events) and events[i][0] == threshold:  # every row at this score
            _, k, row, w, v = events[i]
            if w == -1:
                total += v
            else:
                key = (k, w)
                cur = first.get(key)
                if cur is None:
                    total += profile.fn + v  # the miss is undone, the detection counts
                    first[key] = (row, v)
                elif row < cur[0]:
                    total += v - cur[1]
                    first[key] = (row, v)
            i += 1
        if total > best:
            best, best_threshold = total, threshold
    return 100.0 * (best - null) / (perfect - null), best_threshold


def raw_at(corpus: Corpus, scores: Sequence[Sequence[float]], profile: Profile,
           threshold: float) -> float:
    """The unnormalised score of ``scores`` with detections at ``threshold`` and above."""
    total = 0.0
    for f, sc in zip(corpus.files, scores, strict=True):
        first: set[int] = set()
        for i, (w, v) in enumerate(_row_costs(f, profile)):
            if w == -2 or sc[i] < threshold:
                continue
            if w == -1:
                total += v
            elif w not in first:  # rows come in order: the first is the earliest
                first.add(w)
                total += v
        total -= profile.fn * (len(f.windows) - len(first))
    return total


def score_held_out(corpus: Corpus, scores: Sequence[Sequence[float]], profile: Profile,
                   ) -> float:
    """The normalised score when each category (``realTweets``, ...) is scored at the
    threshold that is best for the *other* categories: what a threshold chosen on series
    like these, but not these, earns. NAB's own rule picks the threshold on the corpus."""
    groups: dict[str, list[int]] = {}
    for k, f in enumerate(corpus.files):
        groups.setdefault(f.name.split("/")[0], []).append(k)
    total = 0.0
    for members in groups.values():
        rest = [k for k in range(len(corpus.files)) if k not in members]
        _, threshold = score_corpus(Corpus([corpus.files[k] for k in rest]),
                                    [scores[k] for k in rest], profile)
        total += raw_at(Corpus([corpus.files[k] for k in members]),
                        [scores[k] for k in members], profile, threshold)
    n = corpus.windows
    return 100.0 * (total + profile.fn * n) / (profile.tp * n + profile.fn * n)


Detector = Callable[[float, float], float]


def score_file(f: NabFile, make: Callable[..., Detector], hints: bool = False) -> list[float]:
    """A fresh detector's scores for one file, given each value and its time (epoch s);
    with ``hints``, made with the file's range (``make(value_range=(min, max))``), as NAB's
    runner gives its detectors."""
    step = make(value_range=f.value_range) if hints else make()
    return [step(v, t) for v, t in zip(f.values, f.seconds, strict=True)]


def score_detector(corpus: Corpus, make: Callable[..., Detector], hints: bool = False,
                   ) -> tuple[list[list[float]], dict[str, float]]:
    """Run a fresh detector over every file; returns the scores and each profile's score."""
    all_scores = [score_file(f, make, hints) for f in corpus.files]
    return all_scores, {p.name: score_corpus(corpus, all_scores, p)[0] for p in PROFILES}
