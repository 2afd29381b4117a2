"""The last part of ``selfheal demo``: a two-hour outage replayed in the simulator, with
self-healing and without, in a couple of seconds."""

from __future__ import annotations

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
