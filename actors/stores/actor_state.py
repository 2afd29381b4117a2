"""State an actor must not forget when Ray restarts it: JSON in Redis, under one prefix.

A restarted actor is a new instance built from its constructor arguments; whatever it learnt
since (registered health checks, adopted thresholds, recovery runs and their steps, active
alerts) comes back from here. Writes happen as things change, so a kill between two changes
loses nothing acknowledged. When Redis is away a write is logged and kept, in order, to be
written once Redis answers again: before the next write (the orchestrator's watch and the
health checks write every round) or at :meth:`flush`. The actor keeps working and its
persisted state catches up. (A write whose reply alone was lost is written twice: harmless
for a field, a repeated entry for a list.)
Skipping it instead lost the last write of anything that changed during an outage for good:
a recovery run that ended while Redis was stopped stayed "running" in the control API (which
reads this state) for ever, and the chaos suite, waiting for recovery to be at rest, skipped
the three experiments after the one that stops Redis (docs/chaos.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis

__all__ = ["ActorState"]

_log = logging.getLogger("selfheal.actor_state")

MAX_PENDING = 10_000  # writes kept while Redis is away; past it the oldest are dropped


class ActorState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        # writes Redis refused, oldest first: (the field they set, or None for a list's
        # entry, which a later write does not supersede; the write)
        self._pending: list[tuple[tuple[str, str] | None, Callable[[], Any]]] = []
        self.dropped = 0  # pending writes dropped past MAX_PENDING (logged)

    def key(self, name: str) -> str:
        """The Redis key of table or list ``name`` (for readers that batch their reads)."""
        return f"{self.prefix}:{name}"

    def put(self, table: str, key: str, value: Any) -> None:
        raw = json.dumps(value, default=str)  # now: the value may change before a replay
        self._do("put", lambda: self.client.hset(self.key(table), key, raw), (table, key))

    def delete(self, table: str, key: str) -> None:
        self._do("delete", lambda: self.client.hdel(self.key(table), key), (table, key))

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
        raw = json.dumps(value, default=str)

        def op() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(key, raw)
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

    @property
    def pending(self) -> int:
        """Writes waiting for Redis."""
        return len(self._pending)

    def flush(self) -> bool:
        """Write what Redis refused earlier, in order; True when nothing is left waiting."""
        while self._pending:
            try:
                self._pending[0][1]()
            except redis.RedisError:
                return False
            self._pending.pop(0)
        return True

    def _do(self, what: str, op: Callable[[], Any],
            field: tuple[str, str] | None = None) -> None:
        if self.flush():  # nothing waiting: this write goes now, in its turn
            try:
                op()
                return
            except redis.RedisError:
                _log.warning("%s: %s kept until Redis answers (Redis unavailable)",
                             self.prefix, what, exc_info=True)
        if field is not None:  # a later write of a field supersedes the one waiting
            self._pending = [p for p in self._pending if p[0] != field]
        self._pending.append((field, op))
        if len(self._pending) > MAX_PENDING:
            self._pending.pop(0)
            self.dropped += 1
            _log.error("%s: more than %d writes waiting for Redis; the oldest dropped",
                       self.prefix, MAX_PENDING)
