"""API tokens against a real PostgreSQL: what the per-process cache of accepted tokens keeps,
for how long, and what it never keeps."""

from __future__ import annotations

import pytest

from actors.stores.api_tokens import RecentTokens, TokenStore
from actors.stores.audit_sql import AuditStore
from healing.clock import ManualClock
from healing.errors import ConfigError


@pytest.fixture
def tokens(pg_url):
    store = AuditStore(pg_url)
    store.migrate()
    yield TokenStore(store, ManualClock())
    store.engine.dispose()


def test_an_accepted_token_is_kept_for_the_cache_time_then_read_again(tokens):
    recent = RecentTokens(tokens, ttl_s=5.0)
    secret, made = tokens.create("viewer", "dana", "test")
    assert recent.cached(secret) is None  # nothing is known before a read
    assert recent.authenticate(secret).id == made.id
    assert recent.cached(secret).role == "viewer"
    tokens.revoke(made.id)  # through the store: as another replica would
    tokens.clock.advance(4.9)
    assert recent.cached(secret) is not None  # the trade: accepted until the cache time ends
    tokens.clock.advance(0.2)
    assert recent.cached(secret) is None
    assert recent.authenticate(secret) is None


def test_forget_refuses_a_revoked_token_at_once_and_for_good(tokens):
    recent = RecentTokens(tokens, ttl_s=60.0)
    secret, made = tokens.create("operator", "lee", "test")
    other_secret, other = tokens.create("viewer", "kim", "test")
    recent.authenticate(secret)
    recent.authenticate(other_secret)
    tokens.revoke(made.id)
    recent.forget(made.id)
    assert recent.cached(secret) is None and recent.authenticate(secret) is None
    assert recent.cached(other_secret).id == other.id  # only the revoked one is dropped


def test_refusals_are_never_kept_and_no_secret_is_held(tokens):
    recent = RecentTokens(tokens, ttl_s=60.0)
    secret, _ = tokens.create("auditor", "ana", "test")
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert recent.authenticate(wrong) is None
    assert recent.cached(wrong) is None
    assert recent.authenticate("not a token") is None
    recent.authenticate(secret)
    assert len(recent._seen) == 1 and all(secret not in k for k in recent._seen)


def test_the_cache_holds_at_most_its_size_least_recent_first(tokens):
    recent = RecentTokens(tokens, ttl_s=60.0, size=2)
    made = [tokens.create("viewer", f"v{i}", "test")[0] for i in range(3)]
    recent.authenticate(made[0])
    recent.authenticate(made[1])
    assert recent.cached(made[0]) is not None  # now the most recent
    recent.authenticate(made[2])
    assert recent.cached(made[1]) is None
    assert recent.cached(made[0]) is not None and recent.cached(made[2]) is not None


def test_a_zero_cache_time_reads_every_time_and_bad_settings_are_refused(tokens):
    recent = RecentTokens(tokens, ttl_s=0.0)
    secret, _ = tokens.create("viewer", "z", "test")
    assert recent.authenticate(secret) is not None and recent.cached(secret) is None
    with pytest.raises(ConfigError, match="ttl_s"):
        RecentTokens(tokens, ttl_s=-1)
