"""The channels' public routes: redeem a code, a sky-drop open, events from services.

``POST /api/coupon/redeem`` (a user's token) answers like the claim endpoint, with the
code's reasons added; ``POST /api/skydrop/open`` (a user's token) answers what fell;
``POST /api/events`` (``FLASHCLAIM_EVENTS_TOKEN``) answers what the event granted.
"""

from __future__ import annotations

import hmac
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from gateway.channels.grants import Event, EventGrants, Skydrop, SkydropOpen, Triggers
from gateway.channels.redeem import Redeemer, RedeemRequest
from gateway.claim.api import Accepted, answer
from gateway.claim.service import Outcome
from gateway.infra import logs, metrics
from gateway.infra.auth import Claimant, TokenError
from gateway.infra.http import (
    PERSISTENCE,
    SETTINGS,
    TOKENS,
    client_ip,
    json_response,
    refusal,
)
from gateway.infra.openapi import Operation
from gateway.reasons import BUSINESS_REFUSALS, Reason
from gateway.stats import abuse

REDEEMER = web.AppKey("redeemer", Redeemer)
TRIGGERS = web.AppKey("triggers", Triggers)

_REDEEM_REFUSALS = sorted(
    BUSINESS_REFUSALS
    | {Reason.REQUEST_MISMATCH, Reason.UNAVAILABLE, Reason.CODE_INVALID, Reason.CODE_LOCKED}
    | {Reason.CODE_MISTYPED},
    key=lambda reason: reason.code,
)

OPERATIONS = [
    Operation(
        "POST", "/api/coupon/redeem", "Redeem a code for its campaign's coupon", "channels",
        ok=Accepted, body=RedeemRequest, auth="user", refusals=_REDEEM_REFUSALS,
        description="A code works once; the same requestId again answers the same coupon."
        " A code nobody issued and one already used both answer CODE_INVALID; too many of"
        " those lock the user, device or IP out (CODE_LOCKED, with Retry-After).",
    ),
    Operation(
        "POST", "/api/skydrop/open", "The app opened: claim what may fall now", "channels",
        ok=Skydrop, body=SkydropOpen, auth="user",
        refusals=[Reason.RATE_LIMITED, Reason.UNAVAILABLE],
        description="Retrying an open with the same requestId answers the same coupons.",
    ),
    Operation(
        "POST", "/api/events", "An event about a user: grant what its rules say", "channels",
        ok=EventGrants, body=Event, auth="service", refusals=[Reason.UNAVAILABLE],
        description="Each event id grants at most once per rule (also when it arrives"
        " again, or on the events topic as well).",
    ),
]  # fmt: skip

_redeem_body = msgspec.json.Decoder(RedeemRequest)
_open_body = msgspec.json.Decoder(SkydropOpen)
_event_body = msgspec.json.Decoder(Event)


def routes() -> list[web.RouteDef]:
    """The channels' public routes."""
    return [
        web.post("/api/coupon/redeem", redeem),
        web.post("/api/skydrop/open", skydrop_open),
        web.post("/api/events", event),
    ]


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _decode(request: web.Request, decoder: msgspec.json.Decoder[Any]) -> Any:
    if request.content_type != "application/json":
        raise _Refused(_invalid("Content-Type must be application/json", 415))
    body = await request.read()
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _Refused(_invalid(str(exc), 422)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _Refused(_invalid(f"body is not valid JSON: {exc}", 400)) from None


def _user(request: web.Request) -> Claimant:
    if (refused := request.app[PERSISTENCE].refusal) is not None:
        raise _Refused(refusal(Reason.UNAVAILABLE, refused))
    try:
        return request.app[TOKENS].verify(request.headers.get("Authorization"))
    except TokenError as exc:
        raise _Refused(refusal(Reason.UNAUTHORIZED, str(exc))) from None


async def redeem(request: web.Request) -> web.Response:
    """Redeem a code: ``{"code", "requestId", "deviceId"}``."""
    try:
        claimant = _user(request)
        body: RedeemRequest = await _decode(request, _redeem_body)
    except _Refused as refused:
        return refused.response
    logs.bind(user=claimant.user_id, claimRequestId=body.request_id)
    try:
        outcome = await request.app[REDEEMER].redeem(
            claimant, body, client_ip(request, request.app[SETTINGS])
        )
    except (RedisError, OSError) as exc:
        metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
        logs.bind(error=repr(exc))
        outcome = Outcome(Reason.UNAVAILABLE, retry_after_s=1.0)
    metrics.child(metrics.CLAIMS, "", outcome.reason.value).inc()
    abuse.TALLY.note("", outcome.reason)  # code guessing, for the health report
    return answer(outcome)


async def skydrop_open(request: web.Request) -> web.Response:
    """The app opened: ``{"requestId", "deviceId", "channel", "city"}``."""
    try:
        claimant = _user(request)
        body: SkydropOpen = await _decode(request, _open_body)
    except _Refused as refused:
        return refused.response
    logs.bind(user=claimant.user_id, claimRequestId=body.request_id)
    try:
        fell = await request.app[TRIGGERS].on_open(
            claimant, body, client_ip(request, request.app[SETTINGS])
        )
    except (RedisError, asyncpg.PostgresError, OSError) as exc:
        logs.bind(error=repr(exc))
        return refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
    return json_response(msgspec.to_builtins(fell))


async def event(request: web.Request) -> web.Response:
    """An event from a service (bearer ``FLASHCLAIM_EVENTS_TOKEN``)."""
    expected = request.app[SETTINGS].events_token
    given = request.headers.get("Authorization", "")
    if not expected or not hmac.compare_digest(
        given.encode(errors="replace"), f"Bearer {expected}".encode()
    ):
        return refusal(Reason.UNAUTHORIZED, "the events token is required")
    try:
        body: Event = await _decode(request, _event_body)
    except _Refused as refused:
        return refused.response
    try:
        granted = await request.app[TRIGGERS].on_event(body)
    except (RedisError, asyncpg.PostgresError, OSError) as exc:
        logs.bind(error=repr(exc))
        return refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
    return json_response(msgspec.to_builtins(granted))


def _invalid(message: str, status: int) -> web.Response:
    return refusal(Reason.INVALID_REQUEST, message, status=status)
