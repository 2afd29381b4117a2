"""Outcome events and trouble spans into labelled buckets."""

from __future__ import annotations

import pytest

from learning.history import buckets_from_events


def test_successes_are_reweighted_errors_counted_and_buckets_labelled():
    events = [(100.0, "api", True, None), (101.0, "api", False, "MemoryError"),
              (105.0, "api", True, "rejected"),  # never reached the primary: not a call
              (131.0, "api", False, "TimeoutError"), (131.5, "db", True, None)]
    got = buckets_from_events(events, {"api": [(125.0, 140.0)]}, sample_rate=0.1)
    api = got["api"]
    assert [b.start for b in api] == [100.0, 110.0, 120.0, 130.0]  # gaps kept, as empty
    assert (api[0].calls, api[0].errors, api[0].troubled) == (11.0, 1.0, False)
    assert (api[1].calls, api[1].troubled) == (0.0, False)
    assert api[2].troubled and api[3].troubled and api[3].errors == 1.0
    assert [b.calls for b in got["db"]] == [10.0]


def test_a_bad_sample_rate_is_refused():
    with pytest.raises(ValueError, match="sample_rate"):
        buckets_from_events([], {}, sample_rate=0)
