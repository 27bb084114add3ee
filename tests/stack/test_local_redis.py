"""``flashclaim up`` adopts a Redis only when told which, and only one that keeps claims;
otherwise it starts its own, with an AOF, on a port of its own."""

from __future__ import annotations

import pytest
import redis

from gateway.infra.settings import Settings
from gateway.stack.local import Started, ensure_redis
from gateway.stack.servers import RedisServer, StartError


@pytest.fixture
def started():
    started = Started()
    yield started
    started.stop_all()


@pytest.fixture
def volatile(tmp_path):
    server = RedisServer(tmp_path / "volatile").start()
    yield server
    server.kill()


def settings_for(url: str, **overrides) -> Settings:
    return Settings.from_env({}, redis_url=url, **overrides)


def test_unasked_it_starts_its_own_with_an_aof(tmp_path, started, volatile):
    """Even with a Redis answering at the default address (here: the volatile one)."""
    settings, said = ensure_redis(settings_for(volatile.url), tmp_path / "redis", started,
                                  explicit=False)  # fmt: skip
    assert settings.redis_url != volatile.url
    assert "AOF on" in said
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    finally:
        client.close()


def test_a_named_redis_that_would_forget_is_refused(tmp_path, started, volatile):
    with pytest.raises(StartError, match="FLASHCLAIM_ALLOW_VOLATILE_REDIS=true") as caught:
        ensure_redis(settings_for(volatile.url), tmp_path / "redis", started, explicit=True)
    assert "CONFIG SET appendonly yes" in str(caught.value)


def test_a_named_redis_that_would_forget_is_used_when_allowed(tmp_path, started, volatile):
    allowed = settings_for(volatile.url, allow_volatile_redis=True)
    settings, said = ensure_redis(allowed, tmp_path / "redis", started, explicit=True)
    assert settings.redis_url == volatile.url
    assert said.startswith(f"{volatile.url} (given) WARNING")


def test_a_named_redis_with_an_aof_is_used(tmp_path, started, redis_server):
    settings, said = ensure_redis(
        settings_for(redis_server.url), tmp_path / "redis", started, explicit=True
    )
    assert settings.redis_url == redis_server.url
    assert "AOF on" in said
