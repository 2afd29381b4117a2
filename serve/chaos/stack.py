"""The system under fire: selfheal as ``selfheal up`` runs it, on stores the suite owns, and
the guarding processes that carry the clinical load.

Everything is real: Ray (joined when the caller already runs one, else a private local one),
Ray Serve with the control API, the orchestrator, health and predictive-monitor actors, a
private Redis and a private PostgreSQL (:mod:`.stores`). The AI providers are the one stand-in
(the outside world cannot be reached here): an HTTP server on loopback, in a process of its
own, whose behaviour a fault switches (:mod:`.providers`).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from typing import Any

import httpx

from actors.process import GuardProcess
from actors.ray_gateway import LocalCluster, init_ray
from actors.serve_control import delete_app, serve_http
from actors.settings import Settings
from actors.stores.embedded_redis import EmbeddedRedis
from healing import ClinicalContext
from healing.catalogue import SHIPPED, load_catalogue
from healing.errors import ClinicalSafetyError, FallbackExhausted

from ..control_app import APP_NAME, control_api
from ..service import create_token, first_admin_token, prepare, stop_actors
from ..webhook_sink import LocalWebhook
from .ledger import ERROR, EXPLICIT, FALLBACK, PRIMARY, Entry
from .providers import ProviderProcess, Providers
from .stores import PrivateMlflow, PrivatePostgres, free_port

__all__ = ["PRIMARIES", "ChaosStack"]

# service -> (primary provider, its alternative or None), as the shipped catalogue has them
PRIMARIES: dict[str, tuple[str, str | None]] = {
    "clinical_reasoning": ("gemini:pro", "deepseek"),
    "xray_analysis": ("gemini:pro", "gemini:flash"),
    "pharmaguard": ("pharmaguard_api", "local_database"),
    "care_locator": ("care_locator_api", None),
}
QUESTIONS = 8  # per service: few enough that answers get cached and reused


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
        self.provider_server = ProviderProcess()
        self.providers: Providers | None = None  # the client, once the server runs
        self._primaries: dict[str, Any] = {}
        self.redis = EmbeddedRedis(self.root / "redis", persist=True)
        self.postgres = PrivatePostgres(self.root / "postgres")
        # on a cluster, MLflow is a tracking server the nodes reach by URL, as in production
        self.mlflow = PrivateMlflow(self.root / "mlflow") if cluster is not None else None
        self.procs: list[GuardProcess] = []
        # the on-call channel, on loopback: a workflow's alert step is delivered, as in a
        # deployment, rather than failing for want of a channel (every alert goes to it)
        self.slack: LocalWebhook | None = None
        self.settings: Settings | None = None
        self.url = ""
        self.tokens: dict[str, str] = {}
        self.circuits = [f"{s}:{p}" for s, (p, _) in PRIMARIES.items()]

    def start(self, ray_address: str | None = None) -> ChaosStack:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        providers = self.providers = Providers(self.provider_server.start().url)
        self._primaries = {service: providers.fn(f"{service}:{primary}", service)
                           for service, (primary, _) in PRIMARIES.items()}
        self.redis.start()
        self.postgres.start()
        database = self.postgres.create_database("selfheal")
        mlflow = {"mlflow_tracking_uri": self.mlflow.start().url} if self.mlflow else {}
        self.slack = LocalWebhook()
        settings = Settings.embedded(self.root / "data").model_copy(update={
            **mlflow,
            "redis_url": self.redis.url, "database_url": database, "api_port": free_port(),
            "slack_webhook_url": self.slack.url,
            "metrics_sample_rate": 1.0,
            # as a deployment that must stay up does: a killed replica is not seen by clients
            "api_replicas": 2,
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
            proc = GuardProcess(self.settings, process_id=f"replica-{i}", circuit=self.circuit,
                                limits=self.catalogue.call_policies())
            for service, (primary, alternative) in PRIMARIES.items():
                proc.share(service, primary)
                # recovery probes the primary through the processes, as in production
                proc.register_probe(service, providers.fn(f"{service}:{primary}", service),
                                    args=("probe",))
                if alternative:
                    proc.guard.fallbacks.register_provider(
                        service, alternative,
                        providers.fn(f"{service}:{alternative}", service))
            self.procs.append(proc)
        return self

    def provider_switch(self) -> Providers:
        """The providers' client, whose ``set`` a fault turns (once the stack started)."""
        if self.providers is None:
            raise RuntimeError("the stack has not started: no providers to switch")
        return self.providers

    def alerts_delivered(self) -> int:
        """Alerts the on-call channel has received since the stack started."""
        return len(self.slack.received) if self.slack is not None else 0

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
            r = proc.guard.call(entry.service, self._primaries[entry.service], question,
                                context=ctx, provider=primary, cache_key=question)
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
        if self.providers is not None:
            self.providers.close()
        self.provider_server.close()
        if self.slack is not None:
            self.slack.close()
        with contextlib.suppress(Exception):
            delete_app(APP_NAME)
        with contextlib.suppress(Exception):
            stop_actors(self.circuits)
        with contextlib.suppress(Exception):
            self.postgres.remove()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.mlflow is not None:
            with contextlib.suppress(Exception):
                self.mlflow.stop()
