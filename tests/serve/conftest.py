"""The running service's stack, shared by the API and dashboard tests (one per module)."""

from __future__ import annotations

import uuid

import pytest

from actors.settings import Settings
from tests.actors.test_scheduler_actor import LEAK

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def stack(ray_cluster, tmp_path_factory):
    """``selfheal up`` joined to the session's Ray cluster, on its own Redis prefix-free
    database and a fresh PostgreSQL database."""
    import psycopg

    from serve.service import create_token, up
    from tests.actors.webhooks import WebhookReceiver

    db = f"api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    data = tmp_path_factory.mktemp("selfheal-up")
    pagerduty = WebhookReceiver()  # PagerDuty's Events API, on loopback
    # a scheduled training that never fires by itself during the tests (1 January), on a
    # small scenario: a test ticks the scheduler at its fire time
    (data / "small-leak.yaml").write_text(LEAK.format(seed=1))
    settings = Settings(data_dir=data, redis_url=REDIS_URL,
                        database_url=f"postgresql://postgres@127.0.0.1:5432/{db}",
                        api_port=8000, pagerduty_events_url=f"{pagerduty.url}/v2/enqueue",
                        pagerduty_routing_key="R" * 32, training_schedule="0 3 1 1 *",
                        training_scenarios=[data / "small-leak.yaml"])
    import redis

    client = redis.Redis.from_url(REDIS_URL)  # what an earlier stack's actors persisted
    for pattern in ("selfheal:orchestrator:*", "selfheal:health:*", "selfheal:monitor:*",
                    "selfheal:training:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    state = up(settings, start_ray=False)
    tokens = {"admin": (data / "admin-token").read_text().strip()}
    for role in ("viewer", "operator", "auditor"):
        tokens[role], _ = create_token(settings, role, f"{role}-test")
    state["pagerduty"] = pagerduty
    yield state, settings, tokens
    from actors.ray_gateway import find_actor, kill
    from actors.serve_control import delete_app

    delete_app("selfheal")
    for name in ("orchestrator", "health", "monitor", "training-scheduler"):  # the next
        # `up` starts its own
        actor = find_actor(name)
        if actor is not None:
            kill(actor)
    pagerduty.close()


