"""Issue 13's figures: the control API's read path, through Ray Serve and beside its anchors.

Measured in one run on a stack built as ``selfheal up`` builds it (Ray, Serve on loopback,
Redis, an SQLite audit database): the health endpoint's latency and throughput through Serve
next to a trivial Serve endpoint, and next to the same app under plain uvicorn; the health
endpoint's server time with 1,000 circuits next to the raw Redis read of the same circuits;
one ``/metrics`` scrape with 1,000 circuits. The trivial endpoint is a plain ``def``, run on a
thread as the health route is; the liveness and whoami routes are ``async def`` (nothing to
wait for: whoami checks a token this replica accepted moments ago, in memory), so they can
come in under it. Needs Redis on 127.0.0.1:6379; uses its
database 7, which it empties.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from typing import Any

import httpx

from .harness import Figure, figure

REDIS_URL = "redis://127.0.0.1:6379/7"
SEQUENTIAL = 200
CONCURRENT_S = 4.0
THREADS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _circuits(n: int, start: int = 0) -> None:
    """``n`` circuits in Redis, in the format their actors write."""
    from actors.stores.redis_conn import connect
    from actors.stores.redis_state import CircuitStateStore

    store = CircuitStateStore(connect(REDIS_URL))
    for i in range(start, start + n):
        name = f"service{i % 50}:provider{i}"
        view = {"name": name, "version": 3, "state": "closed", "retry_at": None,
                "isolated": [], "lease_holder": None, "lease_expires_at": None,
                "reason": "initial"}
        store.save(name, view, {"version": 1})
        store.save_field(name, "stats", {"calls": 120, "failure_rate": 0.01, "processes": {
            f"replica-{k}": {"calls": 40, "failure_rate": 0.01} for k in range(3)}})


def _latency_ms(client: httpx.Client, *targets: tuple[str, dict[str, str]]) -> list[float]:
    """The median latency of each ``(url, headers)``, their requests taken in turn, so that
    each sees the same machine (on a shared one, a burst elsewhere would land on one side of
    a ratio only)."""
    for url, headers in targets:
        for _ in range(10):
            client.get(url, headers=headers)
    times: list[list[float]] = [[] for _ in targets]
    for _ in range(SEQUENTIAL):
        for (url, headers), out in zip(targets, times, strict=True):
            t0 = time.perf_counter()
            r = client.get(url, headers=headers)
            out.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
    return [statistics.median(t) for t in times]


def _throughput(url: str, headers: dict[str, str]) -> float:
    done = [0] * THREADS
    stop = time.perf_counter() + CONCURRENT_S

    def worker(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            while time.perf_counter() < stop:
                c.get(url, headers=headers).raise_for_status()
                done[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / CONCURRENT_S


def run() -> list[Figure]:
    import uvicorn
    from fastapi import FastAPI
    from ray import serve

    from actors.control import ControlBackend
    from actors.ray_gateway import init_ray
    from actors.settings import Settings
    from actors.stores.redis_conn import connect
    from serve.control_api import build_app
    from serve.control_app import control_api
    from serve.service import first_admin_token, prepare

    connect(REDIS_URL).flushdb()
    data = tempfile.mkdtemp(prefix="selfheal-bench-api-")
    settings = Settings(data_dir=data, redis_url=REDIS_URL)
    init_ray(num_cpus=2)
    settings = prepare(settings)
    token = first_admin_token(settings).read_text().strip()  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(control_api(settings), name="selfheal-bench", route_prefix="/")

    trivial_app = FastAPI()

    @trivial_app.get("/")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    trivial = serve.deployment(name="Trivial", ray_actor_options={"num_cpus": 0})(
        serve.ingress(trivial_app)())
    serve.run(trivial.bind(), name="trivial", route_prefix="/trivial")

    backend = ControlBackend(settings)
    uv_port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(backend), host="127.0.0.1",
                                           port=uv_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    base = f"http://127.0.0.1:{port}"
    out: list[Figure] = []
    try:
        _circuits(10)
        trivial = (f"{base}/trivial/", {})
        with httpx.Client(timeout=30) as c:
            health, anchor = _latency_ms(c, (f"{base}/api/v1/health", headers), trivial)
            plain, health_again = _latency_ms(
                c, (f"http://127.0.0.1:{uv_port}/api/v1/health", headers),
                (f"{base}/api/v1/health", headers))
            # where the difference goes: the same app's liveness route (no token, no reads),
            # and a route that only checks the token (one SQL read)
            live, whoami, anchor_again = _latency_ms(
                c, (f"{base}/api/v1/livez", {}), (f"{base}/api/v1/whoami", headers), trivial)
        out.append(figure("control API health (10 circuits) through Serve, median latency",
                          health, "ms", "a trivial Serve endpoint", anchor))
        out.append(figure("control API health (10 circuits) under plain uvicorn, median "
                          "latency", plain, "ms", "the same through Serve", health_again))
        out.append(figure("control API liveness (no token, no reads) through Serve, median "
                          "latency", live, "ms", "a trivial Serve endpoint", anchor_again))
        out.append(figure("control API whoami (the token check only) through Serve, median "
                          "latency", whoami, "ms", "a trivial Serve endpoint", anchor_again))
        rate = _throughput(f"{base}/api/v1/health", headers)
        anchor_rate = _throughput(f"{base}/trivial/", {})
        out.append(figure(f"control API health (10 circuits) through Serve, {THREADS} "
                          "clients", rate, "req/s", "a trivial Serve endpoint", anchor_rate))

        _circuits(990, start=10)
        server_ms = _server_time(backend)
        raw_ms = _raw_read_ms()
        out.append(figure("health endpoint server time, 1,000 circuits", server_ms, "ms",
                          "pipelined Redis read of the same 1,000 circuits", raw_ms))
        with httpx.Client(timeout=30) as c:
            scrape, anchor = _latency_ms(c, (f"{base}/metrics", headers), trivial)
        out.append(figure("/metrics scrape, 1,000 circuits, through Serve", scrape, "ms",
                          "a trivial Serve endpoint", anchor))
    finally:
        server.should_exit = True
        serve.delete("selfheal-bench")
        serve.delete("trivial")
        backend.close()
        connect(REDIS_URL).flushdb()
    return out


def _server_time(backend: Any) -> float:
    """What the health handler does, timed in-process: every read and the response model."""
    from serve.api_models import Circuit, Health

    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        now = time.time()
        view = backend.cluster_view()
        Health(circuits=[Circuit(**c) for c in view.circuits],
               health_checks=view.health_checks, services=view.calls,
               recent_failures=backend.recent_failures(now - 86400, now, 100),
               since=now - 86400).model_dump_json()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _raw_read_ms() -> float:
    from actors.stores.redis_conn import connect

    client = connect(REDIS_URL)
    names = [k for k in client.scan_iter("circuit:*", count=1000)]
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(n)
        pipe.execute()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
