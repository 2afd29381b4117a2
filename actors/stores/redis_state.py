"""Circuit state in Redis: the hash ``circuit:{name}``, written on every transition.

The fields are readable by people and dashboards (``state``, ``version``, ``retry_at``,
``reason``, ``lease_holder``…); ``snapshot`` holds the JSON the actor restores from after a
restart.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from healing.errors import SelfHealError

__all__ = ["CircuitStateStore", "StateStoreError"]


class StateStoreError(SelfHealError):
    """Redis could not be read or written."""


class CircuitStateStore:
    def __init__(self, client: redis.Redis, prefix: str = "circuit") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def save(self, name: str, view: dict[str, Any], snapshot: dict[str, Any]) -> None:
        fields = {k: "" if v is None else (json.dumps(v) if isinstance(v, list) else str(v))
                  for k, v in view.items()}
        fields["snapshot"] = json.dumps(snapshot)
        try:
            self.client.hset(self.key(name), mapping=fields)
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot save circuit {name!r}: {exc}") from exc

    def save_field(self, name: str, field: str, value: Any) -> None:
        """One field of the hash, as JSON (the circuit's live statistics)."""
        try:
            self.client.hset(self.key(name), field, json.dumps(value))
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot save circuit {name!r}: {exc}") from exc

    def load(self, name: str) -> dict[str, Any] | None:
        try:
            raw = self.client.hget(self.key(name), "snapshot")
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot load circuit {name!r}: {exc}") from exc
        return None if raw is None else json.loads(raw)

    def read(self, name: str) -> dict[str, str]:
        """The hash as strings (for dashboards and tests)."""
        try:
            raw = self.client.hgetall(self.key(name))
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot read circuit {name!r}: {exc}") from exc
        return {k.decode(): v.decode() for k, v in raw.items()}
