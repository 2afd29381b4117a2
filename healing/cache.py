"""The bounded cache behind ``cached_data`` fallback tiers.

Entries are bounded by count and by bytes, least recently used first out. A key always
includes a keyed pseudonym of the patient, so one patient's data can never answer another
patient's request, and a request without a patient never sees a patient's data. Values are
stored pickled: the size is exact, and a caller mutating an answer cannot change the cache.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

from .config import check_count
from .safety import ClinicalContext, pseudonym

__all__ = ["CacheKey", "CachedValue", "FallbackCache"]


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

    def __len__(self) -> int:
        return len(self._entries)
