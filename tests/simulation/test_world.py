"""The simulated world's long-lived caller answers exactly as a call made afresh at the same
time does, and spends the random draws replays depend on."""

from __future__ import annotations

import contextlib

from simulation.scenario import FaultKind, FaultSpec, Scenario, ServiceSpec
from simulation.world import ProviderError, World


def _outcomes(world: World, calls: list, times: list[float]) -> list[str]:
    """What each call got, in order; faults start and end on their times as the engine
    would start and end them."""
    now = [0.0]
    pending = sorted([(f.start, 0, f) for f in world.instances]
                     + [(f.end, 1, f) for f in world.instances], key=lambda e: e[:2])
    out = []
    for t, call in zip(times, calls, strict=True):
        while pending and pending[0][0] <= t:
            _, ends, f = pending.pop(0)
            (world.fault_ended if ends else world.fault_started)(f)
        now[0] = t
        try:
            out.append(repr(call(now)))
        except ProviderError as exc:
            out.append(f"error: {exc}")
    return out


def test_a_long_lived_caller_sees_faults_start_and_end_as_a_fresh_call_does():
    spec = ServiceSpec("clinical_reasoning", 50, 0.8, 3.0, 0.05, ("gemini:pro", "deepseek"),
                       "diagnostic", "high")
    fault = FaultSpec("clinical_reasoning", FaultKind.OUTAGE, 20, 10, "gemini:pro")
    scenario = Scenario("world", 60, {spec.name: spec}, (fault,), 7)
    times = [i * 0.05 for i in range(1200)]  # through the outage and out of it again
    providers = ["gemini:pro" if i % 3 else "deepseek" for i in range(len(times))]

    full = World(scenario, 7)
    expected = _outcomes(full, [lambda now, p=p: full.call(spec.name, p, now[0])
                                for p in providers], times)
    fast = World(scenario, 7)
    clock = [0.0]
    callers = {p: fast.caller(spec.name, p, lambda: clock[0]) for p in set(providers)}

    def via_caller(p):
        def call(now):
            clock[0] = now[0]
            return callers[p]()
        return call
    got = _outcomes(fast, [via_caller(p) for p in providers], times)
    assert got == expected
    # both kinds of answer were exercised: background errors, the outage, good answers
    assert any("failed" in o for o in got[:400]) and sum("error" in o for o in got) > 100
    assert any(o.startswith("{") for o in got)


def test_a_calm_call_draws_once_for_the_primary_and_never_for_a_fallback():
    """Replays stay byte-identical only if the calm path spends exactly these draws."""
    spec = ServiceSpec("clinical_reasoning", 50, 0.8, 3.0, 0.05, ("gemini:pro", "deepseek"),
                       "diagnostic", "high")
    world = World(Scenario("world", 60, {spec.name: spec}, (), 7), 7)
    rng = world.rngs[spec.name]
    before = rng.getstate()
    assert world.call(spec.name, "deepseek", 1.0)["answer"] is not None
    assert rng.getstate() == before
    expected = rng.random() < spec.error_rate  # the one draw the primary's call should make
    rng.setstate(before)
    try:
        world.call(spec.name, "gemini:pro", 1.0)
        failed = False
    except ProviderError:
        failed = True
    assert failed == expected
    rng.setstate(before)
    rng.random()
    after_one = rng.getstate()
    rng.setstate(before)
    with contextlib.suppress(ProviderError):
        world.call(spec.name, "gemini:pro", 1.0)
    assert rng.getstate() == after_one
