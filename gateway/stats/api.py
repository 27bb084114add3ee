"""The statistics routes: exposures reported by front-ends, the funnel for operators.

``POST /api/exposures`` takes a batch of views (no token: pages report views before anyone
logs in); ``GET /admin/stats`` answers the funnel per campaign x channel x day. The
exposure counter shares the workers' Redis client and reads campaigns through a cache of
its own (a campaign's time zone decides which day a view counts on).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import asyncpg
import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from gateway.campaigns.admin_api import OPS
from gateway.campaigns.cache import CampaignCache
from gateway.claim.api import EXPERIMENTS
from gateway.identifiers import CAMPAIGN_ID_PATTERN, CampaignId
from gateway.infra.clock import Clock
from gateway.infra.http import REDIS, SETTINGS, json_response, refusal
from gateway.infra.openapi import Operation
from gateway.infra.settings import Settings
from gateway.reasons import Reason
from gateway.stats import abuse
from gateway.stats.exposures import ExposureAnswer, ExposureBatch, ExposureCounter
from gateway.stats.funnel import FunnelReport, IsoDate, funnel
from gateway.stats.routing import ExperimentRouter

EXPOSURES = web.AppKey("exposures", ExposureCounter)
_decoder = msgspec.json.Decoder(ExposureBatch)
_CAMPAIGN_ID = re.compile(CAMPAIGN_ID_PATTERN)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def routes() -> list[web.RouteDef]:
    """The public statistics route."""
    return [web.post("/api/exposures", report_exposures)]


def admin_routes() -> list[web.RouteDef]:
    """The operators' statistics routes (mounted under ``/admin/``)."""
    return [web.get("/stats", stats)]


def clients(settings: Settings, clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry giving the app its exposure counter, the claim path's view
    of experiments and the task adding the worker's abuse tally to Redis (after the shared
    clients are open: they use their Redis)."""

    async def open_counter(app: web.Application) -> AsyncIterator[None]:
        campaigns = CampaignCache(
            app[REDIS], clock, settings.experiment_cache_ms, settings.redis_timeout_ms / 1000
        )
        app[EXPOSURES] = ExposureCounter(
            app[REDIS], campaigns, clock, settings.exposure_batch_ttl_s
        )
        app[EXPERIMENTS] = ExperimentRouter(
            app[REDIS], clock, settings.experiment_cache_ms, settings.redis_timeout_ms / 1000
        )
        stop = asyncio.Event()
        flushing = asyncio.create_task(
            abuse.keep_flushing(app[REDIS], clock, settings.abuse_flush_ms / 1000, stop)
        )
        yield
        stop.set()
        await flushing

    return open_counter


async def report_exposures(request: web.Request) -> web.Response:
    """Count a batch of views: ``{"viewerId", "views": [{"campaignId", "channel"}]}``."""
    if request.content_type != "application/json":
        return refusal(Reason.INVALID_REQUEST, "Content-Type must be application/json", status=415)
    body = await request.read()
    try:
        batch = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        return refusal(Reason.INVALID_REQUEST, str(exc), status=422)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return refusal(Reason.INVALID_REQUEST, f"body is not valid JSON: {exc}", status=400)
    most = request.app[SETTINGS].exposure_batch_max
    if len(batch.views) > most:
        return refusal(Reason.INVALID_REQUEST, f"at most {most} views per batch", status=422)
    try:
        answer = await request.app[EXPOSURES].count(batch)
    except (RedisError, OSError, TimeoutError):
        return refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
    return json_response(msgspec.to_builtins(answer))


async def stats(request: web.Request) -> web.Response:
    """The funnel of one campaign per channel and day (``?campaign=ID[&from=&to=]``).

    A question that cannot be answered (no campaign named, a date that does not exist) is
    422: the query is well formed HTTP, its values are not."""
    campaign_id = request.query.get("campaign", "")
    if not _CAMPAIGN_ID.fullmatch(campaign_id):
        return refusal(Reason.INVALID_REQUEST, "campaign: a campaign id is required", status=422)
    first, last = request.query.get("from", ""), request.query.get("to", "")
    if any(value and not _DATE.fullmatch(value) for value in (first, last)):
        return refusal(Reason.INVALID_REQUEST, "from, to: dates as YYYY-MM-DD", status=422)
    try:
        report = await funnel(
            request.config_dict[OPS].store.pool, campaign_id, first or None, last or None
        )
    except ValueError as exc:
        return refusal(Reason.INVALID_REQUEST, f"from, to: {exc}", status=422)
    except (asyncpg.PostgresError, OSError, TimeoutError):
        return refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
    if report is None:
        return refusal(Reason.UNKNOWN_CAMPAIGN)
    return json_response(msgspec.to_builtins(report))


#: This capability's operations, for the API document (``gateway/infra/openapi.py``).
OPERATIONS = [
    Operation(
        "POST",
        "/api/exposures",
        "Report views of campaigns (a batch per viewer); no token",
        "stats",
        ok=ExposureAnswer,
        body=ExposureBatch,
        refusals=[Reason.UNAVAILABLE],
        description="Views count on the campaign's current day (its time zone). Views of"
        " campaigns not published are ignored. A batchId sent again counts nothing.",
    ),
    Operation(
        "GET",
        "/admin/stats",
        "The funnel of a campaign per channel and day: exposures, claims, use",
        "stats",
        ok=FunnelReport,
        auth="admin",
        query={"campaign": CampaignId, "from": IsoDate, "to": IsoDate},
        refusals=[(Reason.INVALID_REQUEST, 422), Reason.UNKNOWN_CAMPAIGN, Reason.UNAVAILABLE],
    ),
]
