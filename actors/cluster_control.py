"""Cluster-wide control of every guarding process, over Redis: routes and cache warming.

Recovery actions decide once for the whole cluster; every :class:`~actors.process.GuardProcess`
carries a :class:`ControlListener` that applies the decision in its own process:

* **Routes** (``fallback {tier}``, ``fallback {read_replica}``): the routes live in the Redis
  hash ``selfheal:routes``, the source of truth. A change is announced on the channel
  ``selfheal:control``; a listener then re-reads the whole hash, so a missed or repeated
  message costs nothing, and a process that starts (or reconnects) mid-incident reads the
  routes in force before it serves.
* **Cache warming** (``cache_warm``): two rounds. ``warm_export`` asks every process to put its
  recent good answers for the service into ``selfheal:warm:{service}`` (newest per key wins,
  the hash expires after the TTL); once every process that heard the request has answered,
  ``warm_import`` asks every process to fill its fallback cache from the hash. So a replica
  that started after the last good answer can still serve one, and each answer keeps its real
  age: the tier's staleness limit and warning apply as if the answer had been seen locally.

Shared answers travel as JSON, never pickle, so nothing that can write to Redis can make a
process run code; answers that are not plain JSON stay local. Prescriptive answers are never
cached, so they are never shared (the cache refuses them on both sides as well).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Collection
from typing import Any

import redis

from healing import Clock, FallbackCache, Route, RouteTable, SystemClock
from healing.cache import CacheKey

__all__ = ["CHANNEL", "ROUTES_KEY", "ControlBus", "ControlListener"]

_log = logging.getLogger("selfheal.control")

CHANNEL = "selfheal:control"
ROUTES_KEY = "selfheal:routes"
_WARM = "selfheal:warm:{service}"
_ACKS = "selfheal:warm:{id}:{phase}"

# Keep, per field, the answer seen most recently: "wall_at|json". ARGV holds triples
# (field, wall_at, json).
_PUT_NEWEST = """
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local at = tonumber(ARGV[i + 1])
  if (not cur) or tonumber(string.match(cur, '^([^|]*)|')) < at then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
  end
end
return 1
"""


class ControlBus:
    """What recovery actions use to change every process at once."""

    def __init__(self, client: redis.Redis, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock or SystemClock()

    def routes(self) -> dict[str, Route]:
        return _read_routes(self.client)

    def set_route(self, service: str, tier: str, reason: str,
                  for_s: float | None = None) -> int:
        """Route ``service`` to ``tier`` (for ``for_s`` seconds, or until cleared); returns
        how many processes heard it now."""
        now = self.clock.wall()
        value = json.dumps({"tier": tier, "reason": reason, "since": now,
                            "until": None if for_s is None else now + for_s})
        self.client.hset(ROUTES_KEY, service, value)
        return int(self.client.publish(CHANNEL, json.dumps({"op": "routes"})))  # type: ignore[arg-type]

    def clear_route(self, service: str) -> bool:
        """Send ``service``'s traffic back to its primary; False if it had no route."""
        removed = bool(self.client.hdel(ROUTES_KEY, service))
        self.client.publish(CHANNEL, json.dumps({"op": "routes"}))
        return removed

    async def warm_cache(self, service: str, *, ttl_s: float, timeout_s: float,
                         operations: Collection[str] | None = None) -> dict[str, Any]:
        """Share every process's answers for ``service`` up to ``ttl_s`` old with every
        process. Returns how many processes exported and imported, and the entries shared."""
        run = uuid.uuid4().hex
        deadline = self.clock.now() + timeout_s
        msg = {"op": "warm_export", "id": run, "service": service, "max_age_s": ttl_s,
               "operations": sorted(operations) if operations else None}
        heard = int(self.client.publish(CHANNEL, json.dumps(msg)))  # type: ignore[arg-type]
        exported = await self._acks(run, "export", heard, deadline)
        key = _WARM.format(service=service)
        entries = int(self.client.hlen(key))  # type: ignore[arg-type]
        if entries:
            self.client.pexpire(key, max(1, int(ttl_s * 1000)))
        msg = {"op": "warm_import", "id": run, "service": service}
        heard = int(self.client.publish(CHANNEL, json.dumps(msg)))  # type: ignore[arg-type]
        imported = await self._acks(run, "import", heard, deadline)
        return {"processes": heard, "exported": exported, "imported": imported,
                "entries": entries}

    async def _acks(self, run: str, phase: str, wanted: int, deadline: float) -> int:
        key = _ACKS.format(id=run, phase=phase)
        while True:
            got = int(self.client.get(key) or 0)  # type: ignore[arg-type]
            if got >= wanted or self.clock.now() >= deadline:
                return got
            await self.clock.asleep(0.01)


class ControlListener:
    """Applies the cluster's routes and cache warming to one process's guard."""

    def __init__(self, redis_url: str, routes: RouteTable, cache: FallbackCache,
                 clock: Clock, *, process_id: str = "") -> None:
        from .stores.redis_conn import connect  # noqa: PLC0415

        self.client = connect(redis_url)
        self.routes, self.cache, self.clock = routes, cache, clock
        self.process_id = process_id
        self.applied = 0  # control messages handled (tests and diagnostics read it)
        self._put_newest = self.client.register_script(_PUT_NEWEST)
        self._stop = threading.Event()
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        # Subscribe before reading the routes, so no change can fall between the two.
        self._pubsub.subscribe(CHANNEL)
        self.routes.replace(_read_routes(self.client))
        self._thread = threading.Thread(target=self._loop, name="selfheal-control",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pubsub.close()
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._pubsub.get_message(timeout=0.5)
                if msg is not None:
                    self.handle(json.loads(msg["data"]))
            except redis.RedisError:
                # Redis went away: keep serving on the routes we hold, and catch up on the
                # whole hash once it is back (messages sent meanwhile are lost).
                _log.warning("control channel lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)
                self._resubscribe()
            except Exception:
                _log.exception("control message not applied")

    def _resubscribe(self) -> None:
        # A failure here is left to the next turn of the loop, which tries again.
        with contextlib.suppress(redis.RedisError):
            self._pubsub.close()
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(CHANNEL)
            self.routes.replace(_read_routes(self.client))

    def handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "routes":
            self.routes.replace(_read_routes(self.client))
        elif op == "warm_export":
            self._export(msg)
        elif op == "warm_import":
            self._import(msg)
        else:
            _log.warning("unknown control message %r ignored", op)
            return
        self.applied += 1

    def _export(self, msg: dict[str, Any]) -> None:
        service, run = str(msg["service"]), str(msg["id"])
        operations = set(msg["operations"]) if msg.get("operations") else None
        wall = self.clock.wall()
        args: list[Any] = []
        for key, value, age in self.cache.recent(service, self.clock.now(),
                                                 float(msg["max_age_s"])):
            if operations is not None and key.operation not in operations:
                continue
            try:
                payload = json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                continue  # not plain JSON: this answer stays in this process
            args += [json.dumps(list(key)), repr(wall - age), payload]
        if args:
            self._put_newest(keys=[_WARM.format(service=service)], args=args)
        self._ack(run, "export")

    def _import(self, msg: dict[str, Any]) -> None:
        service, run = str(msg["service"]), str(msg["id"])
        raw = self.client.hgetall(_WARM.format(service=service))
        now, wall = self.clock.now(), self.clock.wall()
        for field, value in raw.items():  # type: ignore[union-attr]
            try:
                key = CacheKey(*json.loads(field))
                at, _, payload = value.decode().partition("|")
                self.cache.fill(key, json.loads(payload), now - (wall - float(at)))
            except (TypeError, ValueError):
                _log.warning("malformed shared cache entry for %s skipped", service)
        self._ack(run, "import")

    def _ack(self, run: str, phase: str) -> None:
        key = _ACKS.format(id=run, phase=phase)
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 300)
        pipe.execute()


def _read_routes(client: redis.Redis) -> dict[str, Route]:
    out = {}
    for service, raw in client.hgetall(ROUTES_KEY).items():  # type: ignore[union-attr]
        try:
            d = json.loads(raw)
            until = d.get("until")
            out[service.decode()] = Route(str(d["tier"]), str(d["reason"]), float(d["since"]),
                                          None if until is None else float(until))
        except (KeyError, TypeError, ValueError):
            _log.error("route for %r in %s is malformed; ignored", service, ROUTES_KEY)
    return out
