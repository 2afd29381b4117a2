"""The learning path at production size: a day of history for 10 services, trained with the
training job's Ray fan-out (services, replays), each phase timed, against the same training
run serially in one process.

The day is the simulation suite's 24 h x 10 services scenario, exported as an event log (what
``selfheal simulate --events`` writes and what a day of live history is read as); the
candidates are replayed through the three default scenarios, as a scheduled training does.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from actors.training_job import DEFAULT_SCENARIOS, PHASES, run_training
from simulation.runner import simulate
from simulation.scenario import load_scenario

from .harness import Figure, figure
from .simulation import _ten_services_day


def _train(events: str, replay_on: list[Any], use_ray: bool) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run_training(f"sqlite:///{tmp}/mlflow.db", [], replay_on, use_ray=use_ray,
                           event_logs=[events])
        return time.perf_counter() - t0, out


def run() -> list[Figure]:
    from actors.ray_gateway import init_ray

    replay_on = [load_scenario(p) for p in DEFAULT_SCENARIOS]
    with tempfile.TemporaryDirectory() as tmp:
        [report] = simulate([_ten_services_day()], events_dir=tmp)
        [events] = report["event_logs"]
        init_ray(num_cpus=2)  # as the other suites: left running for the next
        fanned, out = _train(events, replay_on, True)
        serial, _ = _train(events, replay_on, False)
    services = len(out["policies"])
    figures = [figure(f"training on a day of history, {services} services, Ray fan-out "
                      "(target 300 s)", fanned, "s", "the same training serially, one process",
                      serial)]
    for phase in PHASES:
        figures.append(figure(f"training on a day of history, phase {phase.replace('_', ' ')}",
                              out["phases_s"][phase], "s", "the whole training, Ray fan-out",
                              fanned))
    return figures
