"""A fault's own promise: the API flood must be refused (4xx), or told to retry (503) while
a store is away, every request; and the API must still answer afterwards."""

from __future__ import annotations

from serve.chaos.faults import ApiFlood


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
