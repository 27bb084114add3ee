"""HTTP plumbing every capability shares: JSON answers, the edge middleware, the admin
token check, and the application keys of shared objects.

Whatever goes wrong in a request, the client gets ``{"code", "reason", "message"}``
with a fitting status:

* aiohttp's own HTTP errors (404, 405, 413, ...) are re-rendered as JSON;
* a body that cannot be read (bad chunking, bad compression) is 400 INVALID_REQUEST;
* a client that hangs up mid-request gets nothing (nobody is listening) and is counted
  with status 499 (``Reason.CLIENT_CLOSED``): a client error, logged without traceback;
* anything unexpected becomes a logged 500 INTERNAL, never a stack trace to the client.

Requests aiohttp cannot even parse never reach a middleware: ``gateway/infra/protocol.py``
answers those. The edge middleware also gives each request its ``X-Request-Id`` (echoed,
and on every log line of the request), answers CORS preflights and decorates answers for
allowed origins, logs every 5xx with the request's fields (at most a line a second per
route and status), and times every request for ``http_server_request_duration_seconds``.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import istr
from redis.asyncio import Redis

from gateway.infra import logs, metrics
from gateway.infra.auth import TokenVerifier
from gateway.infra.persistence import PersistenceGuard
from gateway.infra.settings import Settings
from gateway.reasons import REFUSAL_BODIES, SERVER_SIDE, Reason, refusal_body

if TYPE_CHECKING:
    from gateway.infra.cors import CorsPolicy

log = logging.getLogger(__name__)
_throttled = logs.Throttle(log)

JSON = "application/json"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = istr(REQUEST_ID_HEADER)  # a ready key: no case folding per response

SETTINGS = web.AppKey("settings", Settings)
TOKENS = web.AppKey("tokens", TokenVerifier)
REDIS = web.AppKey("redis", Redis)
READY = web.AppKey("ready", dict[str, bool])
ADMIN_TOKEN = web.AppKey("admin_token", str)
PERSISTENCE = web.AppKey("persistence", PersistenceGuard)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

_HTTP_REASONS = {
    400: Reason.INVALID_REQUEST,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.INVALID_REQUEST,
    415: Reason.INVALID_REQUEST,
    422: Reason.INVALID_REQUEST,
    431: Reason.HEADERS_TOO_LARGE,
}

#: What a handler sees when its client hangs up before the request is whole.
CLIENT_GONE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def refusal(
    reason: Reason,
    message: str | None = None,
    *,
    status: int | None = None,
    retry_after_s: float = 0.0,
) -> web.Response:
    """A refusal of ``reason`` (status from the reason unless given).

    With ``retry_after_s`` the client learns when to come back twice: ``Retry-After`` in
    whole seconds (rounded up, for proxies and HTTP clients) and ``retryAfterMs`` in the
    body (exact, for a page's countdown).
    """
    if retry_after_s > 0:
        body = refusal_body(reason, message, retry_after_ms=math.ceil(retry_after_s * 1000))
    elif message is None:
        body = REFUSAL_BODIES[reason]
    else:
        body = refusal_body(reason, message)
    response = web.Response(body=body, status=status or reason.status, content_type=JSON)
    if retry_after_s > 0:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    if reason in SERVER_SIDE:
        logs.bind(reason=reason.value, detail=message or reason.message)
    return response


def json_response(data: object, status: int = 200) -> web.Response:
    """Any JSON document."""
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


def edge_middleware(cors: CorsPolicy | None = None) -> Middleware:
    """The outermost middleware of the gateway (see the module's docstring). It runs for
    every claim of a herd, so its common path is a handful of plain operations (a couple
    of microseconds; README: Logs, for how that was measured)."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = logs.start_request(request.headers.get(REQUEST_ID_HEADER))
        if cors is not None and cors.is_preflight(request):
            response: web.StreamResponse = cors.preflight(request)
        else:
            try:
                response = await handler(request)
            except Exception as exc:
                response = _failure(request, exc)
            if cors is not None:
                cors.decorate(request, response)
        response.headers[_REQUEST_ID] = request_id
        route = _route(request)
        status = response.status
        if status >= 500:
            _throttled.warning(
                f"{route} {status}", "%s %s answered %d", request.method, route, status
            )
        metrics.child(
            metrics.REQUEST_SECONDS,
            request.method if request.method in METHODS else "other",
            route,
            status,
        ).observe(time.perf_counter() - started)
        return response

    return edge


def _failure(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON refusal for what a handler raised."""
    if isinstance(exc, web.HTTPException):
        reason = _HTTP_REASONS.get(exc.status, Reason.INVALID_REQUEST)
        response = refusal(reason, exc.reason if exc.status != 404 else None, status=exc.status)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    if isinstance(exc, CLIENT_GONE):
        log.debug("client closed the connection mid-request")
        return refusal(Reason.CLIENT_CLOSED)  # nobody reads it; the metric counts it
    if isinstance(exc, web.RequestPayloadError):
        return refusal(Reason.INVALID_REQUEST, f"the body could not be read: {exc}")
    log.error("unexpected error answering %s %s", request.method, request.path, exc_info=exc)
    return refusal(Reason.INTERNAL)


def _route(request: web.Request) -> str:
    """The route template (bounded label values), ``unmatched`` for unknown paths."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Kept for callers of the earlier name: the edge middleware without CORS.
error_middleware = edge_middleware()


#: Admin bodies may be larger than a claim's (a spec with many channels' page copy); only
#: once the caller has shown the admin token.
ADMIN_MAX_BODY_BYTES = 1 << 20


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only callers with the admin token pass (compared in constant time).

    Header values may carry any bytes a client sent (aiohttp keeps what is not UTF-8 as
    surrogate escapes), so both sides are compared as the bytes they came as.
    """
    expected = f"Bearer {request.config_dict[ADMIN_TOKEN]}".encode()
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected):
        return refusal(Reason.UNAUTHORIZED, "a valid admin bearer token is required")
    return await handler(request.clone(client_max_size=ADMIN_MAX_BODY_BYTES))


def client_ip(request: web.Request, settings: Settings) -> str:
    """The client's address: the first ``X-Forwarded-For`` hop when the deployment says its
    proxy sets it (``FLASHCLAIM_TRUST_FORWARDED_FOR``), else the socket's peer. Rate caps
    and lockouts per IP key on it."""
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
    return request.remote or ""


async def json_body(request: web.Request) -> bytes:
    """The request's body, refused (415, answered as JSON by the edge) unless it says it is
    JSON: a form post or a stray upload never reaches a decoder."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="Content-Type must be application/json")
    return await request.read()
