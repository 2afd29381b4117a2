"""What the control API reads and changes: the stores for reads, the actors for changes.

Reads come from the stores, cluster-wide: circuits from their Redis hashes, call counts from
the metric counters and the health checks' statuses together in one round trip (so 1,000
circuits cost one read, not 1,000 actor calls), failures and the audit trail from SQL.
Changes go to the actor that owns the state (a circuit's actor, the orchestrator), and every
change is first written to the audit trail with who made it: a change whose record cannot be
made durable is not made.

Nothing here knows HTTP; ``serve.control_api`` is the web layer over it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import func, select

from healing.audit import AuditKind, operator_action
from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError
from healing.orchestration import TriggerEvent
from healing.workflow import Trigger

from .control_learning import LearningReads
from .ray_gateway import NAMESPACE, ActorUnavailable, call_actor, find_actor, notify_actor
from .settings import Settings
from .stores.actor_state import ActorState
from .stores.api_tokens import TokenStore
from .stores.audit_spool import segments
from .stores.audit_sql import AuditStore, audit_log, circuit_transitions, failure_events
from .stores.audit_trail import AuditTrail
from .stores.cluster_view import ClusterView, ClusterViewReader
from .stores.redis_conn import connect

__all__ = ["ControlBackend", "NotFound", "Unavailable"]



class NotFound(SelfHealError):
    """The thing a request names does not exist (a circuit, a run, an alert)."""


class Unavailable(SelfHealError):
    """A part the request needs is not running or cannot be reached."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class ControlBackend(LearningReads):
    def __init__(self, settings: Settings, *, orchestrator: str = "orchestrator",
                 health: str = "health", monitor: str = "monitor",
                 clock: Clock | None = None) -> None:
        if settings.redis_url is None:
            raise ValueError("ControlBackend needs settings.redis_url: bootstrap() first")
        self.settings = settings
        self.clock = clock or SystemClock()
        self.redis = connect(settings.redis_url)
        self.store = AuditStore(settings.audit_database_url())
        self.tokens = TokenStore(self.store, self.clock)
        self.audit = AuditTrail.from_config(settings.audit_config(), None)
        self.orchestrator, self.health, self.monitor = orchestrator, health, monitor
        # what the actors persist (actors.stores.actor_state), read without asking them
        self.orchestrator_state = ActorState(self.redis, f"selfheal:{orchestrator}")
        self._read_view = ClusterViewReader(
            self.redis, ActorState(self.redis, f"selfheal:{health}").key("status"))

    # -- reads -------------------------------------------------------------------------

    def cluster_view(self) -> ClusterView:
        """Every circuit's cluster view, calls per service and the health checks' statuses,
        from Redis in one round trip (``actors.stores.cluster_view``)."""
        try:
            return self._read_view()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis: {exc}") from exc

    def circuits(self) -> list[dict[str, Any]]:
        """Every circuit's cluster view, sorted by name."""
        return self.cluster_view().circuits

    def services(self, since: float, until: float, step_s: float = 60.0) -> dict[str, Any]:
        """Per service, from its metric stream between ``since`` and ``until``: each step's
        calls, errors and p95 latency (ms), and who answered patients (the primary; each
        fallback tier; nobody: failed explicitly). Every failure is in the stream; successes
        are a sample (``metrics_sample_rate``), so primary answers are estimates, marked so."""
        rate = self.settings.metrics_sample_rate or 1.0
        steps = max(1, int((until - since) // step_s))
        out: dict[str, Any] = {}
        lo, hi = f"{int(since * 1000)}-0", f"{int(until * 1000)}-18446744073709551615"
        try:
            names = sorted(k.decode()[len("metrics:"):] for k in
                           self.redis.scan_iter("metrics:*", count=1000, _type="stream"))
            pipe = self.redis.pipeline(transaction=False)
            for n in names:
                pipe.xrange(f"metrics:{n}", lo, hi)
            entries = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis: {exc}") from exc
        for name, rows in zip(names, entries, strict=True):
            calls, errors = [0.0] * steps, [0] * steps
            latencies: list[list[float]] = [[] for _ in range(steps)]
            answered: dict[str, float] = {"primary": 0.0}
            failed = 0
            for _id, fields in rows:
                for at, latency, ok, error_kind, tier, _provider in json.loads(fields[b"events"]):
                    i = int((at - since) // step_s)
                    if not 0 <= i < steps:
                        continue
                    weight = 1.0 if error_kind is not None else 1.0 / rate
                    calls[i] += weight
                    if error_kind is not None:
                        errors[i] += 1
                    if latency is not None:
                        latencies[i].append(latency)
                    if not ok:
                        failed += 1
                    elif tier == "primary":
                        answered["primary"] += weight
                    else:
                        answered[tier] = answered.get(tier, 0.0) + 1
            out[name] = {
                "calls": [round(c, 1) for c in calls], "errors": errors,
                "p95_ms": [None if not v else round(sorted(v)[int(0.95 * (len(v) - 1))] * 1000, 1)
                           for v in latencies],
                "answered": {k: round(v, 1) for k, v in answered.items()},
                "failed_explicitly": failed, "primary_estimated": rate < 1.0}
        return {"since": since, "step_s": step_s, "services": out}

    def workflow_counts(self) -> dict[str, dict[str, int]]:
        """Recovery steps, runs and triggers per service (the orchestrator's counters)."""
        return self._counters("recovery:*", lambda key: key.split(":", 1)[1])

    def _counters(self, pattern: str, name_of: Any) -> dict[str, dict[str, int]]:
        """Every counter hash matching ``pattern``, in one pipelined read, by name."""
        try:
            keys = sorted(k.decode() for k in self.redis.scan_iter(pattern, count=1000))
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(k)
            rows = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis: {exc}") from exc
        return {name_of(k): {f.decode(): int(v) for f, v in row.items()}
                for k, row in zip(keys, rows, strict=True)}

    def recent_failures(self, since: float, until: float, limit: int) -> list[dict[str, Any]]:
        t = failure_events
        q = (select(t.c.at, t.c.service, t.c.provider, t.c.operation_type, t.c.criticality,
                    t.c.error_kind, t.c.served_by, t.c.patient_impact)
             .where(t.c.at >= since, t.c.at <= until).order_by(t.c.at.desc()).limit(limit))
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def fallback_use(self) -> dict[tuple[str, str], int]:
        t = failure_events
        q = select(t.c.service, t.c.served_by, func.count()).group_by(t.c.service, t.c.served_by)
        with self.store.engine.connect() as conn:
            return {(s, served or "none"): int(n) for s, served, n in conn.execute(q)}

    def transitions(self) -> dict[tuple[str, str], int]:
        t = circuit_transitions
        q = select(t.c.circuit, t.c.to_state, func.count()).group_by(t.c.circuit, t.c.to_state)
        with self.store.engine.connect() as conn:
            return {(c, s): int(n) for c, s, n in conn.execute(q)}

    def audit_page(self, *, kind: str | None, service: str | None, since: float | None,
                   until: float | None, offset: int, limit: int) -> Page:
        t = audit_log
        where = []
        if kind is not None:
            where.append(t.c.kind == AuditKind(kind).value)
        if service is not None:
            where.append(t.c.service == service)
        if since is not None:
            where.append(t.c.at >= since)
        if until is not None:
            where.append(t.c.at <= until)
        q = select(t.c.id, t.c.kind, t.c.at, t.c.service, t.c.data, t.c.writer, t.c.seq,
                   t.c.hash).where(*where)
        with self.store.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(q.subquery()))
                        .scalar_one())
            rows = conn.execute(q.order_by(t.c.at, t.c.writer, t.c.seq)
                                .offset(offset).limit(limit))
            items = [dict(r._mapping) for r in rows]
        return Page(items, total, offset, limit)

    def spool_backlog(self) -> tuple[int, int]:
        """Segments and bytes waiting in the audit spool for the database."""
        segs = segments(self.settings.spool_dir())
        return len(segs), sum(s.path.stat().st_size for s in segs if s.path.exists())

    def models(self) -> dict[str, Any]:
        """The error thresholds in force and the monitor model's registered versions."""
        from learning.model_registry import versions  # noqa: PLC0415 - MLflow: slow import

        return {"thresholds": self.thresholds(),
                **versions(self.settings.mlflow_uri())}

    def promote_model(self, version: str | None, who: str, reason: str) -> dict[str, Any]:
        """Make ``version`` the champion; None: roll back to the one promoted before."""
        from learning.model_registry import (  # noqa: PLC0415
            RegistryError,
            previous_champion,
            set_champion,
            versions,
        )

        uri = self.settings.mlflow_uri()
        try:
            target = version if version is not None else previous_champion(uri)
        except RegistryError as exc:
            raise NotFound(str(exc)) from None
        if target not in {v["version"] for v in versions(uri)["versions"]}:
            raise NotFound(f"the monitor model has no version {target!r}")
        action = "model_promoted" if version is not None else "model_rolled_back"
        self._audit("selfheal", who, action, {"version": target, "reason": reason})
        set_champion(uri, target, [f"{action.split('_', 1)[1]} by {who}: {reason}"])
        # the running monitor checks for a new champion every minute on its own; told now,
        # it adopts it (and the recurring failures it carries) at once
        notify_actor(self.monitor, "refresh_model", what="model promoted", role="monitor")
        return self.models()

    def set_threshold(self, service: str, threshold: float, window_s: float, who: str,
                      reason: str) -> dict[str, Any]:
        orch = self._orchestrator()
        try:
            known = service in call_actor(orch, "thresholds") or self.redis.exists(
                f"metrics:{service}")
        except redis.RedisError as exc:
            raise Unavailable(f"Redis: {exc}") from exc
        if not known:  # a typo would watch nothing, silently
            raise NotFound(f"no service {service!r}: it has no metric stream yet")
        self._audit(service, who, "error_threshold_change_requested",
                    {"threshold": threshold, "window_s": window_s, "reason": reason})
        return call_actor(orch, "adopt_threshold", service, threshold, window_s, reason, who)

    def revert_threshold(self, service: str, who: str) -> dict[str, Any]:
        orch = self._orchestrator()
        if service not in call_actor(orch, "thresholds"):
            raise NotFound(f"no error threshold for {service!r}")
        self._audit(service, who, "error_threshold_revert_requested", {})
        try:
            return call_actor(orch, "revert_threshold", service, who)
        except ActorUnavailable:
            raise
        except Exception as exc:  # the actor's ValueError: nothing earlier to go back to
            raise NotFound(f"{service}: no earlier error threshold to go back to") from exc

    def verify(self) -> dict[str, Any]:
        """The audit trail checked as ``selfheal audit verify`` checks it."""
        from .stores.audit_checkpoints import public_path  # noqa: PLC0415
        from .stores.audit_verify import verify_trail  # noqa: PLC0415

        s = self.settings
        report = verify_trail(s.audit_database_url(), checkpoint_logs=[s.checkpoint_log()],
                              public_keys=[public_path(s.signing_key_file())],
                              spool_dir=s.spool_dir(), missing_logs_ok=True,
                              missing_keys_ok=True)
        return {"intact": report.intact, **dataclasses.asdict(report)}

    def runs(self) -> list[dict[str, Any]]:
        """Recovery runs, oldest first, as the orchestrator persists them."""
        runs = self.orchestrator_state.table("runs").values()
        return sorted(runs, key=lambda r: (r["started_at"], r["run_id"]))

    def run(self, run_id: str) -> dict[str, Any]:
        summary = self.orchestrator_state.table("runs").get(run_id)
        if summary is None:
            raise NotFound(f"no recovery run {run_id!r}")
        return {**summary, "steps": self.orchestrator_state.items(f"history:{run_id}")}

    def detections(self, since: float | None = None, service: str | None = None
                   ) -> list[dict[str, Any]]:
        """Triggers that reached the orchestrator (the newest thousand), oldest first."""
        return [d for d in self.orchestrator_state.items("detections")
                if (since is None or d["at"] >= since)
                and (service is None or d["service"] == service)]

    def watch(self, since: float | None = None, service: str | None = None
              ) -> list[dict[str, Any]]:
        """The error watch's rounds (the newest hour's), oldest first: per watched service,
        the errors and calls it read over its window and over the window's recent part,
        and what became of the trigger when it fired (``admitted``, else None)."""
        rounds = [r for r in self.orchestrator_state.items("watch")
                  if since is None or r["at"] >= since]
        if service is None:
            return rounds
        return [{**r, "services": {service: r["services"][service]}} for r in rounds
                if service in r["services"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts the orchestrator raised, as it persists them, oldest first."""
        alerts = self.orchestrator_state.table("alerts").values()
        return sorted(alerts, key=lambda a: (a["triggered_at"], a["dedup_key"]))

    def thresholds(self) -> dict[str, Any]:
        return call_actor(self._orchestrator(), "thresholds")

    # -- changes (each audited first, with who made it) --------------------------------

    def reset_circuit(self, name: str, who: str, reason: str) -> dict[str, Any]:
        return self._circuit_action(name, "reset", who, reason or "reset by operator")

    def force_open(self, name: str, who: str, reason: str) -> dict[str, Any]:
        return self._circuit_action(name, "force_open", who, reason or "forced open by operator")

    def trigger(self, service: str, who: str, reason: str) -> dict[str, Any]:
        orch = self._orchestrator()
        self._audit(service, who, "recovery_triggered", {"reason": reason})
        event = TriggerEvent(Trigger.MANUAL, service, f"{who}: {reason}")
        return {"service": service, "admitted": call_actor(orch, "trigger", event)}

    def update_alert(self, key: str, action: str, who: str) -> dict[str, Any]:
        orch = self._orchestrator()
        known = {a["dedup_key"]: a for a in self.alerts()}
        if key not in known:
            raise NotFound(f"no alert with dedup key {key!r}")
        self._audit(known[key]["service"], who, f"alert_{action}", {"dedup_key": key})
        return call_actor(orch, "update_alert", key, action)

    def create_token(self, role: str, name: str, who: str) -> tuple[str, dict[str, Any]]:
        self._audit("selfheal", who, "token_created", {"role": role, "name": name})
        secret, token = self.tokens.create(role, name, who)
        return secret, _token_dict(token)

    def list_tokens(self) -> list[dict[str, Any]]:
        return [_token_dict(t) for t in self.tokens.list()]

    def revoke_token(self, token_id: str, who: str) -> dict[str, Any]:
        if not any(t.id == token_id for t in self.tokens.list()):
            raise NotFound(f"no token {token_id!r}")
        self._audit("selfheal", who, "token_revoked", {"token": token_id})
        return _token_dict(self.tokens.revoke(token_id))

    # -- internals ---------------------------------------------------------------------

    def _circuit_action(self, name: str, method: str, who: str, reason: str) -> dict[str, Any]:
        actor = find_actor(f"circuit:{name}")
        if actor is None:
            raise NotFound(f"no circuit {name!r}")
        self._audit(name.split(":", 1)[0], who, f"circuit_{method}",
                    {"circuit": name, "reason": reason})
        return call_actor(actor, method, self.clock.wall(), f"{reason} ({who})")

    def _orchestrator(self) -> Any:
        actor = find_actor(self.orchestrator, NAMESPACE)
        if actor is None:
            raise Unavailable(f"the orchestrator {self.orchestrator!r} is not running")
        return actor

    def _audit(self, service: str, who: str, action: str, details: dict[str, Any]) -> None:
        # Synchronous and durable (the spool fsyncs) before the change is made. ``who`` names
        # an API token and its holder's handle, not a patient or clinician: kept as it is.
        self.audit.append(operator_action(service=service, at=self.clock.wall(), operator=who,
                                          action=action, pseudonymize=lambda w: w,
                                          details=details))

    def close(self) -> None:
        self.audit.close()
        self.store.dispose()


def _token_dict(token: Any) -> dict[str, Any]:
    return {f: getattr(token, f) for f in ("id", "name", "role", "created_at", "created_by",
                                           "revoked_at")}


