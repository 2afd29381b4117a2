"""The second half of ``selfheal demo``: the same guard as a running local cluster.

Starts, on embedded defaults: a local Ray, selfheal's own Redis on a private socket, a
SQLite audit trail. Three guarding processes (Ray actors, standing in for Serve replicas)
share one circuit; a health monitor watches the pieces. Prints the circuit and health state
as an operator would see it, then shuts everything down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from typing import Any, TextIO

from actors.health_checks import CheckSpec
from actors.process import GuardProcess, bootstrap
from actors.ray_gateway import NAMESPACE, find_actor, get, init_ray, kill, plain_actor
from actors.runtime import health_monitor, predictive_monitor
from actors.serve_control import start_without_http
from actors.settings import Settings
from actors.stores.audit_checkpoints import public_path
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_verify import verify_trail
from actors.stores.metric_stream import read_counts
from actors.stores.redis_conn import connect
from actors.stores.redis_state import CircuitStateStore
from healing import CircuitConfig, ClinicalContext

from .demo_healing import run_healing
from .webhook_sink import LocalWebhook

SERVICE = "clinical_reasoning"
PROVIDER = "gemini:pro"


class Replica:
    """One guarding process (a Ray actor): a GuardProcess and a stand-in provider."""

    def __init__(self, settings: Settings, name: str) -> None:
        cfg = CircuitConfig(window_size=20, minimum_number_of_calls=10, wait_in_open_s=30.0)
        self.proc = GuardProcess(settings, process_id=name, circuit=cfg)
        self.proc.share(SERVICE, PROVIDER)
        self.proc.guard.fallbacks.register_provider(
            SERVICE, "deepseek", lambda q: {"diagnosis": "pneumonia", "confidence": 0.84})
        self.provider_down = False

    def set_provider_down(self, down: bool) -> None:
        self.provider_down = down

    def ask(self, n: int) -> list[str]:
        def gemini(question: str) -> dict[str, Any]:
            if self.provider_down:
                raise TimeoutError("gemini:pro did not answer")
            return {"diagnosis": "pneumonia", "confidence": 0.91}

        tiers = []
        ctx = ClinicalContext("diagnostic", "high", patient_id="patient-0042")
        for _ in range(n):
            r = self.proc.guard.call(SERVICE, gemini, "fever and consolidation?", context=ctx,
                                     provider=PROVIDER)
            tiers.append(r.tier)
        return tiers

    def state(self) -> str:
        return self.proc.breakers.get(SERVICE, PROVIDER).state.name

    def flush(self) -> None:
        self.proc.recorder.flush()
        self.proc.audit.flush()

    def close(self) -> None:
        self.proc.close()


def run_cluster_demo(out: TextIO = sys.stdout, data_dir: str | None = None) -> dict[str, Any]:
    """Run the cluster story; returns what it saw, for tests."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the story, not Serve's log
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="selfheal-demo-")
        data_dir = tmp.name
    # Private embedded state, whatever REDIS_URL, DATABASE_URL or SELFHEAL_DATA_DIR say: the
    # demo forces a circuit open and must never do that to the stores an operator configured.
    settings, server = bootstrap(Settings.embedded(data_dir))
    say = out.write
    say("\n── 6. The same guard, as a running cluster " + "─" * 30 + "\n")
    say(f"   Embedded defaults under {data_dir}: selfheal's own Redis on a unix socket,\n"
        "   a SQLite audit trail, a local Ray. Starting Ray takes a few seconds...\n")
    ignored = [v for v in ("RAY_ADDRESS", "REDIS_URL", "DATABASE_URL", "SELFHEAL_DATA_DIR",
                           "MLFLOW_TRACKING_URI") if os.environ.get(v)]
    if ignored:
        say(f"   ({', '.join(ignored)} set in the environment: ignored here; the demo never\n"
            "   touches the stores an operator has configured.)\n")
    t0 = time.monotonic()
    init_ray(num_cpus=2, private=True)
    start_without_http()  # its replicas are called by handle: it takes no port (8000)
    replicas = [plain_actor(Replica, settings, f"replica-{i}") for i in range(3)]
    monitor = health_monitor(f"health-demo-{int(time.time())}")
    # started with the system: it reads the metric streams from now on
    predictor = predictive_monitor(settings.redis_url, f"monitor-demo-{int(time.time())}",  # type: ignore[arg-type]
                                   orchestrator=None)
    circuit_name = f"{SERVICE}:{PROVIDER}"
    try:
        get([r.ask.remote(5) for r in replicas[:2]])
        say(f"   3 replicas up in {time.monotonic() - t0:.1f} s; replicas 0 and 1 take the "
            "traffic,\n   replica 2 has just joined. Answers come from gemini:pro.\n")
        say("   gemini:pro goes down for replicas 0 and 1 (a shared outage)...\n")
        get([replicas[i].set_provider_down.remote(True) for i in (0, 1)])
        tiers = get([replicas[i].ask.remote(6) for i in (0, 1)])
        served_by = sorted({t for replica_tiers in tiers for t in replica_tiers})
        say(f"   they keep answering, from {served_by}\n")
        deadline = time.monotonic() + 10
        states: list[str] = []
        while time.monotonic() < deadline:
            states = get([r.state.remote() for r in replicas])
            if all(s == "OPEN" for s in states):
                break
            time.sleep(0.02)
        say("   the circuit actor merged both replicas' outcomes, judged the failure "
            "shared (both\n   see it, neither dominates), and opened the circuit for every "
            "replica, including\n   replica 2, which has not made a single call:\n")
        for i, st in enumerate(states):
            say(f"     replica-{i}: {circuit_name} {st}\n")
        saved = CircuitStateStore(connect(settings.redis_url)).read(circuit_name)  # type: ignore[arg-type]
        if saved:
            say(f"   Redis circuit:{circuit_name} → state={saved['state']} "
                f"version={saved['version']} reason={saved['reason']!r}\n")
        else:
            say(f"   Redis circuit:{circuit_name}: no cluster-wide transition recorded\n")

        for spec in (CheckSpec("redis", "redis", settings.redis_url),
                     CheckSpec("audit-db", "sql", settings.audit_database_url()),
                     CheckSpec("circuit-actor", "ray_actor", f"{NAMESPACE}/circuit:{circuit_name}"),
                     CheckSpec("imaging-gateway", "tcp", "127.0.0.1:9",
                               {"fall": 2, "timeout_s": 1.0})):
            get(monitor.register.remote(spec, start=False))
            for _ in range(2):
                get(monitor.run_once.remote(spec.name))
        health = get(monitor.status.remote())
        say("   health monitor:\n")
        for name, st in health.items():
            err = f"  ({st['last_error']})" if st["last_error"] else ""
            say(f"     {name:16s} {st['state']:9s}{err}\n")
        triggers = get(monitor.triggers.remote())
        for t in triggers:
            say(f"   trigger raised: {t['trigger']} for {t['check']}\n")

        get([r.flush.remote() for r in replicas])
        counts = read_counts(connect(settings.redis_url), SERVICE)  # type: ignore[arg-type]
        circuit = find_actor(f"circuit:{circuit_name}")
        if circuit is not None:  # the actor flushes its own transitions
            get(circuit.tick.remote(time.time()))
        store = AuditStore(settings.audit_database_url())
        records, by_kind = store.count(), store.count_by_kind()
        store.dispose()
        problems = verify_trail(
            settings.audit_database_url(), checkpoint_logs=[settings.checkpoint_log()],
            public_keys=[public_path(settings.signing_key_file())],
            spool_dir=settings.spool_dir(), missing_logs_ok=True).findings
        say(f"   metrics: {counts.get('total', 0)} calls, {counts.get('errors', 0)} errors, "
            f"{counts.get('fallbacks', 0)} served by a fallback (exact counters in Redis)\n")
        get(predictor.step.remote())
        pm = get(predictor.state.remote())
        say(f"   predictive monitor: {pm['events_read']} events read from "
            f"{len(pm['streams'])} metric stream(s) through its consumer group; it learns "
            "each\n   service's usual error rate before it raises anything\n")
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}s" for k, n in sorted(by_kind.items()))
        say(f"   audit trail: {records} records in SQL so far ({kinds}), hash chains "
            f"{'intact' if not problems else 'BROKEN'};\n   patient ids stored only as "
            "pseudonyms\n")
        say("\n── 7. A recovery workflow heals an injected fault " + "─" * 22 + "\n")
        say("   A Ray Serve deployment stands in for a clinical AI model. Its replica leaks\n"
            "   memory and starts failing; the error-threshold trigger starts the memory-leak\n"
            "   workflow: alert, add a replica, restart gracefully, check it answers.\n")
        hook = LocalWebhook()
        try:
            healed = run_healing(settings.redis_url, hook.url,  # type: ignore[arg-type]
                                 say=lambda line: say(f"   {line}\n"))
        finally:
            hook.close()
        for alert in hook.received:
            say(f"   the on-call channel received: {alert.get('text', '')}\n")
        return {"states": states, "saved": saved, "health": health, "triggers": triggers,
                "audit_records": records, "audit_by_kind": by_kind,
                "audit_problems": problems, "counts": counts, "healed": healed}
    finally:
        for r in replicas:
            with contextlib.suppress(Exception):
                get(r.close.remote(), timeout_s=10)
            kill(r)
        with contextlib.suppress(Exception):
            kill(monitor)
            kill(predictor)
            kill(find_actor(f"circuit:{circuit_name}"))
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
