"""Issue 3's figures: instrumentation, metric events into Redis, audit durability, and
circuit transition propagation across processes. Needs Redis on 127.0.0.1:6379 and
PostgreSQL on 127.0.0.1:5432 (``make bench`` starts them like ``make test`` does)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid

from .harness import Figure, figure

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


# -- instrumentation -------------------------------------------------------------------

def _asgi_request(app, path: str = "/items/7") -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [], "server": ("bench", 80),
             "client": ("127.0.0.1", 1)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        return None

    return app(scope, receive, send)


def instrumentation() -> list[Figure]:
    from fastapi import FastAPI

    from actors.instrumentation import InstrumentationMiddleware
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect

    def make(instrumented: bool):
        app = FastAPI()

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict:
            return {"id": item_id}

        if instrumented:
            app.add_middleware(InstrumentationMiddleware, sink=recorder, service="bench")
        return app

    recorder = MetricRecorder(connect(REDIS_URL), prefix=f"bench:{uuid.uuid4().hex[:6]}",
                              flush_interval_s=0.05)
    plain, measured = make(False), make(True)

    async def rounds(n: int = 2000, k: int = 9) -> tuple[float, float]:
        p_runs, m_runs = [], []
        for app in (plain, measured):
            for _ in range(200):
                await _asgi_request(app)  # warm up routing and middleware stacks
        for _ in range(k):
            for app, runs in ((plain, p_runs), (measured, m_runs)):
                t0 = time.perf_counter()
                for _ in range(n):
                    await _asgi_request(app)
                runs.append((time.perf_counter() - t0) / n * 1e6)
        # The median of each round's difference, not the difference of the medians: a
        # round measures both apps at nearly the same moment, so a slow spell of the
        # machine cancels out instead of making the added time negative.
        added = statistics.median(m - p for p, m in zip(p_runs, m_runs, strict=True))
        return statistics.median(p_runs), added

    plain_us, added_us = asyncio.run(rounds())
    recorder.close()
    _drop_keys(recorder.prefix)
    return [figure("instrumentation added per request (recorder live)",
                   added_us, "us", "plain FastAPI request (in-process ASGI)", plain_us)]


# -- metric events into Redis ---------------------------------------------------------

def _drop_keys(prefix: str) -> None:
    from actors.stores.redis_conn import connect

    client = connect(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def metric_events() -> list[Figure]:
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing import Criticality, OperationType
    from healing.outcome import OutcomeRecord

    client = connect(REDIS_URL, timeout_s=10)
    n = 200_000
    prefix = f"bench:{uuid.uuid4().hex[:6]}"
    rec = MetricRecorder(client, sample_rate=1.0, buffer_max=n + 1, flush_interval_s=0,
                         maxlen=100_000, prefix=prefix)
    outcomes = [OutcomeRecord(f"svc{i % 4}", "p", i % 10 != 0, 0.012, None, "primary", None,
                              OperationType.DIAGNOSTIC, Criticality.HIGH, 1.7e9 + i)
                for i in range(n)]
    t0 = time.perf_counter()
    for o in outcomes:
        rec.record(o)
    t_record = time.perf_counter() - t0
    while rec.flush() > 0:
        continue
    ours = n / (time.perf_counter() - t0)
    _drop_keys(prefix)

    # Anchor 1: the plain loop, one event per XADD, pipelined 1,000 at a time.
    m = 50_000
    stream = f"{prefix}:plain"
    t0 = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(m):
        pipe.xadd(stream, {"latency": "0.012", "success": "1", "timestamp": str(i)},
                  maxlen=100_000, approximate=True)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    plain = m / (time.perf_counter() - t0)
    client.delete(stream)

    # Anchor 2: the server's own ceiling, redis-benchmark with 16 commands in flight.
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-n", "200000", "-P", "16", "-q",
         "XADD", f"{prefix}:rb", "MAXLEN", "~", "100000", "*", "latency", "0.012"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    rb = float(re.findall(r"([\d.]+) requests per second", out)[-1])
    client.delete(f"{prefix}:rb")
    return [
        figure("metric events into Redis streams, one process", ours, "events/s",
               "plain redis-py loop, pipelined single-event XADD", plain),
        figure("metric events into Redis streams, one process (vs server)", ours,
               "events/s", "redis-benchmark XADD -P 16", rb),
        figure("recorder cost on the request path", t_record / n * 1e9, "ns",
               "plain redis-py XADD, per event", 1e9 / plain),
    ]


# -- audit -----------------------------------------------------------------------------


def audit() -> list[Figure]:
    from actors.stores.audit_spool import AuditSpool, read_records, segments
    from actors.stores.audit_sql import AuditStore

    from .audit import bench_record, grouped_rate

    figures = []
    with tempfile.TemporaryDirectory() as d:
        # Anchor: what the disk allows for one 4 KiB write + fdatasync at a time.
        fd = os.open(os.path.join(d, "raw"), os.O_CREAT | os.O_WRONLY | os.O_APPEND)
        k = 300
        t0 = time.perf_counter()
        for _ in range(k):
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
        raw = k / (time.perf_counter() - t0)
        os.close(fd)

        spool = AuditSpool(os.path.join(d, "spool"))
        t0 = time.perf_counter()
        for i in range(k):
            spool.append(bench_record(i))
        single = k / (time.perf_counter() - t0)
        grouped = grouped_rate(spool, threads=16, per=200)
        records = [r for s in segments(spool.dir, spool) for r in read_records(s.path)[0]]
        spool.close()
        figures += [
            figure("audit records durable, 1 writer (fsync each)", single, "records/s",
                   "raw write + fdatasync loop", raw),
            figure("audit records durable, 16 threads (group commit)", grouped, "records/s",
                   "raw write + fdatasync loop", raw),
        ]

        for label, url in (("SQLite", f"sqlite:///{d}/audit.db"), ("PostgreSQL", _pg_db())):
            store = AuditStore(url)
            store.migrate()
            t0 = time.perf_counter()
            for i in range(0, len(records), 2000):
                store.insert(records[i:i + 2000])
            ours = len(records) / (time.perf_counter() - t0)
            anchor = _plain_insert(store, len(records))
            figures.append(figure(f"audit records into SQL, {label} (ledger + projection)",
                                  ours, "records/s", f"plain executemany, {label}", anchor))
            store.dispose()
            if label == "PostgreSQL":
                _drop_pg(url)
    return figures


def _plain_insert(store, n: int) -> float:
    from sqlalchemy import Column, Integer, MetaData, String, Table

    md = MetaData()
    t = Table("bench_plain", md, Column("id", Integer, primary_key=True),
              Column("body", String(400)))
    md.create_all(store.engine)
    rows = [{"id": i, "body": "x" * 300} for i in range(n)]
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        for i in range(0, n, 2000):
            conn.execute(t.insert(), rows[i:i + 2000])
    return n / (time.perf_counter() - t0)


def _pg_db() -> str:
    import psycopg

    name = f"selfheal_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- propagation -----------------------------------------------------------------------

class _Host:
    """One guarding process on the wall clock."""

    def __init__(self, name: str, service: str) -> None:
        from actors.cluster_agent import ClusterAgent
        from actors.runtime import circuit_actor
        from healing import CircuitBreakerRegistry, CircuitConfig, Guard, InMemorySink
        from healing.cluster import ClusterPolicy

        cfg = CircuitConfig(window_size=20, minimum_number_of_calls=10, wait_in_open_s=60.0)
        self.breakers = CircuitBreakerRegistry(default=cfg)
        self.guard = Guard(breakers=self.breakers, sink=InMemorySink())
        self.agent = ClusterAgent(self.breakers,
                                  lambda n: circuit_actor(n, cfg, ClusterPolicy(), REDIS_URL),
                                  process_id=name, report_interval_s=0.02)
        self.breaker = self.agent.attach(service)
        self.opened_at: float | None = None
        from healing import CircuitTransitioned

        def note(e) -> None:
            if isinstance(e, CircuitTransitioned) and e.to_state.name == "OPEN":
                self.opened_at = self.opened_at or time.time()
        self.breaker.add_listener(note)
        self.service = service

    def fail(self, n: int) -> float:
        """Make ``n`` failing calls; returns the wall time of the last one."""
        def bad() -> None:
            raise ConnectionError("down")
        for _ in range(n):
            with contextlib.suppress(ConnectionError):
                self.guard.call(self.service, bad)
        return time.time()

    def opened(self) -> float | None:
        return self.opened_at

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.agent.close()


def propagation(samples: int = 5) -> list[Figure]:
    import ray

    from actors.runtime import init_ray

    init_ray(num_cpus=2)
    remote = ray.remote(num_cpus=0)(_Host)
    delays, rtts = [], []
    for _ in range(samples):
        service = f"bench-{uuid.uuid4().hex[:8]}"
        a, b, c = (remote.remote(n, service) for n in ("a", "b", "c"))
        ray.get([h.ping.remote() for h in (a, b, c)])
        ray.get(a.fail.remote(6))  # under every process's own minimum of 10
        time.sleep(0.1)  # let a's outcomes reach the actor: the next batch decides
        decided = ray.get(b.fail.remote(6))  # the deciding outcome
        deadline = time.time() + 10
        opened: list[float | None] = [None, None, None]
        while time.time() < deadline and None in opened:
            opened = ray.get([h.opened.remote() for h in (a, b, c)])
        delays.append((max(opened) - decided) * 1e3)  # type: ignore[arg-type, type-var]
        t0 = time.perf_counter()
        for _ in range(50):
            ray.get(c.ping.remote())
        rtts.append((time.perf_counter() - t0) / 50 * 1e3)
        for h in (a, b, c):
            ray.get(h.close.remote())
            ray.kill(h)
        ray.kill(ray.get_actor(f"circuit:{service}", namespace="selfheal"))
        _drop_keys(f"circuit:{service}")
    return [figure("circuit transition reaches every process (3 processes)",
                   statistics.median(delays), "ms", "Ray actor call round trip",
                   statistics.median(rtts))]


def healing() -> list[Figure]:
    """The live healing run (issue 4): trigger → first action, fault → answering again."""
    from ray import serve

    from actors.runtime import init_ray
    from serve.demo_healing import run_healing
    from serve.demo_service import build
    from serve.webhook_sink import LocalWebhook

    init_ray(num_cpus=2)
    hook = LocalWebhook()
    try:
        seen = run_healing(REDIS_URL, hook.url)
    finally:
        hook.close()
    if not seen["run"]["succeeded"]:
        raise RuntimeError(f"the healing run failed: {seen['run']}")
    # Anchor: what a manual fix costs at the least, a cold redeploy of the same deployment.
    t0 = time.perf_counter()
    app = f"anchor{uuid.uuid4().hex[:6]}"
    handle = serve.run(build(REDIS_URL, f"selfheal:fault:{app}"), name=app, route_prefix=None)
    handle.remote("fever?").result(timeout_s=30)
    redeploy = time.perf_counter() - t0
    serve.delete(app)
    rtt = _actor_rtt()
    return [
        figure("trigger to first recovery action", seen["trigger_to_first_action_s"] * 1e3,
               "ms", "Ray actor call round trip", rtt),
        figure("fault to answering again (MTTR), leaking Serve deployment", seen["mttr_s"],
               "s", "cold serve.run of the same deployment", redeploy),
    ]


def _actor_rtt() -> float:
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> bool:
            return True

    e = Echo.remote()
    ray.get(e.ping.remote())
    t0 = time.perf_counter()
    for _ in range(50):
        ray.get(e.ping.remote())
    ms = (time.perf_counter() - t0) / 50 * 1e3
    ray.kill(e)
    return ms


def run() -> list[Figure]:
    return instrumentation() + metric_events() + audit() + propagation() + healing()
