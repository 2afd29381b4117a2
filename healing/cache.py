"""The bounded cache behind ``cached_data`` fallback tiers.

Entries are bounded by count and by bytes, least recently used first out. A key always
includes a keyed pseudonym of the patient, so one patient's data can never answer another
patient's request, and a request without a patient never sees a patient's data. Values are
stored pickled: the size is exact, and a caller mutating an answer cannot change the cache.

:meth:`FallbackCache.recent` and :meth:`FallbackCache.fill` let the runtime share recent good
answers between processes (the ``cache_warm`` recovery action); neither ever moves a
prescriptive answer, which is never stored in the first place.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

from .config import check_count
from .safety import ClinicalContext, OperationType, pseudonym

__all__ = ["CacheKey", "CachedValue", "FallbackCache"]

_PRESCRIPTIVE = OperationType.PRESCRIPTIVE.value


class CacheKey(NamedTuple):
    service: str
    operation: str  # the operation type: a diagnostic answer never serves an informational ask
    subject: str  # pseudonym of the patient, "" when the request has none
    request: str  # what was asked, as the caller names it


class CachedValue(NamedTuple):
    value: Any
    age_s: float


class FallbackCache:
    """LRU cache bounded by entries and bytes.

    Args:
        max_entries: most entries kept.
        max_bytes: most pickled bytes kept; a single value larger than this is not cached.
        key: HMAC key for patient pseudonyms (random per process by default).
    """

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024,
                 key: bytes | None = None) -> None:
        check_count("max_entries", max_entries)
        check_count("max_bytes", max_bytes)
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._key = key if key is not None else os.urandom(32)
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[bytes, float]] = OrderedDict()
        self.bytes = 0

    def key_for(self, service: str, context: ClinicalContext, request: str) -> CacheKey:
        subject = pseudonym(context.patient_id, self._key) if context.patient_id else ""
        return CacheKey(service, context.operation_type.value, subject, request)

    def put(self, key: CacheKey, value: Any, now: float) -> bool:
        """Store ``value``; returns False if it cannot be stored (unpicklable or too big)."""
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an unpicklable answer is simply not cached
            return False
        size = len(blob)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= len(old[0])
            self._entries[key] = (blob, now)
            self.bytes += size
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                _, (b, _) = self._entries.popitem(last=False)
                self.bytes -= len(b)
        return True

    def get(self, key: CacheKey, now: float, max_staleness_s: float) -> CachedValue | None:
        """The value stored under ``key`` if it is at most ``max_staleness_s`` old."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            blob, stored_at = entry
            age = now - stored_at
            if age > max_staleness_s:
                return None
            self._entries.move_to_end(key)
        return CachedValue(pickle.loads(blob), age)

    def recent(self, service: str, now: float,
               max_age_s: float) -> list[tuple[CacheKey, Any, float]]:
        """``(key, value, age_s)`` for ``service``'s entries at most ``max_age_s`` old."""
        with self._lock:
            entries = [(k, blob, now - at) for k, (blob, at) in self._entries.items()
                       if k.service == service and now - at <= max_age_s
                       and k.operation != _PRESCRIPTIVE]
        return [(k, pickle.loads(blob), age) for k, blob, age in entries]

    def fill(self, key: CacheKey, value: Any, stored_at: float) -> bool:
        """Store an answer another process saw at ``stored_at`` (on this cache's clock),
        unless this cache already holds a newer one for the key. Returns whether it did."""
        if key.operation == _PRESCRIPTIVE:
            return False
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[1] >= stored_at:
                return False
        return self.put(key, value, stored_at)

    def __len__(self) -> int:
        return len(self._entries)
