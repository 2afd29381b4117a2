"""The control API: FastAPI over :class:`actors.control.ControlBackend`.

The web layer only: who may call what, errors as JSON (the models are in ``api_models``). Every
route but ``/api/v1/livez`` needs a bearer token (``selfheal token create``); a missing or
bad one is 401, a role that may not is 403, and both are answered before anything is read or
changed. Roles: viewer (reads), operator (a viewer who may also reset and force circuits,
trigger recovery, acknowledge and resolve alerts), auditor (a viewer who may also read and
verify the audit trail), admin (everything, and tokens).

Handlers are plain ``def``, registered through :class:`api_threads.ApiThreads`: they run on
its thread pool (not FastAPI's, which costs more inside a Serve replica), so the blocking store
reads and actor calls never stall the replica's event loop. A token accepted moments ago is
checked on the loop itself (:class:`actors.stores.api_tokens.RecentTokens`).
"""


import logging
import pathlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

import redis.exceptions
import sqlalchemy.exc
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from actors.control import ControlBackend, NotFound, Unavailable
from actors.ray_gateway import ActorUnavailable
from actors.stores.api_tokens import ApiToken, RecentTokens
from actors.stores.audit_sql import AuditStoreError
from healing.audit import AuditKind
from healing.errors import ConfigError

from .api_models import (
    NAME,
    AuditPage,
    Circuit,
    Health,
    NewToken,
    Problem,
    Reason,
    ThresholdRequest,
    Token,
    TokenRequest,
    TriggerRequest,
)
from .api_threads import ApiThreads
from .prometheus import exposition

__all__ = ["DASHBOARD", "build_app"]

DASHBOARD = pathlib.Path(__file__).with_name("dashboard")

_log = logging.getLogger("selfheal.api")

# which roles may do what; admin may do everything
_MAY: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "operator", "auditor", "admin"}),
    "operate": frozenset({"operator", "admin"}),
    "audit": frozenset({"auditor", "admin"}),
    "admin": frozenset({"admin"}),
}


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or not a valid one"},
    403: {"model": Problem, "description": "the token's role may not do this"},
    503: {"model": Problem, "description": "a part this needs is not running"},
}


def build_app(backend: ControlBackend, *, cors_origins: tuple[str, ...] = (),
              token_cache_s: float = 5.0) -> FastAPI:
    app = FastAPI(title="selfheal control API", version="1",
                  description="Operate selfheal: circuits, recovery, alerts, audit, metrics.",
                  responses=_ERRORS)
    if cors_origins:  # off unless configured
        from fastapi.middleware.cors import CORSMiddleware  # noqa: PLC0415

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    bearer = HTTPBearer(auto_error=False)
    recent = RecentTokens(backend.tokens, ttl_s=token_cache_s)
    threads = ApiThreads()  # every route's blocking reads and writes (see api_threads)
    get, post, delete = threads.routes(app.get), threads.routes(app.post), threads.routes(
        app.delete)

    def role(may: str) -> Callable[..., Any]:
        # On the event loop: a token accepted moments ago is checked without a thread (a
        # handoff costs more than the check); anything else reads the database in one.
        async def check(creds: Annotated[HTTPAuthorizationCredentials | None,
                                         Depends(bearer)]) -> ApiToken:
            token = None
            if creds is not None:
                token = recent.cached(creds.credentials) or await threads.run(
                    recent.authenticate, creds.credentials)
            if token is None:
                raise HTTPException(401, "a valid bearer token is required",
                                    headers={"WWW-Authenticate": "Bearer"})
            if token.role not in _MAY[may]:
                raise HTTPException(403, f"role {token.role!r} may not {may}")
            return token
        return check

    Reader = Annotated[ApiToken, Depends(role("read"))]
    Operator = Annotated[ApiToken, Depends(role("operate"))]
    Auditor = Annotated[ApiToken, Depends(role("audit"))]
    Admin = Annotated[ApiToken, Depends(role("admin"))]

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503)

    @app.exception_handler(ActorUnavailable)
    async def _actor_away(_: Request, exc: ActorUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"an actor is not answering, retry shortly ({exc})"},
                            503, headers={"Retry-After": "2"})

    @app.exception_handler(AuditStoreError)
    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _database_away(_: Request, exc: Exception) -> JSONResponse:
        # tokens and the audit trail live there: nothing can be checked or read until it is
        # back, and that is an outage to wait out, not an internal error
        return JSONResponse({"detail": "the audit database is not answering, retry shortly"},
                            503, headers={"Retry-After": "5"})

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_away(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "Redis is not answering, retry shortly"}, 503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(ConfigError)
    async def _invalid(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        # logged in full for the operator; the caller gets one line, never a traceback
        _log.error("control API request failed", exc_info=exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)

    # The operator dashboard: static files only (no data, so no token); it reads and acts
    # through the routes below, like any other client.
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")

    @get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @get("/api/v1/livez", tags=["service"], responses={})
    async def livez() -> dict[str, bool]:
        """Liveness, for load balancers: no token needed, nothing read."""
        return {"ok": True}

    @get("/api/v1/health", tags=["health"])
    def health(_: Reader, hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24.0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Health:
        """Every circuit's cluster view, health checks, calls per service, recent failures."""
        now = backend.clock.wall()
        view = backend.cluster_view()
        return Health(circuits=[Circuit(**c) for c in view.circuits],
                      health_checks=view.health_checks, services=view.calls,
                      recent_failures=backend.recent_failures(now - hours * 3600, now, limit),
                      since=now - hours * 3600)

    @get("/api/v1/whoami", tags=["tokens"])
    async def whoami(token: Reader) -> dict[str, str]:
        """The token's id, name and role: what a client may offer its user."""
        return {"id": token.id, "name": token.name, "role": token.role}

    @get("/api/v1/services", tags=["health"])
    def services(_: Reader, minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60,
                 step_s: Annotated[int, Query(ge=10, le=3600)] = 60) -> dict[str, Any]:
        """Per service over the last ``minutes``: calls, errors and p95 latency per step, and
        patient impact: answers by the primary and by each fallback tier, explicit failures."""
        now = backend.clock.wall()
        return backend.services(now - minutes * 60, now, float(step_s))

    @get("/api/v1/circuits", tags=["circuits"])
    def circuits(_: Reader) -> list[Circuit]:
        return [Circuit(**c) for c in backend.circuits()]

    @post("/api/v1/circuits/{name}/reset", tags=["circuits"])
    def reset(name: Annotated[str, _name()], body: Reason, who: Operator) -> dict[str, Any]:
        """Close a circuit: traffic goes back to its provider."""
        return backend.reset_circuit(name, who.who, body.reason)

    @post("/api/v1/circuits/{name}/force-open", tags=["circuits"])
    def force_open(name: Annotated[str, _name()], body: Reason,
                   who: Operator) -> dict[str, Any]:
        """Open a circuit: its provider gets no traffic until reset or a trial passes."""
        return backend.force_open(name, who.who, body.reason)

    @get("/api/v1/recovery/runs", tags=["recovery"])
    def runs(_: Reader, since: float | None = None,
             until: float | None = None) -> list[dict[str, Any]]:
        """Recovery runs, newest last, optionally within [since, until] (UTC epoch s)."""
        return [r for r in backend.runs()
                if (since is None or r["started_at"] >= since)
                and (until is None or r["started_at"] <= until)]

    @get("/api/v1/recovery/runs/{run_id}", tags=["recovery"])
    def run(run_id: Annotated[str, _name()], _: Reader) -> dict[str, Any]:
        """One run with its steps and their outcomes."""
        return backend.run(run_id)

    @post("/api/v1/recovery/trigger", tags=["recovery"])
    def trigger(body: TriggerRequest, who: Operator) -> dict[str, Any]:
        """Start the service's manual workflow now."""
        return backend.trigger(body.service, who.who, body.reason)

    @get("/api/v1/detections", tags=["recovery"])
    def detections(_: Reader, since: float | None = None,
                   service: Annotated[str | None, Query(max_length=200)] = None
                   ) -> list[dict[str, Any]]:
        """Triggers that reached the orchestrator (circuit_open, health_check_failed,
        error_threshold, anomaly, memory_growth, predicted, manual), with when and what
        became of them, oldest first: the newest thousand."""
        return backend.detections(since, service)

    @get("/api/v1/watch", tags=["recovery"])
    def watch(_: Reader, since: float | None = None,
              service: Annotated[str | None, Query(max_length=200)] = None
              ) -> list[dict[str, Any]]:
        """The error-threshold watch's rounds, oldest first (the newest hour's): per watched
        service, the errors and calls read over its window and the window's recent part,
        and the trigger's admission when it fired; ``took_s`` is how long the round took."""
        return backend.watch(since, service)

    @get("/api/v1/slo", tags=["alerts"])
    def slo(_: Reader) -> dict[str, Any]:
        """Each service's availability SLO: the objective, the error budget left over the
        period, the burn rate over each window (seconds), the burn-rate alerts in force; and
        the pager's notices, pages and tickets, newest last (the paging mode says when a
        page goes out: two_key, only when a burn-rate alert and a detection agree)."""
        return backend.slo()

    @get("/api/v1/resources", tags=["alerts"])
    def resources(_: Reader) -> dict[str, Any]:
        """Each Serve replica's resident memory against its limit (MiB) as the predictive
        monitor last read it on its node, and the memory alerts raised: a replica whose
        memory is forecast to reach its limit within the hour."""
        return backend.resources()

    @get("/api/v1/alerts", tags=["alerts"])
    def alerts(_: Reader, active: bool = False) -> list[dict[str, Any]]:
        found = backend.alerts()
        return [a for a in found if a["status"] != "resolved"] if active else found

    @post("/api/v1/alerts/{key}/acknowledge", tags=["alerts"])
    def acknowledge(key: Annotated[str, _name()], who: Operator) -> dict[str, Any]:
        """Acknowledge an alert, and its PagerDuty incident by the dedup key."""
        return backend.update_alert(key, "acknowledge", who.who)

    @post("/api/v1/alerts/{key}/resolve", tags=["alerts"])
    def resolve(key: Annotated[str, _name()], who: Operator) -> dict[str, Any]:
        """Resolve an alert, and its PagerDuty incident by the dedup key."""
        return backend.update_alert(key, "resolve", who.who)

    @get("/api/v1/audit", tags=["audit"])
    def audit(_: Auditor, kind: Literal[tuple(k.value for k in AuditKind)] | None = None,  # type: ignore[valid-type]
              service: Annotated[str | None, Query(max_length=200)] = None,
              since: float | None = None, until: float | None = None,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
        """The audit trail, oldest first; identifiers appear only as pseudonyms."""
        page = backend.audit_page(kind=kind, service=service, since=since, until=until,
                                  offset=offset, limit=limit)
        return AuditPage(items=page.items, total=page.total, offset=page.offset,
                         limit=page.limit)

    @post("/api/v1/audit/verify", tags=["audit"])
    def verify(_: Auditor) -> dict[str, Any]:
        """What ``selfheal audit verify`` reports, for the configured trail."""
        return backend.verify()

    @get("/api/v1/patterns", tags=["patterns"])
    def patterns(_: Reader, days: Annotated[float, Query(gt=0, le=366)] = 30.0
                 ) -> list[dict[str, Any]]:
        """Recurring failures in the live trail (seed 7.1), most urgent first: when they
        recur, their typical cause, what to do before them, priority and estimated impact."""
        now = backend.clock.wall()
        return backend.patterns(now - days * 86400, now)

    @get("/api/v1/patterns/combinations", tags=["patterns"])
    def combinations(_: Reader, days: Annotated[float, Query(gt=0, le=366)] = 30.0
                     ) -> list[dict[str, Any]]:
        """Services that fail together in the live trail (seed 7.1's service combinations),
        most frequent first: how often, which one fails first and with what cause, how far
        apart, and what to heal first."""
        now = backend.clock.wall()
        return backend.combinations(now - days * 86400, now)

    @get("/api/v1/models", tags=["models"])
    def models(_: Reader) -> dict[str, Any]:
        """Error thresholds in force per service (rate, window s), and the monitor model's
        registered versions with the champion the monitors run."""
        return backend.models()

    @get("/api/v1/training", tags=["models"])
    def training(_: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
                 ) -> dict[str, Any]:
        """The scheduled training: its cron (UTC), the next fire time, and its runs, newest
        first: succeeded (version, promoted or why not, seconds per phase), failed (why) and
        missed (a training still running, or the scheduler down at the time)."""
        return backend.training(limit)

    @post("/api/v1/models/{version}/promote", tags=["models"])
    def promote(version: Annotated[str, Path(pattern=r"^[0-9]{1,9}$")], body: Reason,
                who: Operator) -> dict[str, Any]:
        """Make a version the champion; the running monitor adopts it at once (on its own,
        it checks every minute)."""
        return backend.promote_model(version, who.who, body.reason)

    @post("/api/v1/models/rollback", tags=["models"])
    def rollback(body: Reason, who: Operator) -> dict[str, Any]:
        """Go back to the champion before the current one."""
        return backend.promote_model(None, who.who, body.reason)

    @post("/api/v1/thresholds/{service}", tags=["models"])
    def set_threshold(service: Annotated[str, _name()], body: ThresholdRequest,
                      who: Operator) -> dict[str, Any]:
        """Put an error threshold in force for a service that has a metric stream (the one
        notebooks/threshold_tuning chooses, say); audited with who, undone by revert."""
        return backend.set_threshold(service, body.threshold, body.window_s, who.who,
                                     body.reason)

    @post("/api/v1/thresholds/{service}/revert", tags=["models"])
    def revert_threshold(service: Annotated[str, _name()], who: Operator) -> dict[str, Any]:
        """Undo the last change to a service's error threshold."""
        return backend.revert_threshold(service, who.who)

    @get("/api/v1/tokens", tags=["tokens"])
    def tokens(_: Admin) -> list[Token]:
        """Every token ever made, revoked ones too; never their secrets."""
        return [Token(**t) for t in backend.list_tokens()]

    @post("/api/v1/tokens", tags=["tokens"], status_code=201)
    def create_token(body: TokenRequest, who: Admin) -> NewToken:
        secret, token = backend.create_token(body.role, body.name, who.who)
        return NewToken(token=secret, **token)

    @delete("/api/v1/tokens/{token_id}", tags=["tokens"])
    def revoke_token(token_id: Annotated[str, _name()], who: Admin) -> Token:
        revoked = Token(**backend.revoke_token(token_id, who.who))
        recent.forget(token_id)  # refused here at once; other replicas within the cache time
        return revoked

    @get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    def metrics(_: Reader) -> PlainTextResponse:
        """Prometheus exposition of the cluster-wide state (one scrape sees it all)."""
        text, content_type = exposition(backend)
        return PlainTextResponse(text, media_type=content_type)

    return app


def _name() -> Any:
    return Path(pattern=NAME)
