"""Instrumentation: per-route latency and success, route templates, never in the way."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from actors.instrumentation import InstrumentationMiddleware, instrument
from healing import InMemorySink, ManualClock


def make_app(sink, clock):
    app = FastAPI()

    @app.get("/patients/{patient_id}")
    async def patient(patient_id: str):
        clock.advance(0.25)
        return {"id": patient_id}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("bug")

    @app.get("/missing")
    async def missing():
        raise HTTPException(404)

    @app.get("/unavailable")
    async def unavailable():
        raise HTTPException(503)

    app.add_middleware(InstrumentationMiddleware, sink=sink, service="api", clock=clock)
    return app


def test_routes_are_recorded_by_template_with_latency_and_status():
    sink, clock = InMemorySink(), ManualClock()
    client = TestClient(make_app(sink, clock), raise_server_exceptions=False)
    assert client.get("/patients/MRN-424242").status_code == 200
    client.get("/missing")
    client.get("/unavailable")
    client.get("/boom")
    client.get("/nowhere")
    by_name = {o.service: o for o in sink.outcomes}
    ok = by_name["api:GET /patients/{patient_id}"]
    assert ok.success and ok.latency_s == 0.25
    assert by_name["api:GET /missing"].success  # the client's mistake, not an outage
    assert by_name["api:GET /unavailable"].error_kind == "http_503"
    assert by_name["api:GET /boom"].error_kind == "RuntimeError"
    assert "api:GET unmatched" in by_name
    assert "MRN-424242" not in repr(list(sink.outcomes))


def test_a_broken_sink_never_fails_the_request():
    class Broken:
        def record(self, _):
            raise OSError("full")

    client = TestClient(make_app(Broken(), ManualClock()))
    assert client.get("/patients/x").status_code == 200


def test_instrument_wraps_sync_and_async_callables_with_a_per_process_sink_factory():
    clock = ManualClock()
    made = []

    def factory():
        made.append(InMemorySink())
        return made[-1]

    @instrument("triage-model", factory, clock)
    async def predict(x):
        await asyncio.sleep(0)
        clock.advance(0.1)
        return x * 2

    @instrument("triage-model", factory, clock)
    def fails():
        raise ValueError("bad input")

    assert asyncio.run(predict(2)) == 4
    asyncio.run(predict(3))
    with pytest.raises(ValueError):
        fails()
    assert len(made) == 2  # one sink per decorated function, made on first use
    outcomes = [o for s in made for o in s.outcomes]
    assert [(o.success, o.error_kind) for o in outcomes] == [(True, None), (True, None),
                                                             (False, "ValueError")]
    assert outcomes[0].latency_s == pytest.approx(0.1)
