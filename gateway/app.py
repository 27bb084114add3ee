"""``create_app(settings)``: the gateway as one aiohttp application.

Clients (Redis, the PostgreSQL pool) are opened and closed in ``cleanup_ctx`` and kept
under typed ``web.AppKey``s. On shutdown the worker first reports not-ready, so load
balancers stop sending claims before its connections close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import claim_api, db
from gateway.admin_api import OPS, admin_app
from gateway.auth import TokenVerifier
from gateway.campaign_cache import follow_campaign_events
from gateway.campaign_ops import CampaignOps
from gateway.campaign_store import CampaignStore
from gateway.claim_api import CLAIMS, READY, SETTINGS, TOKENS
from gateway.claims import ClaimService
from gateway.clock import Clock, SystemClock
from gateway.metrics import exposition_registry
from gateway.relay import run_relay
from gateway.responses import error_middleware
from gateway.settings import Settings

REDIS = web.AppKey("redis", Redis)
SUBSCRIBED = web.AppKey("subscribed", asyncio.Event)


def redis_client(settings: Settings) -> Redis:
    """A Redis client for operations: every command has its own timeout, and the pool
    waits briefly for a free connection, then gives up."""
    timeout = settings.redis_timeout_ms / 1000
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        **_reconnect(),
    )
    return Redis.from_pool(pool)


def claim_redis_client(settings: Settings) -> Redis:
    """A Redis client for the claim path: no per-command timers (the claim service bounds
    each batch with one), and a pool that fails at once rather than queueing; batching
    keeps at most two calls in flight per campaign."""
    pool = ConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        socket_timeout=None,  # redis-py 8 defaults to 5 s: a timer around every reply
        socket_connect_timeout=settings.redis_timeout_ms / 1000,
        decode_responses=True,
        **_reconnect(),
    )
    return Redis.from_pool(pool)


def _reconnect() -> dict[str, Any]:
    """Retry a command on a broken connection (after a Redis restart or failover) a few
    times, reconnecting in between. Safe for claims too: a re-sent batch is idempotent
    (the requestId bindings and replay records answer what was already decided)."""
    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The gateway: claim endpoint, health, metrics and the admin API."""
    clock = clock or SystemClock()
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[READY] = {"ready": False}
    app[TOKENS] = TokenVerifier(
        settings.jwt_secret,
        clock,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        cache_size=settings.token_cache_size,
    )
    app.cleanup_ctx.append(_clients(settings, clock))
    app.on_shutdown.append(_not_ready)
    app.add_routes(
        [
            web.post("/api/coupon/issue", claim_api.issue),
            web.get("/livez", claim_api.livez),
            web.get("/readyz", claim_api.readyz),
            web.get("/metrics", make_aiohttp_handler(exposition_registry(settings.metrics_dir))),
        ]
    )
    app.add_subapp("/admin/", admin_app(settings.admin_token, settings.max_body_bytes))
    return app


def _clients(settings: Settings, clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def clients(app: web.Application) -> AsyncIterator[None]:
        redis = redis_client(settings)
        claim_redis = claim_redis_client(settings)
        pool = await db.create_pool(settings.database_url)
        claims = ClaimService(claim_redis, clock, settings)
        await claims.detect_server()
        app[REDIS] = redis
        app[CLAIMS] = claims
        app[OPS] = CampaignOps(CampaignStore(pool), redis, clock)
        app[SUBSCRIBED] = subscribed = asyncio.Event()
        stop = asyncio.Event()
        events = asyncio.create_task(
            follow_campaign_events(redis, claims.campaigns.invalidate, subscribed, stop)
        )
        relay = (
            asyncio.create_task(run_relay(settings, redis, stop))
            if settings.relay_in_gateway
            else None
        )
        app[READY]["ready"] = True
        try:
            yield
        finally:
            stop.set()
            if relay is not None:
                await relay  # finishes its batch: what Kafka acknowledged is acked
            await events
            await pool.close()
            await claim_redis.aclose()
            await redis.aclose()

    return clients


async def _not_ready(app: web.Application) -> None:
    app[READY]["ready"] = False
