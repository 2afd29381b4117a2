"""The simulated parts of ``selfheal demo``: a two-hour outage replayed with self-healing and
without, in a couple of seconds; and a week of daily deadlocks, learnt and prevented."""

from __future__ import annotations

import datetime
import sys
from typing import Any, TextIO

from simulation.runner import simulate
from simulation.scenario import SCENARIOS, load_scenario
from simulation.table import format_reports

SCENARIO = SCENARIOS / "ai_provider_outage.yaml"


def run_simulation_demo(out: TextIO = sys.stdout, chapter: int = 8) -> dict[str, Any]:
    say = out.write
    say(f"\n── {chapter}. Two hours replayed in the simulator " + "─" * 30 + "\n\n")
    say("   The same guard, breakers, fallback tiers, safety rules and workflow executor,\n"
        "   driven by simulated traffic on a simulated clock: 20 requests/s to\n"
        "   clinical_reasoning; gemini:pro is down from 08:30 to 08:50. The baseline is the\n"
        "   same traffic and fault with no selfheal at all.\n\n")
    [report] = simulate([load_scenario(SCENARIO)])
    for line in format_reports([report]).splitlines():
        say(f"   {line}\n")
    say("   (selfheal simulate simulation/scenarios/*.yaml replays the whole library.)\n")
    return report


DEADLOCKS = SCENARIOS / "daily_deadlock_week.yaml"


def run_deadlock_demo(out: TextIO = sys.stdout, chapter: int = 9) -> dict[str, Any]:
    """A recurring deadlock, learnt and prevented: a week is replayed, since recurrence
    takes days. Returns what happened to each day's deadlock."""
    from simulation.engine import Simulation  # noqa: PLC0415
    from simulation.metrics import run_metrics  # noqa: PLC0415

    say = out.write
    say(f"\n── {chapter}. A deadlock every day at 14:00, a week replayed " + "─" * 22 + "\n\n")
    say("   Recurrence takes days, so this is replayed too: the record database deadlocks\n"
        "   at 14:00 for ten minutes each day (clinical reasoning, upstream, feels it),\n"
        "   until its sessions are recycled. The predictive monitor's pattern recogniser,\n"
        "   refitted hourly on the run's own detections, and its prevention engine are the\n"
        "   live service's.\n\n")
    scenario = load_scenario(DEADLOCKS)
    sim = Simulation(scenario)
    result = sim.run()
    incidents = {i["start_s"]: i for i in run_metrics(result)["incidents"]}
    days = []
    for f in sorted(result.incidents, key=lambda f: f.start):
        day = (_at(scenario, f.start).date() - scenario.start.date()).days + 1
        if f.averted:
            ahead = [p for p in sim.predictions
                     if p["service"] == f.spec.service and p["at"] <= f.start]
            when = f"predicted at {_clock(scenario, ahead[-1]['at'])}, " if ahead else ""
            what = ahead[-1]["pattern"] if ahead else "a predicted recurrence"
            say(f"   day {day}: prevented: {when}acted on before 14:00\n"
                f"          ({what})\n")
            days.append("prevented")
            continue
        i = incidents[round(f.start, 3)]
        seen = ("never detected" if i["detected_s"] is None
                else f"detected after {i['detected_s'] - f.start:.0f} s")
        healed = ("not recovered" if i["recovered_s"] is None
                  else "answered throughout, by the fallbacks" if i["recovered_s"] <= f.start
                  else f"answering again after {i['recovered_s'] - f.start:.0f} s")
        say(f"   day {day}: deadlock at {_clock(scenario, f.start)}: {seen}, {healed}\n")
        days.append("incident")
    say(f"\n   {days.count('prevented')} of {len(days)} deadlocks prevented once the pattern "
        "was learnt; the others detected\n   and healed by their workflow. Replay it:\n"
        "   selfheal simulate simulation/scenarios/daily_deadlock_week.yaml\n")
    return {"days": days, "predictions": list(sim.predictions)}


def _at(scenario: Any, t: float | None) -> datetime.datetime:
    """Seconds into ``scenario`` as the date and time they stand for."""
    return scenario.start + datetime.timedelta(seconds=t or 0.0)


def _clock(scenario: Any, t: float | None) -> str:
    """Seconds into ``scenario`` as the time of day (HH:MM)."""
    return _at(scenario, t).strftime("%H:%M")
