"""HTTP plumbing every capability shares: JSON answers, the error middleware, the
admin token check, and the application keys of shared objects.

Whatever goes wrong in a request, the client gets ``{"code", "reason", "message"}``
with a fitting status: aiohttp's own HTTP errors (404, 405, 413, ...) are re-rendered,
and anything unexpected becomes a logged 500 INTERNAL, never a stack trace. The same
middleware times every request for ``http_server_request_duration_seconds``.
"""

from __future__ import annotations

import hmac
import logging
import math
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio import Redis

from gateway.infra import metrics
from gateway.infra.auth import TokenVerifier
from gateway.infra.settings import Settings
from gateway.reasons import REFUSAL_BODIES, Reason, refusal_body

log = logging.getLogger(__name__)

JSON = "application/json"

SETTINGS = web.AppKey("settings", Settings)
TOKENS = web.AppKey("tokens", TokenVerifier)
REDIS = web.AppKey("redis", Redis)
READY = web.AppKey("ready", dict[str, bool])
ADMIN_TOKEN = web.AppKey("admin_token", str)

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

_HTTP_REASONS = {
    400: Reason.INVALID_REQUEST,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.INVALID_REQUEST,
    415: Reason.INVALID_REQUEST,
    422: Reason.INVALID_REQUEST,
}


def refusal(
    reason: Reason,
    message: str | None = None,
    *,
    status: int | None = None,
    retry_after_s: float = 0.0,
) -> web.Response:
    """A refusal of ``reason`` (status from the reason unless given)."""
    body = REFUSAL_BODIES[reason] if message is None else refusal_body(reason, message)
    response = web.Response(body=body, status=status or reason.status, content_type=JSON)
    if retry_after_s > 0:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response


def json_response(data: object, status: int = 200) -> web.Response:
    """Any JSON document."""
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as JSON and time every request."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        reason = _HTTP_REASONS.get(exc.status, Reason.INVALID_REQUEST)
        response = refusal(reason, exc.reason if exc.status != 404 else None, status=exc.status)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        response = refusal(Reason.INTERNAL)
    route = request.match_info.route.resource
    metrics.child(
        metrics.REQUEST_SECONDS,
        request.method if request.method in _METHODS else "other",
        route.canonical if route is not None else "unmatched",
        response.status,
    ).observe(time.perf_counter() - started)
    return response


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only callers with the admin token pass (compared in constant time)."""
    expected = f"Bearer {request.config_dict[ADMIN_TOKEN]}"
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return refusal(Reason.UNAUTHORIZED, "a valid admin bearer token is required")
    return await handler(request)
