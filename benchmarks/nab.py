"""Issue 6's NAB figures: ``selfheal detect`` scored with NAB's rules on its 58 series,
beside the baselines scored the same way in the same run, and beside the published
scoreboard (those are NAB's published numbers, not measured here)."""

from __future__ import annotations

import os
import pathlib
import time

from learning.detectors import DETECTORS
from learning.nab import PROFILES, load_corpus, score_detector, score_held_out

from .harness import Figure, figure

# NAB scoreboard (standard, reward_low_FP_rate, reward_low_FN_rate), as published.
PUBLISHED = {
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM": (70.5, 62.6, 75.2),
    "CAD OSE": (69.9, 67.0, 73.2),
    "windowed Gaussian": (39.6, 20.9, 47.4),
}


def nab_root() -> pathlib.Path:
    """``NAB_DATA``, or the workplace's copy beside the project."""
    env = os.environ.get("NAB_DATA")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


def run() -> list[Figure]:
    root = nab_root()
    if not (root / "labels").exists():
        print(f"NAB corpus not found at {root} (set NAB_DATA): NAB figures skipped")
        return []
    corpus = load_corpus(root)
    rows = sum(len(f.values) for f in corpus.files)
    results, scores = {}, {}
    for name, make in DETECTORS.items():
        t0 = time.perf_counter()
        scores[name], results[name] = score_detector(corpus, make)
        results[name]["seconds"] = time.perf_counter() - t0
    figures = []
    for k, p in enumerate(PROFILES):
        ours = results["selfheal"][p.name]
        for base in ("deviation", "rolling_zscore", "static_threshold"):
            label = ("deviation detector (its cold start)" if base == "deviation"
                     else base.replace("_", " "))
            figures.append(figure(f"NAB {p.name}: selfheal detect vs {label}", ours, "points",
                                  f"{label}, same rules, same run", results[base][p.name]))
        # the threshold chosen without the category it scores: a check on over-fitting
        figures.append(figure(
            f"NAB {p.name}, each category at the others' threshold: selfheal vs deviation",
            score_held_out(corpus, scores["selfheal"], p), "points",
            "deviation detector, same rule, same run",
            score_held_out(corpus, scores["deviation"], p)))
        best = max(PUBLISHED.items(), key=lambda kv: kv[1][k])
        figures.append(figure(f"NAB {p.name}: selfheal detect vs the scoreboard", ours, "points",
                              f"best published ({best[0]}, not measured here)", best[1][k]))
    figures.append(figure("selfheal detect, NAB corpus throughput",
                          rows / results["selfheal"]["seconds"], "rows/s",
                          "rolling z-score baseline, same run",
                          rows / results["rolling_zscore"]["seconds"]))
    return figures
