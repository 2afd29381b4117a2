"""The service corpus (:mod:`learning.service_corpus`) with the simulator's part: the
scenario library's own faults, seen as a predictive monitor sees them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np

from learning.nab import Corpus, NabFile
from learning.service_corpus import labelled_file, synthetic_files

from .engine import Simulation
from .scenario import SCENARIOS, load_scenario

__all__ = ["service_corpus", "simulated_files"]


def simulated_files(seeds: tuple[int, ...] = (1, 2), lead_s: float = 3600.0) -> list[NabFile]:
    """The scenario library's error rates without healing (faults run their course), each
    fault's first failed request a label: per 10 seconds for the two-hour scenarios, per
    minute for the day long ones (the week long one would be 60k rows a service; the
    hourly kinds cover it).
    Every run gets ``lead_s`` of quiet history first, so no fault falls in NAB's probation
    (where its label would be dropped and its detection scored as a false alarm)."""
    files = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        sc = load_scenario(path)
        if sc.duration_s > 2 * 86400:
            continue
        sc = replace(sc, duration_s=sc.duration_s + lead_s,
                     faults=tuple(replace(f, at_s=f.at_s + lead_s) for f in sc.faults))
        bucket = 10 if sc.duration_s <= 4 * 3600 else 60
        for seed in seeds:
            result = Simulation(sc, seed=seed, healing=False, predictive=False).run()
            for service, log in result.logs.items():
                # labelled where requests start failing (a leak's memory climb is not in
                # the error rate)
                starts = [int(f.impact_start) // bucket for f in result.incidents
                          if service in {f.spec.service} | sc.dependents(f.spec.service)]
                # without a guard every request goes to the primary: what it did not
                # serve is its error
                total = np.asarray(log.total, dtype=float)
                failed = total - np.asarray(log.served, dtype=float)
                m = len(total) // bucket
                calls = total[:m * bucket].reshape(m, bucket).sum(axis=1)
                errors = failed[:m * bucket].reshape(m, bucket).sum(axis=1)
                rate = np.where(calls > 0, errors / np.maximum(calls, 1), 0.0)
                files.append(labelled_file(f"simulated/{path.stem}_{service}_s{seed}.csv",
                                       rate.round(5), timedelta(seconds=bucket), starts))
    return files


def generate_corpus(seed: int = 7, simulated: bool = True) -> Corpus:
    """The whole corpus: the generated kinds, and (unless ``simulated`` is False) the
    scenario library's runs."""
    return Corpus(synthetic_files(seed) + (simulated_files() if simulated else []))


def service_corpus(seed: int = 7, simulated: bool = True) -> Corpus:
    """The whole corpus: the generated kinds of series, and (unless ``simulated`` is False)
    the scenario library's runs."""
    return Corpus(synthetic_files(seed) + (simulated_files() if simulated else []))
