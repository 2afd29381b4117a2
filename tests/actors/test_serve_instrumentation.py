"""``instrument`` on a real Ray Serve deployment, recording into a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.stores.metric_stream import read_counts
from actors.stores.redis_conn import connect
from tests.actors.serve_app import build
from tests.conftest import REDIS_URL


def test_a_serve_deployment_records_every_call_through_its_replica_recorder(ray_cluster):
    from ray import serve

    prefix = f"test:{uuid.uuid4().hex[:8]}"
    client = connect(REDIS_URL)
    handle = serve.run(build(REDIS_URL, prefix), name=prefix, route_prefix=None)
    try:
        answers = [handle.remote(s).result(timeout_s=30) for s in (3, 9, 5)]
        with pytest.raises(Exception, match="score must be"):
            handle.remote(-1).result(timeout_s=30)
        assert answers == ["routine", "urgent", "routine"]
        deadline = time.monotonic() + 20
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:  # the replica's recorder flushes on its own
            counts = read_counts(client, "triage", prefix)
            if counts.get("total") == 4:
                break
            time.sleep(0.02)
        assert counts == {"total": 4, "errors": 1}
    finally:
        serve.delete(prefix)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
