"""The probes a HealthMonitorActor runs: HTTP GET, TCP connect, Redis PING, SQL ``SELECT 1``,
a Ray actor ping, or any callable. Each is a blocking callable that returns on success and
raises on failure; the monitor times it and runs it in a thread with the policy's timeout.
Specs are plain data so they travel to the actor and back."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healing.errors import ConfigError

__all__ = ["CheckSpec", "make_probe"]

KINDS = ("http", "tcp", "redis", "sql", "ray_actor", "callable")


@dataclass(frozen=True)
class CheckSpec:
    """What to check. ``target``: a URL (http), ``host:port`` (tcp), a Redis URL, a
    database URL, a named actor (``namespace/name``), or a picklable callable."""

    name: str
    kind: str
    target: Any
    policy: dict[str, Any] = field(default_factory=dict)
    service: str | None = None  # the service a failure triggers recovery for (default: name)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError("kind", self.kind, f"must be one of {list(KINDS)}",
                              source=f"health check {self.name!r}")
        if self.kind == "callable" and not callable(self.target):
            raise ConfigError("target", self.target, "must be callable",
                              source=f"health check {self.name!r}")


def make_probe(spec: CheckSpec, timeout_s: float) -> Callable[[], None]:
    """A blocking function that raises unless ``spec``'s target is healthy."""
    kind, target = spec.kind, spec.target
    if kind == "http":
        def http() -> None:
            with urllib.request.urlopen(target, timeout=timeout_s) as resp:
                if resp.status >= 500:
                    raise ConnectionError(f"HTTP {resp.status}")
        return http
    if kind == "tcp":
        host, _, port = str(target).rpartition(":")

        def tcp() -> None:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        return tcp
    if kind == "redis":
        from .stores.redis_conn import connect  # noqa: PLC0415

        client = connect(str(target), timeout_s=timeout_s)
        return lambda: None if client.ping() else _fail("no PONG")
    if kind == "sql":
        from sqlalchemy import create_engine, text  # noqa: PLC0415

        url = str(target).replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"connect_timeout": max(1, int(timeout_s))}
                               if url.startswith("postgresql") else {})

        def sql() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        return sql
    if kind == "ray_actor":
        from .ray_gateway import find_actor, get  # noqa: PLC0415 - Ray only for this kind

        namespace, _, name = str(target).rpartition("/")

        def ray_ping() -> None:
            actor = find_actor(name, namespace=namespace or None)
            if actor is None:
                raise LookupError(f"no actor {target!r} is running")
            get(actor.ping.remote(), timeout_s=timeout_s)
        return ray_ping
    return target  # type: ignore[no-any-return]


def _fail(reason: str) -> None:
    raise ConnectionError(reason)
