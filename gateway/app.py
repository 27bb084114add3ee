"""``create_app(settings)``: the gateway as one aiohttp application.

Each capability brings its routes (``gateway/<capability>/api.py``) and the operations
that describe them (``OPERATIONS``, gathered below into the OpenAPI document served at
``/openapi.json``); this module wires them, opens the clients they share in
``cleanup_ctx`` (kept under typed ``web.AppKey``s) and answers the health checks. On
shutdown the worker first reports not-ready, so load balancers stop sending claims
before its connections close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from redis.exceptions import RedisError

from gateway.campaigns import admin_api as campaigns_admin
from gateway.campaigns.cache import follow_campaign_events
from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.channels import admin_api as channels_admin
from gateway.channels import api as channels_api
from gateway.channels.bind_store import BindJobs
from gateway.channels.code_store import CodeBatches
from gateway.channels.codes import CodeHasher
from gateway.channels.grants import Triggers
from gateway.channels.guard import CodeGuard
from gateway.channels.redeem import Redeemer
from gateway.channels.triggers import TriggerRules
from gateway.claim import api as claim_api
from gateway.claim.service import ClaimService
from gateway.h5 import api as h5_api
from gateway.h5 import partners as h5_partners
from gateway.h5.public import PublicViews
from gateway.handoff.relay import run_relay
from gateway.infra import clients, openapi, protocol
from gateway.infra.auth import TokenVerifier
from gateway.infra.clock import Clock, SystemClock
from gateway.infra.cors import CorsPolicy
from gateway.infra.http import (
    ADMIN_TOKEN,
    PERSISTENCE,
    READY,
    REDIS,
    SETTINGS,
    TOKENS,
    admin_auth,
    edge_middleware,
    json_response,
)
from gateway.infra.metrics import exposition_registry
from gateway.infra.openapi import Operation
from gateway.infra.persistence import PersistenceGuard
from gateway.infra.settings import SECRETS, ConfigError, Settings
from gateway.reasons import Reason

SUBSCRIBED = web.AppKey("subscribed", asyncio.Event)


class Health(msgspec.Struct):
    """The process's state in a word (``ok``, ``draining``, ``redis unavailable``, ...)."""

    status: str


class Readiness(Health):
    """Ready for claims, and what the gateway knows of Redis's persistence."""

    redis: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET


_HEALTH_OPERATIONS = [
    Operation("GET", "/livez", "The process is up and its event loop turns", "health", ok=Health),
    Operation(
        "GET",
        "/readyz",
        "Ready for claims: Redis answers, keeps claims on disk (or is allowed not to), and"
        " the worker is not draining",
        "health",
        ok=Readiness,
        refusals=[(Reason.UNAVAILABLE, 503)],
        refusal_bodies={503: Readiness},
    ),
    Operation(
        "GET", "/metrics", "Prometheus metrics of every worker", "health", ok_media="text/plain"
    ),
]

#: Every operation the gateway answers: the OpenAPI document is built from this list.
OPERATIONS: list[Operation] = [
    *claim_api.OPERATIONS,
    *h5_api.OPERATIONS,
    *campaigns_admin.OPERATIONS,
    *h5_partners.OPERATIONS,
    *channels_api.OPERATIONS,
    *channels_admin.OPERATIONS,
    *_HEALTH_OPERATIONS,
    *openapi.OPERATIONS,
]


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The gateway: claim endpoint, health, metrics, the API document and the admin API."""
    missing = [
        f"FLASHCLAIM_{key.upper()} must be set" for key in SECRETS if not getattr(settings, key)
    ]
    if missing:
        raise ConfigError(missing)
    protocol.install()
    clock = clock or SystemClock()
    cors = (
        CorsPolicy(settings.cors_origin_list, settings.cors_max_age_s, settings.cors_credentials)
        if settings.cors_origins
        else None
    )
    app = web.Application(
        middlewares=[edge_middleware(cors)], client_max_size=settings.max_body_bytes
    )
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
    app.add_routes(claim_api.routes())
    app.add_routes(h5_api.routes())
    app.add_routes(channels_api.routes())
    app.add_routes(
        [
            web.get("/livez", livez),
            web.get("/readyz", readyz),
            web.get("/metrics", make_aiohttp_handler(exposition_registry(settings.metrics_dir))),
        ]
    )
    app.add_routes(openapi.routes(openapi.build_document(OPERATIONS)))
    app.add_subapp("/admin/", _admin_app(settings))
    return app


def _admin_app(settings: Settings) -> web.Application:
    """The operators' API under ``/admin/``, behind its own bearer token."""
    admin = web.Application(
        middlewares=[admin_auth, campaigns_admin.admin_errors],
        client_max_size=settings.max_body_bytes,
    )
    admin[ADMIN_TOKEN] = settings.admin_token
    admin.add_routes(campaigns_admin.routes())
    admin.add_routes(h5_partners.admin_routes())
    admin.add_routes(channels_admin.routes())
    return admin


def _clients(settings: Settings, clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def open_clients(app: web.Application) -> AsyncIterator[None]:
        redis = clients.redis_client(settings)
        claim_redis = clients.claim_redis_client(settings)
        pool = await clients.create_pool(settings.database_url)
        claims = ClaimService(claim_redis, clock, settings)
        await claims.detect_server()
        guard = PersistenceGuard(
            redis,
            allow_volatile=settings.allow_volatile_redis,
            timeout_s=settings.redis_timeout_ms / 1000,
        )
        await guard.check()
        app[REDIS] = redis
        app[claim_api.CLAIMS] = claims
        app[PERSISTENCE] = guard
        app[campaigns_admin.OPS] = CampaignOps(CampaignStore(pool), redis, clock)
        app[h5_api.VIEWS] = PublicViews(
            redis, clock, settings.campaign_cache_ms, settings.redis_timeout_ms / 1000
        )
        _channels(app, settings, claims, redis, pool)
        app[SUBSCRIBED] = subscribed = asyncio.Event()
        stop = asyncio.Event()
        events = asyncio.create_task(
            follow_campaign_events(redis, claims.invalidate, subscribed, stop)
        )
        watch = asyncio.create_task(guard.watch(stop))
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
            await watch
            await pool.close()
            await claims.aclose()
            await claim_redis.aclose()
            await redis.aclose()

    return open_clients


def _channels(
    app: web.Application, settings: Settings, claims: ClaimService, redis: Any, pool: Any
) -> None:
    """Redeem codes, bind jobs and triggers (gateway/channels/)."""
    hasher = CodeHasher.for_settings(settings.code_secret, settings.jwt_secret)
    app[channels_api.REDEEMER] = Redeemer(claims, redis, CodeGuard(redis, settings), hasher)
    rules = TriggerRules(pool, settings.trigger_cache_ms)
    app[channels_admin.RULES] = rules
    app[channels_api.TRIGGERS] = Triggers(claims, rules, redis, settings.skydrop_max_grants)
    app[channels_admin.CODES] = CodeBatches(pool, redis, hasher)
    app[channels_admin.JOBS] = BindJobs(pool)


async def _not_ready(app: web.Application) -> None:
    app[READY]["ready"] = False


async def livez(request: web.Request) -> web.Response:
    """The process is up and its event loop turns."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for claims: Redis answers and would keep them (or may forget them, by a
    setting), and the worker is not shutting down."""
    if not request.app[READY]["ready"]:
        return json_response({"status": "draining"}, status=503)
    guard = request.app[PERSISTENCE]
    try:
        await request.app[claim_api.CLAIMS].ping()
    except (RedisError, OSError) as exc:
        return json_response(
            {"status": "redis unavailable", "error": str(exc), "redis": guard.readiness()}, 503
        )
    if guard.refusal is not None:
        return json_response(
            {"status": "redis would forget claims", "error": guard.refusal,
             "redis": guard.readiness()},
            503,
        )  # fmt: skip
    return json_response({"status": "ok", "redis": guard.readiness()})
