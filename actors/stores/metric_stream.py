"""Metrics into Redis streams (seed 3.3, 6.2): sampled events, exact counters, never in the way.

:class:`MetricRecorder` is an :class:`~healing.outcome.OutcomeSink`. On the request path it
only counts and appends to an in-process buffer. It keeps every error and a sample of the
successes (``sample_rate``, 10 % by default), and exact counters whatever the sampling. A
background thread flushes the buffer: one atomic Lua call per flush does the ``HINCRBY``s
and the ``XADD metrics:{service} MAXLEN ~ N``s.

Stream entries carry a batch of events each (field ``events``: a JSON list of
``[at, latency_s, ok, error_kind, tier, provider]``; field ``n``: how many). An entry's id is
its latest event's time (or just after the stream's newest id, when that is later), not the
time Redis received it, so a time range of events is a range of ids. Batching is
what lets one Python process deliver 100k events/s: redis-py costs ~20 µs a command, so
single-event entries top out near 50k/s.

The counters (hash ``metrics:{service}:count``) are ``total``, ``errors``, ``fallbacks``,
``shed`` and ``retried``: failed attempts of the primary that a retry followed, which no
event shows when the retry answers (:meth:`MetricRecorder.retried`). The same attempts are
also counted by the second they happened in (hash ``metrics:{service}:retried``, a field per
epoch second), for the predictive monitor, which takes and deletes them
(:func:`take_retried`) and places each second's count in its own time, as it places events:
an outage's attempts held while Redis was away arrive late, not as one burst.

When Redis is down the guard is unaffected. The buffer is bounded (``buffer_max`` events);
events that do not fit are dropped and counted in ``dropped``. The counters are never
dropped: they are plain integers, added back when a flush fails. Each flush carries an id
that Redis remembers for an hour, so a flush whose reply was lost in a disconnect is not
applied twice when it is retried. That is how the counters end exact.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from healing.outcome import OutcomeRecord

__all__ = ["MetricRecorder", "RecorderStats", "take_retried"]

_log = logging.getLogger("selfheal.metrics")

EVENTS_PER_ENTRY = 200
ENTRY_SPAN_S = 10.0  # the longest stretch of time one entry's events cover
FLUSH_ID_TTL_S = 3600
# How long a second's count of retried attempts waits for the monitor to take it; and the
# most seconds one service holds while Redis is away (the oldest go first: the monitor would
# drop them as late anyway; the ``retried`` counter stays exact).
RETRIED_TTL_S = 3600
RETRIED_SECONDS_MAX = 3600

# KEYS: [flush-id key, stream_1, counts_1, retried_1, stream_2, counts_2, retried_2, ...]
# ARGV: [ttl, maxlen, json payload: [[total, errors, fallbacks, shed, retried,
#        [[second, n], ...], [entry, ...]], ...], retention in ms (0: none), retried ttl]
# An entry is [n, events JSON, its latest event's time in ms]. Its stream id is that time, or
# just after the stream's newest id if that is later (ids only grow): so every event of an
# entry happened at or before the entry's id, and a time range is read from its start
# (actors.frames). Explicit ids, as Redis 6.2 (the embedded server) has no "ms-*".
_FLUSH_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local services = cjson.decode(ARGV[3])
for i, s in ipairs(services) do
  local stream, counts, retried = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if s[1] > 0 then redis.call('HINCRBY', counts, 'total', s[1]) end
  if s[2] > 0 then redis.call('HINCRBY', counts, 'errors', s[2]) end
  if s[3] > 0 then redis.call('HINCRBY', counts, 'fallbacks', s[3]) end
  if s[4] > 0 then redis.call('HINCRBY', counts, 'shed', s[4]) end
  if s[5] > 0 then redis.call('HINCRBY', counts, 'retried', s[5]) end
  for _, pair in ipairs(s[6]) do
    redis.call('HINCRBY', retried, string.format('%d', pair[1]), pair[2])
  end
  if s[6][1] then redis.call('EXPIRE', retried, ARGV[5]) end
  local top_ms, top_seq = -1, 0
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if top[1] then
    local a, b = string.match(top[1][1], '^(%d+)-(%d+)$')
    top_ms, top_seq = tonumber(a), tonumber(b)
  end
  for _, entry in ipairs(s[7]) do
    local ms, seq = entry[3], 0
    if ms <= top_ms then ms, seq = top_ms, top_seq + 1 end
    if ms == 0 and seq == 0 then seq = 1 end  -- 0-0 is not a valid id
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], string.format('%d-%d', ms, seq),
               'n', entry[1], 'events', entry[2])
    top_ms, top_seq = ms, seq
  end
  local keep = tonumber(ARGV[4])
  if keep > 0 and top_ms >= keep then  -- by age too: exact, it only removes the oldest
    redis.call('XTRIM', stream, 'MINID', string.format('%d', top_ms - keep))
  end
end
return 1
"""


@dataclass
class RecorderStats:
    recorded: int = 0  # outcomes seen
    sampled: int = 0  # events buffered for the stream
    sent: int = 0  # events delivered to Redis
    dropped: int = 0  # events that did not fit the buffer while Redis was away
    flushes: int = 0
    failed_flushes: int = 0


class MetricRecorder:
    """Per-process metric recorder for Redis streams.

    Args:
        client: a redis-py client (short socket timeouts recommended).
        sample_rate: fraction of successes streamed; errors always are.
        maxlen: approximate stream length cap, in entries.
        buffer_max: most events held while Redis is unreachable.
        flush_interval_s: background flush period; 0 = only explicit :meth:`flush` calls.
        rng: sampling randomness (seed it for reproducible runs).
        retention_s: also drop entries whose events are older than this, behind the
            stream's newest (None: ``maxlen`` alone bounds the stream).
        prefix: key prefix (``metrics``): streams ``{prefix}:{service}``, counters
            ``{prefix}:{service}:count``.
    """

    def __init__(self, client: redis.Redis, *, sample_rate: float = 0.1, maxlen: int = 10_000,
                 buffer_max: int = 100_000, flush_interval_s: float = 0.2,
                 rng: random.Random | None = None, prefix: str = "metrics",
                 retention_s: float | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
        if retention_s is not None and not retention_s > 0:
            raise ValueError(f"retention_s must be positive, got {retention_s!r}")
        self.retention_ms = 0 if retention_s is None else math.ceil(retention_s * 1000)
        self.client = client
        self.sample_rate = sample_rate
        self.maxlen = maxlen
        self.buffer_max = buffer_max
        self.prefix = prefix
        self._random = (rng or random.Random()).random
        self._buffer: deque[OutcomeRecord] = deque()
        self._counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self._retried: defaultdict[str, dict[int, int]] = defaultdict(dict)  # second -> n
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._script = client.register_script(_FLUSH_SCRIPT)
        self._writer = uuid.uuid4().hex[:12]
        self._flush_seq = 0
        self._pending: tuple[str, list[str], str, list[OutcomeRecord],
                             dict[str, list[int]]] | None = None
        self._last_sent = self._pending
        self._held = 0  # events taken by a flush that has not reached Redis yet
        self.stats = RecorderStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval_s > 0:
            self._thread = threading.Thread(target=self._run, args=(flush_interval_s,),
                                            name="metric-recorder", daemon=True)
            self._thread.start()

    # -- the request path --------------------------------------------------------------

    def record(self, outcome: OutcomeRecord) -> None:
        """Count ``outcome`` and maybe buffer it. Never touches the network."""
        ok = outcome.success and outcome.error_kind is None
        with self._lock:
            c = self._counts[outcome.service]
            c[0] += 1
            if not ok:
                c[1] += 1
            if outcome.tier != "primary" and outcome.success:
                c[2] += 1
            if outcome.error_kind == "shed":  # admission refused it (healing.admission)
                c[3] += 1
            self.stats.recorded += 1
            if ok and self._random() >= self.sample_rate:
                return
            # Events held by a failed flush count against the bound too.
            if len(self._buffer) + self._held >= self.buffer_max:
                self.stats.dropped += 1
                return
            self._buffer.append(outcome)
            self.stats.sampled += 1

    def retried(self, service: str, at: float) -> None:
        """Count a failed attempt of ``service``'s primary that a retry followed, at ``at``
        (the counter ``retried``, and its second's count, which the predictive monitor takes:
        docs/learning.md)."""
        second = math.floor(at)
        with self._lock:
            self._counts[service][4] += 1
            seconds = self._retried[service]
            seconds[second] = seconds.get(second, 0) + 1
            if len(seconds) > RETRIED_SECONDS_MAX:  # the first inserted: the oldest, in O(1)
                del seconds[next(iter(seconds))]  # (min() would scan 3,600 on the request path)

    # -- flushing ----------------------------------------------------------------------

    def flush(self) -> int:
        """Send what is buffered; returns events sent. Raises redis errors (nothing is lost:
        the same flush, under the same id, is retried next time)."""
        sent = 0
        with self._flush_lock:
            for _ in range(2):  # a flush left over from a failure, then what is new
                if self._pending is None:
                    self._pending = self._take()
                if self._pending is None:
                    break
                _, keys, payload, events, _ = self._pending
                try:
                    self._script(keys=keys, args=[FLUSH_ID_TTL_S, self.maxlen, payload,
                                                  self.retention_ms, RETRIED_TTL_S])
                except redis.RedisError:
                    self.stats.failed_flushes += 1
                    raise
                self._last_sent, self._pending = self._pending, None
                with self._lock:
                    self._held = 0
                self.stats.flushes += 1
                self.stats.sent += len(events)
                sent += len(events)
        return sent

    def resend_last_for_testing(self) -> None:
        """Send the last flush again, as a retry after a lost reply would."""
        with self._flush_lock:
            self._pending = self._last_sent
        self.flush()

    def _take(self) -> tuple[str, list[str], str, list[OutcomeRecord],
                             dict[str, list[int]]] | None:
        with self._lock:
            if not self._buffer and not self._counts:
                return None
            events = list(self._buffer)
            self._buffer.clear()
            self._held = len(events)
            counts, self._counts = dict(self._counts), defaultdict(lambda: [0, 0, 0, 0, 0])
            retried, self._retried = dict(self._retried), defaultdict(dict)
        by_service: dict[str, list[OutcomeRecord]] = defaultdict(list)
        for e in events:
            by_service[e.service].append(e)
        services = sorted(set(counts) | set(by_service))
        keys = [f"{self.prefix}:flush:{self._writer}:{self._flush_seq}"]
        payload: list[list[Any]] = []
        for svc in services:
            keys += [f"{self.prefix}:{svc}", f"{self.prefix}:{svc}:count",
                     f"{self.prefix}:{svc}:retried"]
            evs = by_service.get(svc, [])
            entries = [[len(chunk), json.dumps([_event(e) for e in chunk],
                                               separators=(",", ":")),
                        max(0, math.ceil(latest * 1000))]
                       for chunk, latest in _chunks(evs)]
            total, errors, fallbacks, shed, retried_n = counts.get(svc, (0, 0, 0, 0, 0))
            seconds = sorted(retried.get(svc, {}).items())  # (second, n): JSON pairs
            payload.append([total, errors, fallbacks, shed, retried_n, seconds, entries])
        self._flush_seq += 1
        return keys[0], keys, json.dumps(payload), events, counts

    def _run(self, interval: float) -> None:
        delay = interval
        while not self._stop.wait(delay):
            try:
                self.flush()
                delay = interval
            except redis.RedisError as exc:
                delay = min(delay * 2, 5.0)  # Redis is away: back off, keep buffering
                _log.warning("metrics flush failed, retrying in %.1f s: %s", delay, exc)
            except Exception:
                _log.exception("metrics flush failed unexpectedly")

    def close(self, flush: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if flush:
            try:
                while self.flush() > 0:
                    continue
            except redis.RedisError as exc:
                _log.warning("metrics left unsent at close: %s", exc)


def _chunks(events: list[OutcomeRecord]) -> Iterator[tuple[list[OutcomeRecord], float]]:
    """Entries of at most EVENTS_PER_ENTRY events spanning at most ENTRY_SPAN_S, each with
    its latest event's time: a flush after Redis was away holds minutes of events, and an
    entry's id (its latest event) must stay close to each of its events for a time range to
    be read by ids."""
    chunk: list[OutcomeRecord] = []
    lo = hi = 0.0
    for e in events:
        if chunk and (len(chunk) >= EVENTS_PER_ENTRY
                      or max(hi, e.at) - min(lo, e.at) > ENTRY_SPAN_S):
            yield chunk, hi
            chunk = []
        if not chunk:
            lo = hi = e.at
        chunk.append(e)
        lo, hi = min(lo, e.at), max(hi, e.at)
    if chunk:
        yield chunk, hi


def _event(o: OutcomeRecord) -> list[Any]:
    return [round(o.at, 6), round(o.latency_s, 6), 1 if o.success else 0, o.error_kind, o.tier,
            o.provider]


def first_id(at_s: float) -> str:
    """The first entry id that can hold an event at or after ``at_s`` (epoch seconds): an
    entry's id is its newest event's time, so ``read_events(..., first=first_id(t))`` reads
    every event from ``t`` on (and some earlier ones of the same entries)."""
    return str(max(0, math.floor(at_s * 1000)))


def read_events(client: redis.Redis, service: str, prefix: str = "metrics",
                first: str = "-", last: str = "+") -> list[list[Any]]:
    """The events in ``service``'s stream, oldest first; ``first`` and ``last`` bound the
    entry ids read (their events' time in ms, see the module doc), every entry by default."""
    out: list[list[Any]] = []
    for _id, fields in client.xrange(f"{prefix}:{service}", first, last):
        out += json.loads(fields[b"events"])
    return out


def read_new(client: redis.Redis, group: str, consumer: str, streams: set[str],
             count: int = 1000) -> tuple[Any, set[str]]:
    """What is new in ``streams`` for ``consumer`` of ``group`` (XREADGROUP), and the streams
    still there. A stream deleted since its group was made fails the read of every stream
    (NOGROUP): it is left out (its reader finds it again if it comes back), the rest read."""
    try:
        return client.xreadgroup(group, consumer, dict.fromkeys(streams, ">"),
                                 count=count), streams
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
    left = {s for s in streams if _has_group(client, s, group)}
    if not left:
        return [], left
    return client.xreadgroup(group, consumer, dict.fromkeys(left, ">"), count=count), left


def _has_group(client: redis.Redis, stream: str, group: str) -> bool:
    try:
        return any(g["name"] in (group, group.encode()) for g in client.xinfo_groups(stream))
    except redis.ResponseError:  # no such key
        return False


def take_retried(client: redis.Redis, services: list[str], prefix: str = "metrics",
                 ) -> dict[str, list[tuple[int, int]]]:
    """Each service's counts of retried attempts by second (epoch second, count), oldest
    first, taken: read and deleted in one transaction, so a count is taken once, and one a
    flush adds meanwhile waits for the next take. A malformed field is left out."""
    pipe = client.pipeline(transaction=True)
    for service in services:
        pipe.hgetall(f"{prefix}:{service}:retried")
        pipe.delete(f"{prefix}:{service}:retried")
    rows = pipe.execute()[::2]
    out: dict[str, list[tuple[int, int]]] = {}
    for service, row in zip(services, rows, strict=True):
        pairs = []
        for second, n in row.items():
            try:
                pairs.append((int(second), int(n)))
            except ValueError:
                _log.error("malformed retried count for %s skipped", service)
        if pairs:
            out[service] = sorted(pairs)
    return out


def read_counts(client: redis.Redis, service: str, prefix: str = "metrics") -> dict[str, int]:
    raw = client.hgetall(f"{prefix}:{service}:count")
    return {k.decode(): int(v) for k, v in raw.items()}
