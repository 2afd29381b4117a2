"""The faults themselves: the provider stand-in misbehaves as each mode says, and a fault's
own promise (the API flood must be refused, or told to retry while a store is away; the
metric buffers must really fill) is judged as stated."""

from __future__ import annotations

import random
import threading

import pytest

from healing import ManualClock
from serve.chaos.faults import ApiFlood, MetricBuffersFull, ProviderFault
from serve.chaos.stack import Providers

KEY = "clinical_reasoning:gemini:pro"


def test_a_hanging_provider_holds_every_call_until_it_recovers_then_resets_them():
    providers = Providers()
    call = providers.fn(KEY, "clinical_reasoning")
    providers.set(KEY, "hang")
    errors: list[BaseException] = []

    def caller():
        try:
            call("q")
        except BaseException as exc:  # what the caller saw is the point
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    waited = threading.Event()
    for _ in range(500):  # until all three are held (a thread start, not time, is waited for)
        if providers.holding(KEY) == 3:
            break
        waited.wait(0.01)
    assert providers.holding(KEY) == 3 and errors == []  # held, not answered, not failed
    providers.set(KEY, "ok")
    for t in threads:
        t.join(timeout=30)
    assert [type(e) for e in errors] == [ConnectionResetError] * 3
    assert providers.hung[KEY] == 3 and providers.holding(KEY) == 0
    assert call("q")["answer"] == "ok"  # recovered: answers again


def test_a_leaking_provider_fails_more_the_longer_it_leaks():
    clock = ManualClock()
    providers = Providers(leak_growth=0.5, clock=clock, rng=random.Random(7))
    call = providers.fn(KEY, "clinical_reasoning")
    providers.set(KEY, "leak")

    def failures(n: int) -> int:
        out = 0
        for _ in range(n):
            try:
                call("q")
            except ConnectionError:
                out += 1
        return out

    assert failures(20) == 0  # just began: nothing leaked yet
    clock.advance(60)  # half of the calls fail after a minute at 0.5 per minute
    assert 0.3 < failures(200) / 200 < 0.7
    clock.advance(60)
    assert failures(20) == 20  # all of them after two


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="one of ok, fail, slow, hang, leak"):
        Providers().set(KEY, "explode")
    with pytest.raises(ValueError, match="provider fault mode"):
        ProviderFault(0, 1, key=KEY, mode="explode")


def test_full_metric_buffers_are_a_fault_only_when_events_were_dropped():
    fault = MetricBuffersFull(0, 5, buffer_max=10)
    assert "metric buffers full" in fault.describe()
    fault.observed["dropped"] = 0
    assert fault.broken_promises() == ["no metric event was dropped: the buffers never "
                                       "filled, so the fault was not tried"]
    fault.observed["dropped"] = 40
    assert fault.broken_promises() == []


def test_an_api_flood_breaks_its_promise_on_any_answer_but_4xx_or_a_dead_api():
    flood = ApiFlood(0, requests=3)
    flood.observed["statuses"] = {"4xx": 3, "livez_after": 1}
    assert flood.broken_promises() == []
    flood.observed["statuses"] = {"4xx": 1, "503": 4, "500": 1, "2xx": 1, "livez_after": 0}
    assert sorted(flood.broken_promises()) == [
        "1 answered 2xx, not 4xx", "1 answered 500, not 4xx",
        "the API did not answer its liveness probe after the flood"]
    flood.observed["statuses"] = {"ReadTimeout": 2, "livez_after": 1}
    assert flood.broken_promises() == ["2 answered ReadTimeout, not 4xx"]
