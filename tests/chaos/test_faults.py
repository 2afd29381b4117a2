"""The faults themselves: the provider stand-in misbehaves as each mode says, and a fault's
own promise (the API flood must be refused, or told to retry while a store is away; the
metric buffers must really fill) is judged as stated."""

from __future__ import annotations

import random
import threading

import httpx
import pytest

from healing import ManualClock
from serve.chaos.faults import ApiFlood, MetricBuffersFull, ProviderFault
from serve.chaos.providers import ProviderProcess, Providers, ProviderServer

KEY = "clinical_reasoning:gemini:pro"


@pytest.fixture
def world():
    """The providers' server on a thread, on a manual clock, and a client of it."""
    clock = ManualClock()
    server = ProviderServer(leak_growth=0.5, clock=clock, rng=random.Random(7)).start()
    client = Providers(server.url, timeout_s=60)
    try:
        yield clock, client
    finally:
        client.close()
        server.close()


def test_a_hanging_provider_holds_every_call_until_it_recovers_then_drops_them(world):
    _, providers = world
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
    for _ in range(500):  # until all three are held (the calls' arrival, not time, is awaited)
        if providers.state(KEY)["holding"] == 3:
            break
        waited.wait(0.01)
    assert providers.state(KEY)["holding"] == 3 and errors == []  # held: no answer, no error
    providers.set(KEY, "ok")
    for t in threads:
        t.join(timeout=30)
    assert [type(e) for e in errors] == [ConnectionResetError] * 3
    assert providers.state(KEY) == {"mode": "ok", "calls": 3, "holding": 0, "hung": 3}
    assert call("q")["answer"] == "ok"  # recovered: answers again


def test_a_failing_provider_answers_503_and_the_sdk_raises(world):
    _, providers = world
    providers.set(KEY, "fail")
    with pytest.raises(ConnectionError, match="answered 503"):
        providers.fn(KEY, "clinical_reasoning")("q")


def test_a_leaking_provider_fails_more_the_longer_it_leaks(world):
    clock, providers = world
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


def test_unknown_modes_are_refused_by_the_client_and_the_server(world):
    _, providers = world
    with pytest.raises(ValueError, match="one of ok, fail, slow, hang, leak"):
        providers.set(KEY, "explode")
    with httpx.Client(base_url=providers.url) as raw:
        assert raw.put(f"/control/{KEY}", json={"mode": "explode"}).status_code == 400
        assert raw.put(f"/control/{KEY}", content=b"{not json").status_code == 400
    assert providers.state(KEY)["mode"] == "ok"  # nothing changed
    with pytest.raises(ValueError, match="provider fault mode"):
        ProviderFault(0, 1, key=KEY, mode="explode")


def test_the_providers_run_in_a_process_of_their_own():
    proc = ProviderProcess().start()
    client = Providers(proc.url, timeout_s=30)
    try:
        assert client.fn(KEY, "clinical_reasoning")("q")["service"] == "clinical_reasoning"
        assert client.state(KEY)["calls"] == 1
    finally:
        client.close()
        proc.close()
    with pytest.raises(ConnectionError, match="could not be reached"):
        Providers(proc.url, timeout_s=5).fn(KEY, "clinical_reasoning")("q")


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

