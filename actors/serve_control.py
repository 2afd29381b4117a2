"""The gateway to Ray Serve: deploy and delete applications, find their handles, and the
one place selfheal changes deployments (scale and restart).

Scaling uses the Serve controller's external-scaler call, which is what the dashboard's
``POST /api/v1/applications/{app}/deployments/{name}/scale`` does; we call the controller
directly because selfheal runs Ray without the dashboard. It is Serve's private API (hence
this one module), and it requires the application to be deployed with
``external_scaler_enabled=True``.

A graceful restart adds one replica, waits the configured delay, then stops the old replicas
one at a time; Serve's controller replaces each stopped replica with a fresh one, and the
extra replica is removed at the end, so capacity never drops below what it was.
"""

from __future__ import annotations

from typing import Any

import ray
from ray import serve

from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError

__all__ = ["ServeControlError", "app_status", "delete_app", "deployment_handle", "kill_replica",
           "replica_count", "restart_deployment", "run_app", "scale_deployment", "serve_http",
           "shutdown_serve"]

_CONTROLLER = "SERVE_CONTROLLER_ACTOR"
_SERVE_NAMESPACE = "serve"
_SYSTEM = SystemClock()  # default clock of the module's waits; tests pass their own


class ServeControlError(SelfHealError):
    """A deployment could not be scaled or restarted; says which and why."""


def _split(target: str) -> tuple[str, str]:
    app, sep, name = target.partition("/")
    if not sep or not app or not name:
        raise ServeControlError(f"deployment {target!r} must be named 'app/deployment'")
    return app, name


def _states(target: str) -> dict[str, int]:
    app, name = _split(target)
    try:
        dep = serve.status().applications[app].deployments[name]
    except KeyError:
        raise ServeControlError(f"no Serve deployment {target!r}") from None
    return {k: int(v) for k, v in dep.replica_states.items() if v}


def replica_count(target: str) -> int:
    """RUNNING replicas of ``app/deployment``."""
    return _states(target).get("RUNNING", 0)


def _settled(target: str, replicas: int) -> bool:
    # Serve's status lags a change by about a second; only "exactly this many RUNNING and
    # nothing starting or stopping" means the change has really happened.
    return _states(target) == {"RUNNING": replicas}


async def scale_deployment(target: str, replicas: int, timeout_s: float = 60.0,
                           clock: Clock = _SYSTEM) -> int:
    """Set ``app/deployment`` to ``replicas`` and wait until they are RUNNING."""
    from ray.serve._private.common import DeploymentID  # noqa: PLC0415 - private, see above

    app, name = _split(target)
    controller = ray.get_actor(_CONTROLLER, namespace=_SERVE_NAMESPACE)
    try:
        await controller.update_deployment_replicas.remote(DeploymentID(name=name, app_name=app),
                                                           replicas)
    except Exception as exc:
        raise ServeControlError(f"cannot scale {target!r}: {exc}") from exc
    deadline = clock.now() + timeout_s
    while clock.now() < deadline:
        if len(_replica_actors(target)) == replicas and _settled(target, replicas):
            return replicas
        await clock.asleep(0.05)
    raise ServeControlError(f"{target!r} did not reach {replicas} replicas in {timeout_s} s")


def _replica_actors(target: str) -> list[str]:
    app, name = _split(target)
    prefix = f"SERVE_REPLICA::{app}#{name}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == _SERVE_NAMESPACE and a["name"].startswith(prefix))


async def restart_deployment(target: str, delay_s: float = 0.0, graceful: bool = True,
                             timeout_s: float = 120.0, clock: Clock = _SYSTEM) -> dict[str, Any]:
    """Replace every replica of ``app/deployment`` with a fresh one."""
    before = replica_count(target)
    old = _replica_actors(target)
    if graceful:
        await scale_deployment(target, before + 1, timeout_s, clock)
    if delay_s > 0:
        await clock.asleep(delay_s)  # let in-flight work drain, as configured
    for actor_name in old:
        expected = len(_replica_actors(target))
        known = set(_replica_actors(target))
        ray.kill(ray.get_actor(actor_name, namespace=_SERVE_NAMESPACE), no_restart=True)
        # Serve's controller notices the dead replica and starts a fresh one; wait for it
        # to be up before stopping the next, so capacity never drops by more than one.
        deadline = clock.now() + timeout_s
        while clock.now() < deadline:
            names = set(_replica_actors(target))
            if names - known and actor_name not in names and _settled(target, expected):
                break
            await clock.asleep(0.05)
        else:
            raise ServeControlError(f"{target!r}: no replacement for {actor_name}")
    if graceful:
        await scale_deployment(target, before, timeout_s, clock)
    return {"deployment": target, "replaced": len(old), "replicas": replica_count(target)}


def kill_replica(target: str) -> str | None:
    """Kill one replica of ``app/deployment`` at once, as a crash would (chaos experiments);
    Serve's controller starts a replacement. Returns the replica's actor name, or None."""
    names = _replica_actors(target)
    if not names:
        return None
    ray.kill(ray.get_actor(names[0], namespace=_SERVE_NAMESPACE), no_restart=True)
    return names[0]


def start_without_http() -> None:
    """Start Serve in this cluster with no HTTP proxy (handles only), unless it already runs:
    a process that deploys apps without routes (the demo) then listens on no port, where
    Serve's default would take 8000, which may be another service's."""
    serve.start(proxy_location="Disabled")


def run_app(app: Any, name: str, *, scalable: bool = False) -> Any:
    """Deploy the bound application ``app`` as ``name`` (no HTTP route) and return its handle;
    ``scalable`` lets :func:`scale_deployment` change its replicas."""
    return serve.run(app, name=name, route_prefix=None, external_scaler_enabled=scalable)


def serve_http(app: Any, name: str, *, host: str, port: int, route_prefix: str = "/") -> str:
    """Start Serve's HTTP proxy on ``host:port`` (loopback unless configured otherwise),
    deploy ``app`` there at ``route_prefix``, and return the base URL it answers on.

    Serve's proxy options are fixed when Serve first starts in a cluster: a cluster whose
    Serve already runs keeps its own host and port, so the URL is read back from Serve's
    controller rather than assumed."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=name, route_prefix=route_prefix)
    controller = ray.get_actor(_CONTROLLER, namespace=_SERVE_NAMESPACE)
    config = ray.get(controller.get_http_config.remote())
    bound = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    return f"http://{bound}:{config.port}"


def app_status(name: str) -> str | None:
    """The application's status (``RUNNING``, ``DEPLOYING``...), or None if not deployed."""
    try:
        app = serve.status().applications.get(name)
    except Exception:  # Serve not running in this cluster
        return None
    return None if app is None else str(app.status.value if hasattr(app.status, "value")
                                        else app.status)


def shutdown_serve() -> None:
    serve.shutdown()


def delete_app(name: str) -> None:
    serve.delete(name)


def deployment_handle(deployment: str, app: str) -> Any:
    """A handle to call ``deployment`` of application ``app``."""
    return serve.get_deployment_handle(deployment, app)
