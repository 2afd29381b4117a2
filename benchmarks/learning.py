"""Learning in the live loop, measured.

Training at production size: a day of history for 10 services, trained with the training
job's Ray fan-out (services, replays), each phase timed, against the same training run
serially in one process. The day is the simulation suite's 24 h x 10 services scenario,
exported as an event log (what ``selfheal simulate --events`` writes and what a day of live
history is read as); the candidates are replayed through the three default scenarios, as a
scheduled training does.

Memory: the library's leak detected in memory ahead of its first failed request, against the
same leak with no memory signal.

Paging (``simulation.paging``): every scenario of the library and a week of noisy healthy
days (the noisy day on seven seeds), each replayed through two-key paging, paging on every
detection, and paging on burn-rate alerts alone: pages, and incidents that needed a human
and got none.
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


def paging_figures() -> list[Figure]:
    import dataclasses

    from simulation.engine import Simulation
    from simulation.paging import paging
    from simulation.scenario import SCENARIOS

    modes = ("two_key", "detection", "burn")
    library = [Simulation(load_scenario(p)).run() for p in sorted(SCENARIOS.glob("*.yaml"))]
    noisy = load_scenario(SCENARIOS / "noisy_but_healthy_day.yaml")
    week = [Simulation(dataclasses.replace(noisy, seed=noisy.seed + i)).run()
            for i in range(7)]
    lib = {m: [paging(r, m) for r in library] for m in modes}
    wk = {m: [paging(r, m) for r in week] for m in modes}
    pages = {m: sum(o.pages for o in lib[m]) for m in modes}
    missed = {m: sum(len(o.missed) for o in lib[m]) for m in modes}
    needed = sum(o.needs_human for o in lib["two_key"])
    weekly = {m: sum(o.pages for o in wk[m]) for m in modes}
    n = len(library)
    return [
        figure(f"pages, {n} library scenarios ({needed} incidents needing a human), two-key",
               pages["two_key"], "pages", "paging on every detection", pages["detection"]),
        figure(f"pages, {n} library scenarios, two-key against burn-rate alone",
               pages["two_key"], "pages", "paging on burn-rate alerts alone", pages["burn"]),
        figure(f"incidents needing a human left unpaged, {n} library scenarios, two-key",
               missed["two_key"], "incidents", "paging on every detection",
               missed["detection"]),
        figure("tickets instead of pages, library scenarios, two-key",
               sum(o.tickets for o in lib["two_key"]), "notices",
               "pages on every detection", pages["detection"]),
        figure("pages in a noisy healthy week (7 seeds of the noisy day), two-key",
               weekly["two_key"], "pages", "paging on every detection", weekly["detection"]),
    ]


def memory_figures() -> list[Figure]:
    """The library's leak with the memory signal, and the same leak without one (memory
    flat: a leak the monitor cannot see in memory)."""
    import dataclasses

    from simulation.engine import Simulation
    from simulation.metrics import run_metrics
    from simulation.scenario import SCENARIOS

    sc = load_scenario(SCENARIOS / "api_memory_leak.yaml")
    [leak] = sc.faults
    blind = dataclasses.replace(sc, faults=(dataclasses.replace(
        leak, params={**leak.params, "mem_growth": 0.0}),))
    seen, unseen = Simulation(sc).run(), Simulation(blind).run()
    m_seen, m_unseen = run_metrics(seen), run_metrics(unseen)
    return [
        figure("api-memory-leak: detected before its first failed request, memory signal",
               m_seen["detected_ahead_s"] or 0.0, "s",
               "without it: detected after its first failed request", m_unseen["mttd_s"]),
        figure("api-memory-leak: failed calls to the API server, memory signal",
               sum(seen.logs["api_server"].errors), "calls", "without it",
               sum(unseen.logs["api_server"].errors)),
    ]


def run() -> list[Figure]:
    return training_figures() + paging_figures() + memory_figures()


def training_figures() -> list[Figure]:
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
