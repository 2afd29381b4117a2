"""``selfheal demo``: a scripted AI-provider outage, driven through the real core.

Time is simulated (a ManualClock), so two minutes of outage take a fraction of a second and
every run prints the same story.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from healing import (
    CircuitBreakerRegistry,
    CircuitConfig,
    CircuitTransitioned,
    ClinicalContext,
    ClinicalSafetyError,
    FallbackExhausted,
    Guard,
    InMemorySink,
    ManualClock,
)


@dataclass
class Providers:
    """The simulated providers: which are up, and how long they take."""

    clock: ManualClock
    down: set[str] = field(default_factory=set)

    def provider(self, name: str, latency_s: float, answer: dict[str, Any]):
        def call(question: str) -> dict[str, Any]:
            if name in self.down:
                self.clock.advance(2.0)  # a dead provider times out
                raise TimeoutError(f"{name} did not answer within 2 s")
            self.clock.advance(latency_s)
            return dict(answer, question=question, source=name)
        call.__name__ = name
        return call


class Narrator:
    def __init__(self, out: TextIO, clock: ManualClock, color: bool) -> None:
        self.out, self.clock, self.color = out, clock, color

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def chapter(self, title: str, text: str) -> None:
        self.out.write(f"\n{self._c('1', f'── {title} ')}{'─' * max(0, 70 - len(title))}\n")
        if text:
            self.out.write(f"   {text}\n")

    def line(self, text: str, tone: str = "") -> None:
        codes = {"ok": "32", "warn": "33", "bad": "31", "info": "36"}
        self.out.write(f"   t={self.clock.now():6.1f}s  {self._c(codes.get(tone, '0'), text)}\n")


def run_demo(out: TextIO = sys.stdout, color: bool | None = None) -> dict[str, Any]:
    """Run the scripted outage; returns what happened, for tests."""
    clock = ManualClock()
    say = Narrator(out, clock, out.isatty() if color is None else color)
    world = Providers(clock)
    sink = InMemorySink()
    # Small windows so the story is short: 6 calls, opens at 50 % failures, waits 30 s.
    breakers = CircuitBreakerRegistry(clock, CircuitConfig(
        window_size=6, minimum_number_of_calls=4, failure_rate_threshold=0.5,
        slow_call_duration_s=5.0, wait_in_open_s=30.0, permitted_calls_in_half_open=2))
    transitions: list[CircuitTransitioned] = []
    breakers.add_listener(lambda e: transitions.append(e)
                          if isinstance(e, CircuitTransitioned) else None)
    breakers.add_listener(lambda e: say.line(
        f"⚡ circuit {e.circuit!r}: {e.from_state.name} → {e.to_state.name} ({e.reason})", "info")
        if isinstance(e, CircuitTransitioned) else None)
    g = Guard(clock=clock, breakers=breakers, sink=sink)

    gemini = world.provider("gemini:pro", 0.8, {"diagnosis": "community-acquired pneumonia",
                                                "confidence": 0.91})
    g.fallbacks.register_provider("clinical_reasoning", "deepseek", world.provider(
        "deepseek", 1.1, {"diagnosis": "community-acquired pneumonia", "confidence": 0.84}))
    g.fallbacks.register_provider("pharmaguard", "local_database", world.provider(
        "local_database", 0.05, {"interactions": []}))
    diagnostic = ClinicalContext("diagnostic", "high", patient_id="patient-0042")
    served: list[str] = []

    def ask(question: str, context: ClinicalContext = diagnostic) -> None:
        try:
            r = g.call("clinical_reasoning", gemini, question, context=context,
                       provider="gemini:pro", cache_key=question)
        except (FallbackExhausted, ClinicalSafetyError) as exc:
            served.append("error")
            say.line(f"✗ {exc}", "bad")
            return
        served.append(r.tier)
        src = r.data.get("source", r.tier)
        extra = f" — warning: {r.warning}" if r.warning else ""
        tone = "ok" if r.tier == "primary" else "warn"
        say.line(f"✓ answered by {r.tier} ({src}), confidence {r.data['confidence']}{extra}",
                 tone)

    say.chapter("1. Normal operation",
                "Diagnostic questions go to the primary model, gemini:pro. Good answers are "
                "also\n   cached, keyed by a pseudonym of the patient, for later emergencies.")
    for _ in range(3):
        ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?")
        clock.advance(5)

    say.chapter("2. gemini:pro goes down",
                "Each request still gets an answer: the guard falls back to the alternative "
                "provider,\n   deepseek, and checks its answer (confidence > 0.7) before "
                "serving it.")
    world.down.add("gemini:pro")
    for _ in range(4):
        ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?")
        clock.advance(1)
    say.line("the circuit is now OPEN: gemini:pro is not even tried, which saves 2 s a request",
             "info")
    ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?")

    say.chapter("3. deepseek fails too",
                "Next tier: the cached answer for this patient and question, if it is at most "
                "300 s old,\n   served with a stale-data warning. Another patient's cached "
                "answer can never be used.")
    world.down.add("deepseek")
    ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?")
    say.line("same question, a different patient: nothing cached for them, no rule engine "
             "registered", "info")
    ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?",
        ClinicalContext("diagnostic", "high", patient_id="patient-0043"))

    say.chapter("4. Safety rules hold during the outage",
                "Life-critical services never fall back: they fail at once, plainly, with "
                "clinical guidance.")

    def triage(_: str) -> dict[str, Any]:
        raise ConnectionError("triage model unreachable")
    try:
        g.call("emergency_triage", triage, "crushing chest pain",
               context=ClinicalContext("diagnostic", "life_critical", patient_id="patient-0042"))
    except ClinicalSafetyError as exc:
        served.append("explicit_failure")
        say.line(f"✗ emergency_triage: {exc.guidance}", "bad")

    say.chapter("5. Recovery",
                "gemini:pro comes back. After 30 s in OPEN the circuit lets 2 trial calls "
                "through\n   (HALF_OPEN); both succeed, so it closes and traffic returns to "
                "the primary.")
    world.down.clear()
    clock.advance(30)
    for _ in range(3):
        ask("chest x-ray shows consolidation, fever 39C: likely diagnosis?")

    say.chapter("What happened", "")
    answered = sum(1 for s in served if s not in ("error", "explicit_failure"))
    say.line(f"{len(served)} requests: {answered} answered "
             f"({served.count('primary')} by the primary, "
             f"{answered - served.count('primary')} by a fallback tier), "
             f"{len(served) - answered} failed explicitly")
    say.line("circuit transitions: " + ", ".join(
        f"{t.from_state.name}→{t.to_state.name}" for t in transitions))
    leaks = sum("patient-00" in repr(o) for o in sink.outcomes)
    say.line(f"{len(sink.outcomes)} outcome records; {leaks} contain a patient identifier",
             "ok" if leaks == 0 else "bad")

    return {"served": served, "transitions": [(t.from_state, t.to_state) for t in transitions],
            "outcomes": list(sink.outcomes)}
