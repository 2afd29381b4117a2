"""Cluster-wide control of every guarding process, over Redis: routes, cache warming, probes.

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

* **Probes** (a ``retry`` step, the ``probe_succeeds`` criterion, switching back after a
  fallback): the orchestrator cannot call an AI provider itself — the guarding processes hold
  the clients and credentials. ``probe`` asks every process that registered a probe for the
  service's provider (:meth:`~actors.process.GuardProcess.register_probe`) to run it once,
  on a thread of its own — past its breaker (``retry``, switching back), or for
  ``probe_succeeds`` through its guard, so that a fallback answer counts, as the simulator
  judges it; the probe succeeds if any of them got an answer. A process without one says so
  at once. Only error type names travel back (an error text may name a patient).
  :class:`ClusterProbes` is the orchestrator's view: a probe for every service and provider.

Shared answers travel as JSON, never pickle, so nothing that can write to Redis can make a
process run code; answers that are not plain JSON stay local. Prescriptive answers are never
cached, so they are never shared (the cache refuses them on both sides as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any

import redis

from healing import ClinicalContext, Clock, FallbackCache, Guard, Route, RouteTable, SystemClock
from healing.cache import CacheKey

__all__ = ["CHANNEL", "PROBES_KEY", "PROBE_TIMEOUT_S", "ROUTES_KEY", "ClusterProbes",
           "ControlBus", "ControlListener", "ProbeFailed", "probe_counts"]

_log = logging.getLogger("selfheal.control")

CHANNEL = "selfheal:control"
ROUTES_KEY = "selfheal:routes"
_WARM = "selfheal:warm:{service}"
_ACKS = "selfheal:warm:{id}:{phase}"
_PROBED = "selfheal:probe:{id}"  # process -> "running", "ok", "none", "failed: <error>"
PROBE_TIMEOUT_S = 5.0  # a probe that has not answered by then has failed
PROBES_KEY = "selfheal:probes"  # "{service}:total" / ":fallbacks": guarded probes made

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

    async def probe(self, service: str, provider: str | None = None,
                    primary: str | None = None, *, context: tuple[str, str] | None = None,
                    timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
        """Have every process with a probe for ``service``'s ``provider`` (None: its primary,
        named ``primary`` if known) run it once: past the breaker, or with ``context``
        (operation type, criticality) through the process's guard, so that a fallback
        answer counts. Returns how many processes heard, how many had a probe, how many got
        an answer, and the errors of the others."""
        run = uuid.uuid4().hex
        deadline = self.clock.now() + timeout_s
        msg = {"op": "probe", "id": run, "service": service, "provider": provider,
               "primary": primary, "context": list(context) if context else None}
        heard = int(self.client.publish(CHANNEL, json.dumps(msg)))  # type: ignore[arg-type]
        await self._acks(run, "probe", heard, deadline)
        outcomes = [v.decode() for v in
                    self.client.hvals(_PROBED.format(id=run))]  # type: ignore[union-attr]
        errors = {o for o in outcomes if o.startswith("failed")}
        if "running" in outcomes:
            errors.add(f"timed out after {timeout_s:g} s")
        return {"processes": heard, "probed": sum(o != "none" for o in outcomes),
                "answered": outcomes.count("ok"), "errors": sorted(errors)}

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
                 clock: Clock, *, process_id: str = "", guard: Guard | None = None) -> None:
        from .stores.redis_conn import connect  # noqa: PLC0415

        self.client = connect(redis_url)
        self.routes, self.cache, self.clock, self.guard = routes, cache, clock, guard
        self.process_id = process_id or uuid.uuid4().hex[:12]
        # (service, provider) -> a function that calls the provider once, and the arguments
        # it is called with; provider None is the service's primary. Registered by the
        # application (GuardProcess.register_probe).
        self.probes: dict[tuple[str, str | None], tuple[Callable[..., Any], tuple[Any, ...]]] = {}
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

    def register_probe(self, service: str, fn: Callable[..., Any],
                       provider: str | None = None, args: tuple[Any, ...] = ()) -> None:
        """Answer probes of ``service``'s ``provider`` (None: its primary) with
        ``fn(*args)``."""
        self.probes[(service, provider)] = (fn, tuple(args))

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
        elif op == "probe":
            self._probe(msg)
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

    def _probe(self, msg: dict[str, Any]) -> None:
        service, run = str(msg["service"]), str(msg["id"])
        provider, primary = msg.get("provider"), msg.get("primary")
        found = self.probes.get((service, provider))
        if found is None and provider in (None, primary):
            found = self.probes.get((service, None)) or self.probes.get((service, primary))
        context = msg.get("context")
        if found is None or (context and self.guard is None):
            self._answer(run, "none")
            return
        probe, args = found
        if context:  # the service as its callers see it: through the guard, fallbacks too
            fn = self._guarded(service, probe, args,
                               ClinicalContext(str(context[0]), str(context[1])), primary)
        else:
            fn = functools.partial(probe, *args)
        # Marked as running first, so that one still running at the deadline counts as a
        # probe that timed out; on a thread of its own, so that a hanging provider holds up
        # no route on this channel.
        self.client.hset(_PROBED.format(id=run), self.process_id, "running")
        threading.Thread(target=self._run_probe, args=(fn, run), daemon=True,
                         name="selfheal-probe").start()

    def _guarded(self, service: str, probe: Callable[..., Any], args: tuple[Any, ...],
                 ctx: ClinicalContext, primary: str | None) -> Callable[[], Any]:
        # A guarded probe is a request in the service's metric counters like any other; it
        # is counted apart as well (PROBES_KEY), so that the counters can be reconciled with
        # what the service's callers sent. The probe's arguments go through the guard, so
        # that an alternative provider is asked what the primary would have been: one baked
        # into a closure reached the alternatives with none, and the fallback's own check
        # failed while the fallback answered every caller (issue 16's chaos trail).
        def call() -> Any:
            fallback = False
            try:
                result = self.guard.call(service, probe, *args,  # type: ignore[union-attr]
                                         context=ctx, provider=primary)
                fallback = result.tier != "primary"
                return result
            finally:
                with contextlib.suppress(redis.RedisError):
                    pipe = self.client.pipeline()
                    pipe.hincrby(PROBES_KEY, f"{service}:total", 1)
                    pipe.hincrby(PROBES_KEY, f"{service}:fallbacks", int(fallback))
                    pipe.execute()
        return call

    def _run_probe(self, fn: Callable[[], Any], run: str) -> None:
        try:
            result = fn()
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
            outcome = "ok"
        except Exception as exc:  # a probe's every failure is a failed probe
            outcome = f"failed: {type(exc).__name__}"
        with contextlib.suppress(redis.RedisError):  # unanswered: the asker times out
            self._answer(run, outcome)

    def _answer(self, run: str, outcome: str) -> None:
        key = _PROBED.format(id=run)
        pipe = self.client.pipeline()
        pipe.hset(key, self.process_id, outcome)
        pipe.expire(key, 300)
        pipe.execute()
        self._ack(run, "probe")

    def _ack(self, run: str, phase: str) -> None:
        key = _ACKS.format(id=run, phase=phase)
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 300)
        pipe.execute()


def probe_counts(client: redis.Redis, service: str) -> dict[str, int]:
    """The guarded probes the processes made of ``service``: ``total`` and ``fallbacks``
    (answered by a fallback tier), as the metric counters count them."""
    raw = client.hmget(PROBES_KEY, [f"{service}:total", f"{service}:fallbacks"])
    return {"total": int(raw[0] or 0), "fallbacks": int(raw[1] or 0)}  # type: ignore[index]


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


class ProbeFailed(Exception):
    """No process got an answer from the provider (or none could ask it)."""


class ClusterProbes(Mapping[str, Callable[[], Awaitable[Any]]]):
    """The orchestrator's probes by key (``service``: its primary; ``service:provider``):
    those given explicitly, and for every other key, one asked of the guarding processes over
    the control channel (:meth:`ControlBus.probe`)."""

    def __init__(self, bus: ControlBus, primaries: Mapping[str, str],
                 explicit: Mapping[str, Callable[[], Any]] | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S,
                 contexts: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.bus, self.primaries, self.timeout_s = bus, dict(primaries), timeout_s
        self.explicit = dict(explicit or {})
        self.contexts = dict(contexts or {})  # service -> its workflows' clinical context

    def __getitem__(self, key: str) -> Callable[[], Any]:
        if key in self.explicit:
            return self.explicit[key]
        service, _, provider = key.partition(":")
        return self._asked(service, provider or None, None)

    def answering(self, service: str) -> Callable[[], Any]:
        """A probe of ``service`` as its callers see it (``probe_succeeds``): through each
        process's guard, with the context of the service's workflows, so that an answer
        from a fallback tier counts, as the simulator judges it."""
        if service in self.explicit:
            return self.explicit[service]
        # a service no workflow names is probed as the common clinical case
        return self._asked(service, None, self.contexts.get(service, ("diagnostic", "high")))

    def _asked(self, service: str, provider: str | None,
               context: tuple[str, str] | None) -> Callable[[], Any]:
        async def probe() -> dict[str, Any]:
            got = await self.bus.probe(service, provider, self.primaries.get(service),
                                       context=context, timeout_s=self.timeout_s)
            if got["answered"]:
                return got
            what = f"{service}'s {provider or 'primary'}" if context is None else service
            if not got["probed"]:
                raise ProbeFailed(f"no process has a probe for {what} "
                                  f"({got['processes']} heard; GuardProcess.register_probe)")
            raise ProbeFailed(f"{got['probed']} probe(s) of {what} got no answer: "
                              f"{', '.join(got['errors'])}")
        return probe

    def __iter__(self) -> Iterator[str]:
        return iter(self.explicit)

    def __len__(self) -> int:
        return len(self.explicit)


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
