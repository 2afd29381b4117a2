"""The control API's thread pool: plain routes keep their FastAPI signature, run off the
event loop on a bounded pool, and raise into the app's exception handlers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

from serve.api_threads import ApiThreads


class Answer(BaseModel):
    n: int
    thread: str


def _app(threads: ApiThreads, release: threading.Event, entered: threading.Semaphore):
    app = FastAPI()
    get = threads.routes(app.get)
    running = [0, 0]  # now, most at once

    @app.exception_handler(LookupError)
    async def _missing(_, exc: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @get("/answer")
    def answer(n: Annotated[int, Query(ge=0, le=9)]) -> Answer:
        return Answer(n=n, thread=threading.current_thread().name)

    @get("/block")
    def block() -> dict[str, int]:
        running[0] += 1
        running[1] = max(running)
        entered.release()
        try:
            assert release.wait(30), "the test never released the route"
            return {"most_at_once": running[1]}
        finally:
            running[0] -= 1

    @get("/missing")
    def missing() -> dict[str, int]:
        raise LookupError("no such thing")

    @get("/free")
    async def free() -> dict[str, bool]:
        return {"ok": True}
    return app


def test_a_plain_route_keeps_its_parameters_and_model_and_runs_on_the_pool():
    threads = ApiThreads(size=2)
    client = TestClient(_app(threads, threading.Event(), threading.Semaphore(0)))
    r = client.get("/answer", params={"n": 3})
    assert r.status_code == 200 and r.json()["n"] == 3
    assert r.json()["thread"].startswith("selfheal-api")
    assert client.get("/answer", params={"n": 12}).status_code == 422  # Query(le=9) still holds
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/answer"]["get"]
    assert [p["name"] for p in op["parameters"]] == ["n"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Answer")
    assert client.get("/missing").json() == {"detail": "no such thing"}  # the app's handler
    threads.close()


def test_blocked_routes_hold_at_most_the_pool_and_leave_the_loop_free():
    threads = ApiThreads(size=1)
    release, entered = threading.Event(), threading.Semaphore(0)
    client = TestClient(_app(threads, release, entered))
    with ThreadPoolExecutor(2) as callers:
        first = callers.submit(client.get, "/block")
        assert entered.acquire(timeout=30)  # the first is inside, holding the only thread
        second = callers.submit(client.get, "/block")
        # the event loop answers while both wait (one running, one queued for the pool)
        assert client.get("/free").json() == {"ok": True}
        assert not first.done() and not second.done()
        release.set()
        results = [first.result(timeout=30), second.result(timeout=30)]
    assert [r.status_code for r in results] == [200, 200]
    assert max(r.json()["most_at_once"] for r in results) == 1
    threads.close()
