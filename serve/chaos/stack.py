"""The system under fire: selfheal as ``selfheal up`` runs it, on stores the suite owns, and
the guarding processes that carry the clinical load.

Everything is real: Ray (joined when the caller already runs one, else a private local one),
Ray Serve with the control API, the orchestrator, health and predictive-monitor actors, a
private Redis and a private PostgreSQL (:mod:`.stores`). The AI providers are the one stand-in
(the outside world cannot be reached here): functions whose behaviour a fault switches
between answering, failing and answering slowly.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import random
import threading
import time
from typing import Any

import httpx

from actors.process import GuardProcess
from actors.ray_gateway import LocalCluster, init_ray
from actors.serve_control import delete_app, serve_http
from actors.settings import Settings
from actors.stores.embedded_redis import EmbeddedRedis
from healing import ClinicalContext
from healing.catalogue import SHIPPED, load_catalogue
from healing.clock import Clock, SystemClock
from healing.errors import ClinicalSafetyError, FallbackExhausted

from ..control_app import APP_NAME, control_api
from ..service import create_token, first_admin_token, prepare, stop_actors
from .ledger import ERROR, EXPLICIT, FALLBACK, PRIMARY, Entry
from .stores import PrivatePostgres, free_port

__all__ = ["MODES", "PRIMARIES", "ChaosStack", "Providers"]

# service -> (primary provider, its alternative or None), as the shipped catalogue has them
PRIMARIES: dict[str, tuple[str, str | None]] = {
    "clinical_reasoning": ("gemini:pro", "deepseek"),
    "xray_analysis": ("gemini:pro", "gemini:flash"),
    "pharmaguard": ("pharmaguard_api", "local_database"),
    "care_locator": ("care_locator_api", None),
}
QUESTIONS = 8  # per service: few enough that answers get cached and reused


def _answer(service: str) -> dict[str, Any]:
    return {"answer": "ok", "diagnosis": "community-acquired pneumonia", "confidence": 0.91,
            "interactions": [], "findings": ["right lower lobe opacity"], "service": service}


MODES = ("ok", "fail", "slow", "hang", "leak")


class Providers:
    """The AI providers, each switchable between the ways a real one misbehaves. A
    provider's key is ``service:provider``; its mode one of:

    * ``ok``: answers in 2-10 ms;
    * ``fail``: refuses the connection;
    * ``slow``: answers after ``slow_s``;
    * ``hang``: holds every call until the mode changes (a provider that accepts connections
      and never answers), then resets it: the caller sees an error only then;
    * ``leak``: a provider leaking memory: a call fails with a probability that grows by
      ``leak_growth`` per minute since the leak began (as the simulator's ``memory_leak``
      does), up to every call.
    """

    def __init__(self, slow_s: float = 2.0, leak_growth: float = 0.5,
                 hang_limit_s: float = 300.0, *, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        self.modes: dict[str, str] = {}
        self.slow_s, self.leak_growth, self.hang_limit_s = slow_s, leak_growth, hang_limit_s
        self._now = (clock or SystemClock()).now
        self._random = (rng or random.Random()).random
        self.calls: dict[str, int] = {}
        self.hung: dict[str, int] = {}  # calls each provider held at once, at most
        self._since: dict[str, float] = {}
        self._released: dict[str, threading.Event] = {}
        self._holding: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, key: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"provider mode must be one of {', '.join(MODES)}, got {mode!r}")
        with self._lock:
            released = self._released.pop(key, None)
            if mode == "hang":
                self._released[key] = threading.Event()
            self.modes[key], self._since[key] = mode, self._now()
        if released is not None:
            released.set()  # the hung calls get their connection reset

    def fn(self, key: str, service: str) -> Any:
        def call(question: str) -> dict[str, Any]:
            with self._lock:
                self.calls[key] = self.calls.get(key, 0) + 1
                mode, since = self.modes.get(key, "ok"), self._since.get(key, 0.0)
                released = self._released.get(key)
            if mode == "fail" or (mode == "leak" and self._random() < min(
                    1.0, self.leak_growth * (self._now() - since) / 60.0)):
                time.sleep(0.01)
                raise ConnectionError(f"{key} refused the connection")
            if mode == "hang" and released is not None:
                self._hold(key, released)
                raise ConnectionResetError(f"{key} reset a connection it had held")
            time.sleep(self.slow_s if mode == "slow" else random.uniform(0.002, 0.01))
            return _answer(service)
        return call

    def holding(self, key: str) -> int:
        """Calls ``key`` holds right now (hanging)."""
        with self._lock:
            return self._holding.get(key, 0)

    def _hold(self, key: str, released: threading.Event) -> None:
        with self._lock:
            self._holding[key] = self._holding.get(key, 0) + 1
            self.hung[key] = max(self.hung.get(key, 0), self._holding[key])
        try:
            released.wait(self.hang_limit_s)  # a bound, so a forgotten rollback ends
        finally:
            with self._lock:
                self._holding[key] -= 1


class ChaosStack:
    """Start with :meth:`start`, always :meth:`close`. ``processes`` guarding processes
    share the cluster's circuits, as Serve replicas of one clinical application would.

    The shipped catalogue is the policy of every part: the orchestrator's (as ``selfheal
    up`` runs it), the guarding processes' breakers, and the simulator's when it predicts
    the same faults (:mod:`.prediction`)."""

    def __init__(self, root: pathlib.Path, *, processes: int = 2,
                 cluster: LocalCluster | None = None) -> None:
        self.root = pathlib.Path(root)
        self.cluster = cluster  # a multi-node cluster on this machine, or None
        self.n_processes = processes
        self.catalogue = load_catalogue(SHIPPED)
        self.circuit = self.catalogue.circuit
        self.providers = Providers()
        self.redis = EmbeddedRedis(self.root / "redis", persist=True)
        self.postgres = PrivatePostgres(self.root / "postgres")
        self.procs: list[GuardProcess] = []
        self.settings: Settings | None = None
        self.url = ""
        self.tokens: dict[str, str] = {}
        self.circuits = [f"{s}:{p}" for s, (p, _) in PRIMARIES.items()]

    def start(self, ray_address: str | None = None) -> ChaosStack:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        self.redis.start()
        self.postgres.start()
        database = self.postgres.create_database("selfheal")
        settings = Settings.embedded(self.root / "data").model_copy(update={
            "redis_url": self.redis.url, "database_url": database, "api_port": free_port(),
            "metrics_sample_rate": 1.0,
            # on a cluster, the long-lived actors live on the worker nodes
            "actor_resources": {k: 0.01 for k in self.cluster.resources}
            if self.cluster is not None else {}})
        if self.cluster is not None:
            ray_address = self.cluster.address
        init_ray(ray_address, num_cpus=None if ray_address else 2)
        # A session's earlier stack may have left actors behind (named, detached): this
        # stack's must talk to this stack's stores.
        stop_actors(self.circuits)
        self.settings = prepare(settings)
        self.url = serve_http(control_api(self.settings), APP_NAME,
                              host=self.settings.api_host, port=self.settings.api_port)
        first_admin_token(self.settings)
        for role in ("viewer", "operator", "auditor"):
            self.tokens[role], _ = create_token(self.settings, role, f"chaos-{role}")
        for i in range(self.n_processes):
            proc = GuardProcess(self.settings, process_id=f"replica-{i}", circuit=self.circuit)
            for service, (primary, alternative) in PRIMARIES.items():
                proc.share(service, primary)
                if alternative:
                    proc.guard.fallbacks.register_provider(
                        service, alternative,
                        self.providers.fn(f"{service}:{alternative}", service))
            self.procs.append(proc)
        return self

    def client(self, role: str = "viewer", timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s,
                            headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def allowed_tiers(self) -> dict[str, set[str]]:
        """Per service, the labels of the tiers its strategy may answer with."""
        guard = self.procs[0].guard
        out = {}
        for service in PRIMARIES:
            strategy = guard.fallbacks.get(service)
            out[service] = {t.label for t in strategy.tiers} if strategy else set()
        return out

    def send(self, entry: Entry) -> None:
        """One clinical request through a guarding process; fills in what came back."""
        proc = self.procs[entry.id % len(self.procs)]
        primary, _ = PRIMARIES[entry.service]
        question = f"{entry.service}-question-{entry.id % QUESTIONS}"
        ctx = ClinicalContext(entry.operation, entry.criticality, patient_id=entry.patient)
        try:
            r = proc.guard.call(entry.service,
                                self.providers.fn(f"{entry.service}:{primary}", entry.service),
                                question, context=ctx, provider=primary, cache_key=question)
        except (ClinicalSafetyError, FallbackExhausted) as exc:
            entry.outcome, entry.guidance = EXPLICIT, exc.guidance
            return
        except Exception as exc:  # the guard let something through: a finding
            entry.outcome, entry.error = ERROR, f"{type(exc).__name__}: {exc}"
            return
        entry.outcome = PRIMARY if r.tier == "primary" else FALLBACK
        entry.tier, entry.staleness_s, entry.warning = r.tier, r.staleness_s, r.warning
        entry.method = r.method.value if r.method is not None else None

    def flush(self) -> None:
        """Push every process's buffered metrics and audit records to the stores."""
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.recorder.flush()

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.close()
        with contextlib.suppress(Exception):
            delete_app(APP_NAME)
        with contextlib.suppress(Exception):
            stop_actors(self.circuits)
        with contextlib.suppress(Exception):
            self.postgres.remove()
        with contextlib.suppress(Exception):
            self.redis.stop()
