"""``selfheal demo --live``: the running service, a clinical workload and scripted outages,
narrated in the terminal while the dashboard shows them.

On private embedded state (a temporary data directory, its own Redis, SQLite, a local Ray):
the service as ``selfheal up`` builds it, with the control API and the dashboard on
loopback; two guarding processes ("replicas") send diagnostic, prescriptive, imaging,
care-locator and record-database requests through their guards; a script takes providers
down and brings them back, makes the replica of a Ray Serve deployment standing in for the
API server leak until its requests fail (the shipped memory-leak workflow, aimed at that
deployment, heals it), cuts the clinical record database (a listener on loopback that the
shipped catalogue's ``database`` service gets a TCP health check for, read through a
connection pool) off the network for a while, and comes to the daily peak at which that
pool deadlocked on each of the days before (``serve.demo_database``: learnt from the audit
trail, predicted, prevented).
What selfheal detects and does is read back from the public API and told as it happens.
Ctrl-C, or the end of ``duration_s``, stops everything.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from actors.process import GuardProcess
from actors.ray_gateway import NAMESPACE, init_ray
from actors.serve_control import delete_app, run_app, serve_http
from actors.settings import Settings
from actors.stores.embedded_redis import EmbeddedRedis
from actors.stores.redis_conn import connect
from healing import CircuitConfig, ClinicalContext, WindowType
from healing.catalogue import Catalogue, CheckDecl, load_catalogue
from healing.errors import SelfHealError
from healing.workflow import Priority, RecoveryStep, RecoveryWorkflow, Trigger

from .control_app import APP_NAME, control_api
from .demo_database import DEADLOCK, POOL, RecordDatabase, RecordService
from .demo_service import build as build_model
from .service import create_token, first_admin_token, prepare, stop_actors
from .webhook_sink import LocalWebhook

# (service, primary provider, its alternative, the request's clinical context)
WORKLOAD = [
    ("clinical_reasoning", "gemini:pro", "deepseek", ClinicalContext("diagnostic", "high")),
    ("pharmaguard", "pharmaguard_api", "local_database",
     ClinicalContext("prescriptive", "high")),
    ("xray_analysis", "gemini:pro", "gemini:flash", ClinicalContext("diagnostic", "high")),
    ("care_locator", "care_locator_api", None, ClinicalContext("informational", "low")),
    ("api_server", "api_server", None, ClinicalContext("administrative", "medium")),
    ("database", "primary", "read_replica", ClinicalContext("administrative", "high")),
]
# The API server's stand-in: a Ray Serve application whose replicas fail once they have
# "leaked" (demo_service); the catalogue's memory-leak workflow scales and restarts it.
API_APP = "api_server"
API_DEPLOYMENT = f"{API_APP}/ClinicalModel"
LEAK = "api_server:leak"  # the script's key: the running replica leaks
DATABASE = "database"  # the script's key for the clinical record database
# (seconds from the start, provider, down?, what the narrator says); a provider of None is
# the on-call engineer resetting the circuit named in the text's first word, through the API
SCRIPT = [
    (10, LEAK, True, "the API server's replica leaks memory until its requests fail "
                     "(a restart cures it)"),
    (15, "clinical_reasoning:gemini:pro", True,
     "the primary AI provider (gemini:pro) stops answering clinical reasoning"),
    (30, DATABASE, True, "the clinical record database drops off the network"),
    (45, "pharmaguard:pharmaguard_api", True,
     "the drug-interaction API goes down: prescriptive, so never cached data"),
    (55, DATABASE, False, "the record database answers again"),
    (70, "clinical_reasoning:gemini:pro", False, "gemini:pro answers again"),
    (75, None, False, "clinical_reasoning:gemini:pro — the on-call engineer sees gemini:pro "
                      "healthy and resets its circuit from the dashboard (operator token)"),
    (80, "pharmaguard:pharmaguard_api", False, "the drug-interaction API is back"),
    (95, "care_locator:care_locator_api", True,
     "the care locator's only provider fails (no alternative: cached answers, then a notice)"),
    (110, "care_locator:care_locator_api", False, "the care locator is back"),
    (115, DEADLOCK, True, "the daily peak on the record database: on each of the last five "
                          "days its connection pool deadlocked now"),
    (140, DEADLOCK, False, "the peak is over"),
]


def _answer(service: str) -> dict[str, Any]:
    return {"answer": "ok", "diagnosis": "community-acquired pneumonia", "confidence": 0.91,
            "interactions": [], "findings": ["right lower lobe opacity"], "service": service}


class Faults:
    """Which providers are down; each provider checks on every call."""

    def __init__(self) -> None:
        self.down: set[str] = set()

    def provider(self, key: str, service: str) -> Callable[[str], dict[str, Any]]:
        def call(question: str) -> dict[str, Any]:
            if key in self.down:
                time.sleep(0.05)
                raise ConnectionError(f"{key} refused the connection")
            time.sleep(random.uniform(0.005, 0.02))
            return _answer(service)
        return call


def _demo_catalogue(catalogue: Catalogue, database: str) -> Catalogue:
    """The shipped catalogue as an operator of this demo would declare it: the ``database``
    service's health check (named as its workflow's ``health_check_passes`` criterion names
    it) aimed at ``database``, the memory-leak workflow's scale and restart steps aimed
    at the API server's Serve deployment, and a prevention workflow for the database that
    recycles its pool (a Ray actor here) ahead of a recurring failure."""
    db = catalogue.services[DATABASE]
    check = CheckDecl(DATABASE, "tcp", database)
    services = {**catalogue.services, DATABASE: replace(db, checks=(*db.checks, check))}

    def aimed(step: RecoveryStep) -> RecoveryStep:
        if step.action not in ("scale", "restart"):
            return step
        return replace(step, config={**step.config, "deployment": API_DEPLOYMENT})
    workflows = tuple(replace(w, steps=tuple(map(aimed, w.steps)),
                              rollback_steps=tuple(map(aimed, w.rollback_steps)))
                      if w.service == API_APP else w for w in catalogue.workflows)
    prevent = RecoveryWorkflow(
        f"prevent:{DATABASE}", Trigger.PREDICTED, DATABASE,
        (RecoveryStep("restart", {"actor": f"{NAMESPACE}/{POOL}"}, timeout_s=30),), (), 60.0,
        Priority.LOW, ClinicalContext("administrative", "high"))
    return replace(catalogue, services=services, workflows=(*workflows, prevent))


def _workload(proc: GuardProcess, calls: dict[str, Callable[[str], Any]],
              stop: threading.Event, rate_per_s: float) -> None:
    questions = [f"case-{i}" for i in range(40)]
    while not stop.is_set():
        service, primary, _alternative, ctx = random.choice(WORKLOAD)
        q = random.choice(questions)
        ctx = ClinicalContext(ctx.operation_type, ctx.criticality,
                              patient_id=f"patient-{random.randint(1, 500):04d}")
        with contextlib.suppress(SelfHealError, ConnectionError):
            proc.guard.call(service, calls[service], q, context=ctx, provider=primary,
                            cache_key=q)
        stop.wait(random.expovariate(rate_per_s))


def first_reasons(summary: str, width: int = 120) -> str:
    """An alert's summary as the narrator tells it: its reasons as far as ``width`` allows
    (always the first), and how many more the dashboard shows (an SLO page lists every
    window that burns, which is a paragraph)."""
    reasons, depth, start = [], 0, 0
    for i, ch in enumerate(summary):  # "; " inside parentheses is one reason's own
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and summary.startswith("; ", i):
            reasons.append(summary[start:i])
            start = i + 2
    reasons.append(summary[start:])
    told = [reasons[0]]
    for r in reasons[1:]:
        if len("; ".join([*told, r])) > width:
            break
        told.append(r)
    more = len(reasons) - len(told)
    return "; ".join(told) + (f" (+{more} more)" if more else "")


def _peak(script: list[tuple[float, str | None, bool, str]], start: float
          ) -> tuple[float, float] | None:
    """The daily peak's wall-clock start and length, from the script's ``DEADLOCK`` lines
    (25 s when no line ends it); None when the script has none."""
    begins = [t for t, key, down, _ in script if key == DEADLOCK and down]
    if not begins:
        return None
    ends = [t for t, key, down, _ in script if key == DEADLOCK and not down and t > begins[0]]
    return start + begins[0], (ends[0] if ends else begins[0] + 25.0) - begins[0]


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_live_demo(out: TextIO = sys.stdout, duration_s: float = 150.0,
                  port: int = 8000, rate_per_s: float = 15.0,
                  script: list[tuple[float, str | None, bool, str]] | None = None,
                  keep: pathlib.Path | None = None) -> dict[str, Any]:
    """Run the live story (``script``: the outages, default ``SCRIPT``); returns what the
    narrator saw (for tests). With ``keep`` (a new or empty folder), the state stays there
    afterwards, for ``actors.frames.open_frames(keep)``."""
    # Serve warns of every replica it replaces: here the restarts are the story it narrates
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    say = out.write
    tmp = tempfile.TemporaryDirectory(prefix="selfheal-live-") if keep is None else None
    data_dir = pathlib.Path(tmp.name) if tmp is not None else keep
    hook = LocalWebhook()  # Slack, on loopback
    settings = Settings.embedded(data_dir).model_copy(update={
        "api_port": _free_port(port), "slack_webhook_url": hook.url})
    say("\n── The running service, live " + "─" * 44 + "\n")
    say("   Starting Ray, the stores, the actors and the control API (about 15 s)...\n")
    init_ray(num_cpus=2, private=True)
    database = RecordDatabase()
    settings = prepare(settings, _demo_catalogue(load_catalogue(), database.address))
    url = serve_http(control_api(settings), APP_NAME, host=settings.api_host,
                     port=settings.api_port)
    redis = connect(settings.redis_url)  # type: ignore[arg-type]
    leak_switch = "selfheal:demo:api_server"
    api = run_app(build_model(settings.redis_url, leak_switch), API_APP, scalable=True)

    def api_server(question: str) -> Any:
        # what an HTTP client of the API server would see: the server's failure, not Ray's
        try:
            return api.remote(question).result(timeout_s=10)
        except Exception as exc:
            last = (str(exc).splitlines() or [type(exc).__name__])[-1]
            raise ConnectionError(f"api_server failed: {last}") from None
    first_admin_token(settings)
    viewer, _ = create_token(settings, "viewer", "demo-viewer")
    operator, _ = create_token(settings, "operator", "demo-operator")
    kept = f"is kept in {keep}" if keep is not None else "is private and goes with it"
    say(f"\n   Dashboard: {url}/dashboard/\n   viewer token:   {viewer}\n"
        f"   operator token: {operator}\n   (Ctrl-C stops the demo; the state {kept}.)\n\n")
    script = list(SCRIPT if script is None else script)
    start = time.time()
    peak = _peak(script, start)
    records = RecordService(settings, database.address, peak, url, operator)
    if peak is not None:
        say(f"   The record database's pool deadlocked at {_hms(peak[0])} UTC on each of the "
            f"last five days\n   (written into this demo's trail before it began: a live "
            f"demo cannot wait days);\n   today's peak is due at t={peak[0] - start:.0f}s. "
            f"A training reads the trail now.\n\n")
    cfg = CircuitConfig(window_type=WindowType.TIME, window_size=30,
                        minimum_number_of_calls=10, wait_in_open_s=15.0)
    faults, stop = Faults(), threading.Event()
    procs = []
    calls = {service: faults.provider(f"{service}:{primary}", service)
             for service, primary, _, _ in WORKLOAD}
    calls.update({API_APP: api_server, DATABASE: records.read})
    for i in range(2):
        proc = GuardProcess(settings, process_id=f"replica-{i}", circuit=cfg)
        for service, primary, alternative, _ in WORKLOAD:
            proc.share(service, primary)
            # recovery probes the primary through the processes (docs/runtime.md)
            proc.register_probe(service, calls[service], args=("probe",))
            if alternative:
                proc.guard.fallbacks.register_provider(
                    service, alternative, faults.provider(f"{service}:{alternative}", service))
        procs.append(proc)
    workers = [threading.Thread(target=_workload, args=(p, calls, stop, rate_per_s / 2),
                                daemon=True) for p in procs]
    for w in workers:
        w.start()
    seen = _Narrator(url, operator, say)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < duration_s:
            now = time.monotonic() - t0
            while script and script[0][0] <= now:
                _, key, down, text = script.pop(0)
                if key is None:
                    circuit = text.split()[0]
                    say(f"   t={now:5.0f}s  👤 {text}\n")
                    seen.reset(circuit, "provider healthy again (demo)")
                elif key == DATABASE:
                    (database.down if down else database.up)()
                    say(f"   t={now:5.0f}s  ⚡ {text}\n")
                elif key == DEADLOCK:
                    say(f"   t={now:5.0f}s  ⏰ {text}\n")
                    if not down:
                        seen.tell(now, records.verdict())
                elif key == LEAK:  # replicas started before now fail; fresh ones answer
                    redis.set(leak_switch, f"leak:{time.time()}" if down else "ok")
                    say(f"   t={now:5.0f}s  ⚡ {text}\n")
                else:
                    (faults.down.add if down else faults.down.discard)(key)
                    say(f"   t={now:5.0f}s  ⚡ {text}\n")
            learnt = records.learnt()
            if learnt is not None:
                seen.tell(now, learnt)
            seen.poll(now)
            time.sleep(1.0)
    except KeyboardInterrupt:
        say("\n   stopped by Ctrl-C\n")
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=5)
        for p in procs:
            p.close()
        seen.close()
        records.close()
        database.close()
        # its actors and application go; so does its Ray, when the demo started it. Each
        # on its own: an application that will not go must not keep the actors running.
        with contextlib.suppress(Exception):
            delete_app(APP_NAME)
        with contextlib.suppress(Exception):
            delete_app(API_APP)
        with contextlib.suppress(Exception):
            stop_actors([f"{s}:{p}" for s, p, _, _ in WORKLOAD])
        hook.close()
        # the embedded Redis outlives the processes that used it (as `selfheal up`'s does)
        with contextlib.suppress(Exception):
            EmbeddedRedis(data_dir / "redis").shutdown()
        if tmp is not None:
            tmp.cleanup()
    say(f"   {seen.summary()}\n")
    if keep is not None:
        say(f"   The state is kept in {keep}: read it with "
            f"actors.frames.open_frames({str(keep)!r}) (docs/data.md).\n")
    return {"events": seen.events, "url": url, "peak": records.outcome}


class _Narrator:
    """Tells what changed, as an operator would see it through the API."""

    def __init__(self, url: str, token: str, say: Callable[[str], Any]) -> None:
        self.client = httpx.Client(base_url=url, timeout=10,
                                   headers={"Authorization": f"Bearer {token}"})
        self.say = say
        self.states: dict[str, str] = {}
        self.checks: dict[str, str] = {}  # health check: the state last told
        self.started: set[str] = set()  # recovery runs told as started
        self.finished: set[str] = set()  # and as ended
        self.alerts: dict[str, str] = {}  # dedup key: the severity last told
        self.events: list[str] = []

    def tell(self, now: float, text: str) -> None:
        self.events.append(text)
        self.say(f"   t={now:5.0f}s  {text}\n")

    def poll(self, now: float) -> None:
        try:
            health = self.client.get("/api/v1/health", params={"limit": 1}).json()
            circuits, checks = health["circuits"], health["health_checks"]
            runs = self.client.get("/api/v1/recovery/runs").json()
            alerts = self.client.get("/api/v1/alerts").json()
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return
        for name, check in sorted(checks.items()):
            was = self.checks.get(name, "healthy")
            state = check.get("state")
            if state != was:
                why = f" ({check['last_error']})" if state != "healthy" and \
                    check.get("last_error") else ""
                self.tell(now, f"health check {name}: {was} → {state}{why}")
            self.checks[name] = state
        for c in circuits:
            if self.states.get(c["name"], "closed") != c["state"]:
                self.tell(now, f"circuit {c['name']}: {self.states.get(c['name'], 'closed')}"
                                f" → {c['state']} ({c['reason']})")
            self.states[c["name"]] = c["state"]
        for r in runs:
            if r["run_id"] not in self.started:
                self.started.add(r["run_id"])
                why = f": {r['detail']}" if r["trigger"] == "predicted" and r.get("detail") \
                    else ""
                self.tell(now, f"recovery: {r['workflow']} started for {r['service']} "
                               f"({r['trigger']}{why})")
            if "ended" in r and r["run_id"] not in self.finished:
                self.finished.add(r["run_id"])
                verdict = "succeeded" if r["succeeded"] else \
                    "completed, with a step that failed" if r["ended"] == "completed" \
                    else r["ended"]
                self.tell(now, f"recovery: {r['workflow']} {verdict}")
        for a in alerts:  # new, or raised again higher (a ticket become a page)
            if self.alerts.get(a["dedup_key"]) != a["severity"]:
                self.alerts[a["dedup_key"]] = a["severity"]
                self.tell(now, f"alert [{a['severity']}] {a['service']}: "
                               f"{first_reasons(a['summary'])}")

    def reset(self, circuit: str, reason: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.client.post(f"/api/v1/circuits/{circuit}/reset", json={"reason": reason})

    def close(self) -> None:
        self.client.close()

    def summary(self) -> str:
        return (f"seen: {sum('circuit' in e for e in self.events)} circuit changes, "
                f"{len(self.finished)} recovery runs finished, {len(self.alerts)} alerts")
