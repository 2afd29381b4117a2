"""``selfheal up``, ``down`` and ``status``: selfheal as a lasting service.

``up`` starts a local Ray head node (or joins ``RAY_ADDRESS``), prepares the stores, starts
the long-lived actors (health monitor, orchestrator, predictive monitor, training scheduler
when scheduled; circuits start on first use) from the service catalogue's policy, deploys the
control API on Ray Serve, and exits: everything keeps running in the cluster. What it started
is written to ``<data_dir>/service.json`` so that ``down`` stops exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from typing import Any

from actors.alerts import AlertRouter, Endpoint
from actors.health_checks import CheckSpec
from actors.process import bootstrap
from actors.ray_gateway import (
    NAMESPACE,
    ActorUnavailable,
    call_actor,
    find_actor,
    init_ray,
    kill,
    place_actors,
)
from actors.runtime import circuit_named, health_monitor, orchestrator, predictive_monitor
from actors.serve_control import app_status, serve_http, shutdown_serve
from actors.settings import Settings
from actors.stores.api_tokens import TokenStore
from actors.stores.audit_sql import AuditStore
from healing.catalogue import SHIPPED, Catalogue, load_catalogue
from learning.policy import policy_from

from .control_app import APP_NAME, control_api

__all__ = ["ServiceError", "create_token", "down", "prepare", "status", "stop_actors", "up"]

ACTORS = ("orchestrator", "health", "monitor", "training-scheduler")


class ServiceError(Exception):
    """selfheal could not be started, stopped or found; says why in one line."""


def _state_file(settings: Settings) -> pathlib.Path:
    return settings.data_dir / "service.json"


def _alerts(settings: Settings) -> AlertRouter | None:
    channels = {}
    if settings.slack_webhook_url:
        channels["slack"] = Endpoint("slack", settings.slack_webhook_url)
    if settings.pagerduty_routing_key is not None:
        channels["pager"] = Endpoint("pagerduty", settings.pagerduty_events_url,
                                     settings.pagerduty_routing_key.get_secret_value())
    if not channels:
        return None
    # one channel configured: every alert goes there, whichever channel a workflow names
    for missing in {"slack", "pager"} - set(channels):
        channels[missing] = next(iter(channels.values()))
    return AlertRouter(channels, escalate={"critical": "pager"})


def prepare(settings: Settings, catalogue: Catalogue | None = None) -> Settings:
    """The stores (schema, embedded Redis) and the long-lived actors, on a connected Ray.
    Returns the settings with the Redis URL filled in."""
    settings, _server = bootstrap(settings)  # an embedded Redis outlives this process
    place_actors(settings.actor_resources)
    cat = catalogue or load_catalogue(settings.catalogue or SHIPPED)
    policy = policy_from(cat)
    health = health_monitor("health", orchestrator="orchestrator",
                            redis_url=settings.redis_url)
    for svc in cat.services.values():
        for check in svc.checks:
            health.register.remote(CheckSpec(
                check.name, check.kind, check.target,
                policy={"interval_s": policy.health.interval_s,
                        "timeout_s": policy.health.timeout_s, "fall": policy.health.fall,
                        "rise": policy.health.rise}, service=svc.name))
    orchestrator("orchestrator", policy=policy, audit=settings.audit_config(),
                 redis_url=settings.redis_url, alerts=_alerts(settings),
                 circuit_for=circuit_named, health_monitor=health,
                 watch_interval_s=policy.error_check_s,
                 primaries={n: s.primary for n, s in cat.services.items()},
                 state_prefix="selfheal:orchestrator",
                 # the streams hold every error and this share of the successes: both read
                 # them back re-weighted by it (the chaos suite found it fixed at 0.1)
                 sample_rate=settings.metrics_sample_rate,
                 paging=None if settings.paging == "off" else settings.paging)
    # it follows the champion model (and its patterns) that the scheduled training promotes
    predictive_monitor(settings.redis_url, "monitor", orchestrator="orchestrator",  # type: ignore[arg-type]
                       sample_rate=settings.metrics_sample_rate,
                       model_uri=settings.mlflow_uri(), slo_objective=settings.slo_objective,
                       memory_limit_mb=settings.replica_memory_limit_mb)
    if settings.training_schedule:
        from actors.runtime import training_scheduler  # noqa: PLC0415
        from actors.training_job import DEFAULT_SCENARIOS, LiveSource  # noqa: PLC0415

        scenarios = [str(p) for p in settings.training_scenarios] or list(DEFAULT_SCENARIOS)
        training_scheduler(settings.training_schedule, settings.mlflow_uri(),
                           settings.redis_url, scenarios,  # type: ignore[arg-type]
                           live=LiveSource(settings.redis_url,  # type: ignore[arg-type]
                                           settings.audit_database_url(),
                                           settings.metrics_sample_rate),
                           orchestrator="orchestrator")
    return settings


def stop_actors(circuits: Sequence[str] = ()) -> list[str]:
    """Kill the service's long-lived actors (and the named circuits' actors) for good;
    returns the names of those that ran."""
    stopped = []
    for name in (*ACTORS, *(f"circuit:{c}" for c in circuits)):
        actor = find_actor(name, NAMESPACE)
        if actor is not None:
            kill(actor)
            stopped.append(name)
    return stopped


def first_admin_token(settings: Settings) -> pathlib.Path | None:
    """With no admin token yet, make one and write it to a 0600 file; returns the file."""
    store = AuditStore(settings.audit_database_url())
    try:
        tokens = TokenStore(store)
        if tokens.count("admin"):
            return None
        secret, _ = tokens.create("admin", "first-admin", "selfheal up")
    finally:
        store.dispose()
    path = settings.data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path


def _ray_temp(settings: Settings) -> pathlib.Path:
    """Where the node ``up`` starts keeps its files: ``<data_dir>/ray``, or, when that path
    is too long for the unix sockets Ray makes under it (107 bytes with the session and
    socket names), a short directory in the system's temp named by the data directory."""
    temp = settings.data_dir.resolve() / "ray"
    if len(str(temp)) <= 40:
        return temp
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
    return pathlib.Path(tempfile.gettempdir()) / f"selfheal-ray-{digest}"


def _start_head(settings: Settings) -> str:
    """A local Ray head node on loopback; its address."""
    ray_exe = shutil.which("ray", path=str(pathlib.Path(sys.executable).parent)) or "ray"
    temp = _ray_temp(settings)
    temp.mkdir(parents=True, exist_ok=True)
    # loopback wherever Ray lets us choose (its agents and client server; see docs/service.md
    # for what still listens on every interface)
    args = [ray_exe, "start", "--head", "--port=0", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            "--num-cpus", str(os.cpu_count() or 2), "--include-dashboard=false",
            "--disable-usage-stats", "--temp-dir", str(temp)]
    env = {**os.environ, "RAY_task_events_report_interval_ms": "0"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"ray start failed: {tail[0]}")
    session = temp / "ray_current_cluster"
    if not session.exists():
        raise ServiceError("ray start did not say the cluster's address")
    return session.read_text().strip()


def up(settings: Settings, *, catalogue: Catalogue | None = None,
       start_ray: bool = True) -> dict[str, Any]:
    """Start selfheal (see the module doc); returns what ``service.json`` records."""
    cat = catalogue or load_catalogue(settings.catalogue or SHIPPED)  # validated first
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    started = False
    if address is None and start_ray:
        address, started = _start_head(settings), True
    init_ray(address)
    settings = prepare(settings, cat)
    url = serve_http(control_api(settings), APP_NAME, host=settings.api_host,
                     port=settings.api_port)
    token_file = first_admin_token(settings)
    state = {"ray_address": address, "started_ray": started,
             "ray_temp": str(_ray_temp(settings)) if started else None,
             "url": url,
             "redis_url": settings.redis_url, "catalogue": cat.source,
             "admin_token_file": str(token_file) if token_file else None}
    _state_file(settings).write_text(json.dumps(state, indent=2))
    return state


def _stop_node(temp: pathlib.Path, timeout_s: float = 20.0) -> None:
    """Stop the Ray node ``up`` started, and only it: every process whose command line names
    its temp directory. (``ray stop`` would stop every Ray on the machine.)"""
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    mark = str(temp).encode()
    parents: dict[int, int] = {}
    named: set[int] = set()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            stat = (proc / "stat").read_text()
            parents[int(proc.name)] = int(stat.rpartition(")")[2].split()[1])
            if mark in (proc / "cmdline").read_bytes():
                named.add(int(proc.name))
        except (OSError, ValueError, IndexError):  # gone, or not ours to read
            continue
    # the node's processes, and every process they started (agents and workers rename
    # themselves "ray::...", so their command lines no longer name the directory)
    mine = []
    for pid in parents:
        p, seen = pid, 0
        while p > 1 and seen < 64:
            if p in named:
                mine.append(pid)
                break
            p, seen = parents.get(p, 0), seen + 1
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while mine and time.monotonic() < deadline:
        mine = [p for p in mine if pathlib.Path(f"/proc/{p}").exists()]
        time.sleep(0.1)
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _join(path: pathlib.Path) -> dict[str, Any]:
    """The state ``up`` recorded at ``path``, with this process joined to its cluster."""
    if not path.exists():
        raise ServiceError(f"selfheal is not up here (no {path})")
    try:
        state = json.loads(path.read_text())
        address = state["ray_address"]
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"{path} is not what `selfheal up` writes; remove it if selfheal "
                           "is not running") from None
    host, _, port = str(address).rpartition(":")
    try:  # Ray waits minutes for a cluster that is gone; a refused connection is an answer
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError):
        raise ServiceError(f"the Ray cluster at {address} does not answer; if selfheal is not "
                           f"running, remove {path}") from None
    try:
        init_ray(address)
    except Exception as exc:  # Ray's own ConnectionError, or anything from its start-up
        raise ServiceError(f"the Ray cluster at {address} does not answer "
                           f"({type(exc).__name__}); if selfheal is not running, remove "
                           f"{path}") from None
    return state


def status(settings: Settings) -> dict[str, Any]:
    """What is running: the actors, the Serve application, whether the API answers."""
    state = _join(_state_file(settings))
    handles = {name: find_actor(name, NAMESPACE) for name in ACTORS}
    actors = {name: handle is not None for name, handle in handles.items()}
    if actors["orchestrator"]:  # found is not enough: it must answer
        try:
            actors["orchestrator"] = bool(call_actor(handles["orchestrator"], "ping",
                                                     timeout_s=10))
        except ActorUnavailable:
            actors["orchestrator"] = False
    try:
        with urllib.request.urlopen(f"{state['url']}/api/v1/livez", timeout=5) as resp:
            api = resp.status == 200
    except OSError:
        api = False
    return {**state, "actors": actors, "serve": app_status(APP_NAME), "api_answers": api}


def down(settings: Settings) -> dict[str, Any]:
    """Stop what ``up`` started: the Serve application, the actors, and the Ray node and the
    embedded Redis if ``up`` started them."""
    path = _state_file(settings)
    state = _join(path)
    shutdown_serve()
    stopped = stop_actors()
    if state.get("started_ray"):
        _stop_node(_ray_temp(settings))
    if settings.redis_url is None:  # the embedded one: stop it
        from actors.stores.embedded_redis import EmbeddedRedis  # noqa: PLC0415

        EmbeddedRedis(settings.data_dir / "redis").shutdown()
    path.unlink()
    return {"stopped": stopped, "ray_stopped": bool(state.get("started_ray"))}


def create_token(settings: Settings, role: str, name: str) -> tuple[str, dict[str, Any]]:
    """A token made at the command line by whoever can read the settings and the database;
    audited as made by this machine's user."""
    import getpass  # noqa: PLC0415

    from actors.stores.audit_trail import AuditTrail  # noqa: PLC0415
    from healing.audit import operator_action  # noqa: PLC0415

    store = AuditStore(settings.audit_database_url())
    store.migrate()
    who = f"cli:{getpass.getuser()}"
    trail = AuditTrail.from_config(settings.audit_config(), None)
    try:
        tokens = TokenStore(store)
        secret, token = tokens.create(role, name, who)  # validates role and name first
        trail.append(operator_action(service="selfheal", at=token.created_at, operator=who,
                                     action="token_created", pseudonymize=lambda w: w,
                                     details={"token": token.id, "role": role, "name": name}))
    finally:
        trail.close()
        store.dispose()
    return secret, {"id": token.id, "name": token.name, "role": token.role}
