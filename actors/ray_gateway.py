"""The gateway to Ray: every Ray call selfheal makes goes through here.

Starting or joining a cluster, the namespace, named actors (found or created, detached,
restarted by Ray), waiting on results, tasks fanned out, killing and restarting actors, and
telling the orchestrator of a trigger. An import-linter contract keeps ``ray`` out of every
other module but the Serve gateway (``actors.serve_control``) and the Serve application
modules that declare deployments, so what selfheal asks of Ray is all in these few lines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import ray

from healing.errors import SelfHealError
from healing.orchestration import TriggerEvent

__all__ = ["NAMESPACE", "ActorUnavailable", "LocalCluster", "actor_node", "as_completed",
           "call_actor", "disconnect", "find_actor", "get", "init_ray", "kill", "live_actors",
           "named_actor", "notify_actor", "notify_orchestrator", "place_actors", "plain_actor",
           "restart_actor", "run_task", "tell_orchestrator", "this_node", "was_restarted"]

NAMESPACE = "selfheal"

_log = logging.getLogger("selfheal.ray")


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             private: bool = False, node_ip: str | None = None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a quiet local Ray; ``private``
    always starts a new local one, whatever ``RAY_ADDRESS`` says (the demo's); ``node_ip``
    is this process's address in the cluster (loopback for selfheal's own head node)."""
    if ray.is_initialized():
        return
    # Task events make the GCS grow without bound in long runs.
    os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
    if private:
        address = "local"
    ray.init(address=address or os.environ.get("RAY_ADDRESS"), namespace=NAMESPACE,
             num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False, **({"_node_ip_address": node_ip} if node_ip else {}))


def disconnect() -> None:
    """Leave the cluster this process joined or started (a started local one stops)."""
    ray.shutdown()


def get(refs: Any, timeout_s: float | None = None) -> Any:
    """The value(s) behind ``refs`` (one reference or a list), waiting at most ``timeout_s``."""
    return ray.get(refs, timeout=timeout_s)


_placement: dict[str, float] = {}


def place_actors(resources: dict[str, float]) -> None:
    """Ray custom resources every named actor created from now on asks for (settings'
    ``actor_resources``): on a cluster, they keep selfheal's actors on the nodes that have
    them, and Ray restarts an actor whose node died on another such node. (The settings
    check the amounts: each in (0, 1].)"""
    _placement.clear()
    _placement.update(resources)


def named_actor(cls: type, name: str, *args: Any, namespace: str = NAMESPACE,
                max_concurrency: int = 1000, max_task_retries: int = 0,
                **kwargs: Any) -> Any:
    """The actor named ``name``, created from ``cls(*args, **kwargs)`` if none runs yet:
    detached (it outlives its creator), restarted by Ray after a crash, using no CPU slot,
    on a node with the resources :func:`place_actors` set."""
    return ray.remote(cls).options(  # type: ignore[attr-defined]
        name=name, namespace=namespace, get_if_exists=True, lifetime="detached",
        max_restarts=-1, max_task_retries=max_task_retries, num_cpus=0,
        max_concurrency=max_concurrency, resources=dict(_placement),
    ).remote(*args, **kwargs)


def actor_node(name: str, namespace: str = NAMESPACE, timeout_s: float = 30.0) -> str | None:
    """The id of the node the named actor runs on, or None when it does not run. (Asked of
    the actor itself: Ray's state API needs the dashboard, which selfheal does not start.)"""
    actor = find_actor(name, namespace)
    if actor is None:
        return None
    return str(ray.get(actor.__ray_call__.remote(_node_of), timeout=timeout_s))


def _node_of(_actor: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


class LocalCluster:
    """A head and worker nodes on this machine (``ray.cluster_utils.Cluster``), for the
    multi-node chaos suite: the workers carry ``resources``, so placed actors land on them,
    and a worker can be removed (killed) and another added."""

    def __init__(self, workers: int = 2, resources: dict[str, float] | None = None,
                 cpus_per_node: int = 1) -> None:
        from ray.cluster_utils import Cluster  # noqa: PLC0415

        os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
        self.resources, self.cpus = dict(resources or {}), cpus_per_node
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": cpus_per_node, "include_dashboard": False})
        self.workers: list[Any] = []
        for _ in range(workers):
            self.add_worker()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_worker(self) -> Any:
        node = self.cluster.add_node(num_cpus=self.cpus, resources=dict(self.resources))
        self.cluster.wait_for_nodes()
        self.workers.append(node)
        return node

    def remove_worker(self, node_id: str) -> bool:
        """Kill the worker node with this id; False when no worker has it."""
        for node in self.workers:
            if node.node_id == node_id:
                self.workers.remove(node)
                self.cluster.remove_node(node, allow_graceful=False)
                return True
        return False

    def shutdown(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()


class ActorUnavailable(SelfHealError):
    """An actor could not be reached in time (restarting, dead, or too busy)."""


def call_actor(actor: Any, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
    """``actor.method(*args)``, waited for (at most ``timeout_s``).

    Raises:
        ActorUnavailable: the actor is restarting, gone, or did not answer in time.
        Exception: what the method itself raised (Ray's wrapper of it).
    """
    try:
        return ray.get(getattr(actor, method).remote(*args), timeout=timeout_s)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
        # ActorUnavailableError and ActorDiedError are both RayActorErrors
        raise ActorUnavailable(f"{method}: {type(exc).__name__}") from None


def plain_actor(cls: type, *args: Any, **kwargs: Any) -> Any:
    """An unnamed actor of ``cls``, gone with its creator (a demo's replicas, say)."""
    return ray.remote(num_cpus=0)(cls).remote(*args, **kwargs)


def find_actor(name: str, namespace: str | None = NAMESPACE) -> Any | None:
    """The running actor named ``name``, or None."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def kill(actor: Any, restart: bool = False) -> None:
    """Stop ``actor``; with ``restart``, Ray starts it again (its max_restarts)."""
    ray.kill(actor, no_restart=not restart)


def restart_actor(path: str) -> None:
    """Kill the named actor ``namespace/name`` so that Ray restarts it (its max_restarts)."""
    namespace, _, name = path.rpartition("/")
    kill(ray.get_actor(name, namespace=namespace or None), restart=True)


def tell_orchestrator(name: str | None, event: TriggerEvent) -> bool:
    """Hand ``event`` to the orchestrator named ``name``, fire and forget: whoever raises a
    trigger (a circuit, a health check, the monitor) never waits for a recovery. False, and
    logged, when there is no such orchestrator; the caller keeps the trigger in its own
    records either way."""
    return notify_orchestrator(name, "trigger", event, what=f"{event.trigger.value} on "
                               f"{event.service}")


def live_actors() -> list[dict[str, Any]]:
    """Every live actor's class, name, process id and node, from Ray's actor table in the
    GCS. (``ray.util.state.list_actors`` says the same through the dashboard's state API,
    which selfheal's clusters run without; the table is what it reads.)"""
    from ray._private import state  # noqa: PLC0415

    return [{"class_name": a["ActorClassName"], "name": a["Name"], "pid": a["Pid"],
             "node_id": a["Address"]["NodeID"]}
            for a in state.actors(actor_state_name="ALIVE").values()]


def this_node() -> str:
    """The id of the Ray node this process runs on."""
    return str(ray.get_runtime_context().get_node_id())


def notify_orchestrator(name: str | None, method: str, *args: Any, what: str = "") -> bool:
    """Call ``method(*args)`` on the orchestrator named ``name``, fire and forget."""
    return notify_actor(name, method, *args, what=what, role="orchestrator")


def notify_actor(name: str | None, method: str, *args: Any, what: str = "",
                 role: str = "actor") -> bool:
    """Call ``method(*args)`` on the actor named ``name``, fire and forget; False, and
    logged, when it is not running."""
    if name is None:
        return False
    try:
        actor = ray.get_actor(name, namespace=NAMESPACE)
        getattr(actor, method).remote(*args)
    except Exception:  # not running (ValueError), or Ray itself is going away
        _log.warning("%s: no %s %r is running to hear it", what or method, role, name)
        return False
    return True


def as_completed(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
                 num_cpus: float = 1) -> Iterator[tuple[int, Any]]:
    """``fn(*args)`` for each ``args`` in ``calls``, one Ray task each; yields ``(index,
    result)`` as each finishes. Closing the iterator early (Ctrl-C, say) cancels the rest."""
    remote = ray.remote(num_cpus=num_cpus)(fn)
    refs = {remote.remote(*args): i for i, args in enumerate(calls)}
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            yield refs[ready[0]], ray.get(ready[0])
    finally:
        for ref in waiting:
            ray.cancel(ref, force=True)


def run_task(fn: Callable[..., Any], *args: Any, num_cpus: float = 1,
             **kwargs: Any) -> Awaitable[Any]:
    """``fn(*args, **kwargs)`` as a Ray task elsewhere in the cluster, to be awaited."""
    return ray.remote(num_cpus=num_cpus)(fn).remote(*args, **kwargs)  # type: ignore[no-any-return]


def was_restarted() -> bool:
    """Whether the calling actor is a restart (Ray ran its constructor again after a kill
    or a crash) rather than the first start."""
    return bool(ray.get_runtime_context().was_current_actor_reconstructed)
