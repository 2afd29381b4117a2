"""State an actor must not forget when Ray restarts it: JSON in Redis, under one prefix.

A restarted actor is a new instance built from its constructor arguments; whatever it learnt
since (registered health checks, adopted thresholds, recovery runs and their steps, active
alerts) comes back from here. Writes happen as things change, so a kill between two changes
loses nothing acknowledged. When Redis is away a write is logged and skipped: the actor keeps
working, and the next change writes the whole field again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

__all__ = ["ActorState"]

_log = logging.getLogger("selfheal.actor_state")


class ActorState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def key(self, name: str) -> str:
        """The Redis key of table or list ``name`` (for readers that batch their reads)."""
        return f"{self.prefix}:{name}"

    def put(self, table: str, key: str, value: Any) -> None:
        self._do("put", lambda: self.client.hset(self.key(table), key,
                                                 json.dumps(value, default=str)))

    def delete(self, table: str, key: str) -> None:
        self._do("delete", lambda: self.client.hdel(self.key(table), key))

    def table(self, table: str) -> dict[str, Any]:
        """Everything in ``table`` (empty when Redis cannot be read: the actor starts fresh
        rather than not at all, and says so)."""
        try:
            raw = self.client.hgetall(self.key(table))
        except redis.RedisError:
            _log.exception("%s: cannot read %s; starting without it", self.prefix, table)
            return {}
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def append(self, name: str, value: Any, keep: int | None = None) -> None:
        """Add ``value`` to the list ``name``; with ``keep``, only the newest ``keep`` stay."""
        key = self.key(name)

        def op() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(key, json.dumps(value, default=str))
            if keep is not None:
                pipe.ltrim(key, -keep, -1)
            pipe.execute()
        self._do("append", op)

    def items(self, name: str) -> list[Any]:
        try:
            raw = self.client.lrange(self.key(name), 0, -1)
        except redis.RedisError:
            _log.exception("%s: cannot read %s; starting without it", self.prefix, name)
            return []
        return [json.loads(v) for v in raw]

    def drop(self, name: str) -> None:
        self._do("drop", lambda: self.client.delete(self.key(name)))

    def _do(self, what: str, op: Any) -> None:
        try:
            op()
        except redis.RedisError:
            _log.warning("%s: %s not persisted (Redis unavailable)", self.prefix, what,
                         exc_info=True)
