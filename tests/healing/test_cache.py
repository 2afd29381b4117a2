"""The fallback cache: bounded by entries and bytes, isolated per patient, copy on read."""

from __future__ import annotations

import pytest

from healing import ClinicalContext, ConfigError, FallbackCache

CTX = ClinicalContext("informational", "low", patient_id="p-9")


def test_entries_are_bounded_and_least_recently_used_go_first():
    c = FallbackCache(max_entries=2)
    a, b, d = (c.key_for("s", CTX, k) for k in "abd")
    c.put(a, 1, 0.0)
    c.put(b, 2, 0.0)
    assert c.get(a, 0.0, 10).value == 1  # a is now most recent
    c.put(d, 3, 0.0)
    assert c.get(b, 0.0, 10) is None and c.get(a, 0.0, 10).value == 1 and len(c) == 2


def test_bytes_are_bounded_and_an_oversized_value_is_refused():
    c = FallbackCache(max_bytes=300)
    k1, k2 = c.key_for("s", CTX, "1"), c.key_for("s", CTX, "2")
    assert c.put(k1, "x" * 200, 0.0)
    assert c.put(k2, "y" * 200, 0.0)
    assert c.get(k1, 0.0, 10) is None and c.bytes <= 300
    assert not c.put(k1, "z" * 400, 0.0)


def test_cached_value_cannot_be_changed_through_a_returned_answer():
    c = FallbackCache()
    k = c.key_for("s", CTX, "q")
    c.put(k, {"items": [1]}, 0.0)
    c.get(k, 0.0, 10).value["items"].append(2)
    assert c.get(k, 0.0, 10).value == {"items": [1]}


def test_keys_hold_a_pseudonym_never_the_patient_id():
    c = FallbackCache(key=b"k" * 32)
    k = c.key_for("s", CTX, "q")
    assert "p-9" not in repr(k) and k.subject
    assert c.key_for("s", ClinicalContext("informational", "low", patient_id="p-10"), "q") != k


def test_unpicklable_values_are_not_cached():
    c = FallbackCache()
    assert not c.put(c.key_for("s", CTX, "q"), lambda: 1, 0.0)


def test_bounds_are_validated():
    with pytest.raises(ConfigError, match="max_entries"):
        FallbackCache(max_entries=0)


def test_recent_lists_a_services_fresh_entries_and_never_prescriptive_ones():
    c = FallbackCache()
    dx = ClinicalContext("diagnostic", "high", patient_id="MRN-9")
    c.put(c.key_for("xray", dx, "old"), {"v": 0}, now=0.0)
    c.put(c.key_for("xray", dx, "new"), {"v": 1}, now=90.0)
    c.put(c.key_for("other", dx, "new"), {"v": 2}, now=90.0)
    # put() trusts its caller; recent() still never exports a prescriptive answer
    c.put(c.key_for("xray", ClinicalContext("prescriptive", "high"), "rx"), {"v": 3}, now=95.0)
    got = c.recent("xray", now=100.0, max_age_s=60.0)
    assert [(k.request, v, age) for k, v, age in got] == [("new", {"v": 1}, 10.0)]


def test_fill_keeps_the_newer_answer_and_refuses_prescriptive_keys():
    c = FallbackCache()
    dx = ClinicalContext("diagnostic", "high")
    k = c.key_for("xray", dx, "q")
    assert c.fill(k, {"v": "shared"}, stored_at=50.0)
    assert not c.fill(k, {"v": "older"}, stored_at=40.0)
    assert c.get(k, now=60.0, max_staleness_s=30.0) == ({"v": "shared"}, 10.0)
    assert c.fill(k, {"v": "newer"}, stored_at=55.0)
    assert c.get(k, now=60.0, max_staleness_s=30.0).value == {"v": "newer"}
    rx = c.key_for("xray", ClinicalContext("prescriptive", "high"), "q")
    assert not c.fill(rx, {"v": 1}, stored_at=55.0) and len(c) == 1
