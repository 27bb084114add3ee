"""The claim endpoint.

``POST /api/coupon/issue``: verify the bearer token, decode and validate the body, let
the ``ClaimService`` decide, answer with the reason's status and body. Nothing a client
sends can make it answer 500: every refusal has a reason.
"""

from __future__ import annotations

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from gateway.claim.service import ClaimRequest, ClaimService, Outcome
from gateway.infra import logs, metrics
from gateway.infra.auth import TokenError
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
from gateway.stats.routing import ExperimentRouter, Route

CLAIMS = web.AppKey("claims", ClaimService)
#: A/B experiments (gateway/stats/): a claim on a variant's campaign goes to the user's variant.
EXPERIMENTS = web.AppKey("experiments", ExperimentRouter)

_decoder = msgspec.json.Decoder(ClaimRequest)


class Accepted(msgspec.Struct, rename="camel"):
    """A coupon was claimed (or this requestId's claim is replayed: same coupon)."""

    code: int
    reason: Reason
    coupon_id: str
    expires_at: str  # RFC 3339 with the campaign's offset
    # In an A/B experiment: which one, and the user's variant (its campaign decided).
    experiment: str | msgspec.UnsetType = msgspec.UNSET
    variant: str | msgspec.UnsetType = msgspec.UNSET


_REFUSALS: list[Reason] = sorted(
    BUSINESS_REFUSALS | {Reason.UNKNOWN_CAMPAIGN, Reason.REQUEST_MISMATCH, Reason.UNAVAILABLE},
    key=lambda reason: reason.code,
)

OPERATIONS = [
    Operation(
        "POST",
        "/api/coupon/issue",
        "Claim a coupon",
        "claims",
        ok=Accepted,
        body=ClaimRequest,
        auth="user",
        refusals=_REFUSALS,
        description="The same requestId again answers the same coupon (header"
        " `Idempotent-Replayed: true`) and counts nothing twice.",
    )
]


def routes() -> list[web.RouteDef]:
    """The claim API's routes."""
    return [web.post("/api/coupon/issue", issue)]


async def issue(request: web.Request) -> web.Response:
    """Claim a coupon: ``{"campaignId", "requestId", "deviceId", "channel"}``."""
    app = request.app
    if (refused := app[PERSISTENCE].refusal) is not None:  # a Redis that would forget
        return _counted(refusal(Reason.UNAVAILABLE, refused), "", Reason.UNAVAILABLE)
    try:
        claimant = app[TOKENS].verify(request.headers.get("Authorization"))
    except TokenError as exc:
        return _counted(refusal(Reason.UNAUTHORIZED, str(exc)), "", Reason.UNAUTHORIZED)
    if request.content_type != "application/json":
        return _invalid("Content-Type must be application/json", 415)
    body = await request.read()  # over client_max_size: 413 via the middleware
    try:
        claim = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        return _invalid(str(exc), 422)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 inside a string
        return _invalid(f"body is not valid JSON: {exc}", 400)
    logs.bind(user=claimant.user_id, campaign=claim.campaign_id, claimRequestId=claim.request_id)
    route = await app[EXPERIMENTS].route(claim.campaign_id, claimant.user_id)
    if route is not None:
        claim = msgspec.structs.replace(claim, campaign_id=route.campaign_id)
    try:
        outcome = await app[CLAIMS].claim(claimant, claim, client_ip(request, app[SETTINGS]))
    except (RedisError, OSError) as exc:  # OSError covers our own batch TimeoutError
        metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
        logs.bind(error=repr(exc))  # on the edge's line about this 503
        outcome = Outcome(Reason.UNAVAILABLE, retry_after_s=1.0)
    campaign = "" if outcome.reason is Reason.UNKNOWN_CAMPAIGN else claim.campaign_id
    if outcome.replayed:
        metrics.REPLAYS.labels(campaign).inc()
    return _counted(answer(outcome, route), campaign, outcome.reason)


def answer(outcome: Outcome, route: Route | None = None) -> web.Response:
    """The answer to a decided claim, for every route that claims (the claim endpoint,
    redeem codes): the coupon, or the refusal with its reason (and an offer, if any)."""
    if outcome.offer:  # "holds A: offer B instead" (gateway/rules/)
        reason = outcome.reason
        return json_response(
            {
                "code": reason.code,
                "reason": reason.value,
                "message": reason.message,
                "offer": outcome.offer,
            },
            status=reason.status,
        )
    if outcome.reason is not Reason.ACCEPTED:
        return refusal(outcome.reason, retry_after_s=outcome.retry_after_s)
    body = {
        "code": 0,
        "reason": Reason.ACCEPTED.value,
        "couponId": outcome.coupon_id,
        "expiresAt": outcome.expires_at,
    }
    if route is not None:
        body["experiment"], body["variant"] = route.experiment_id, route.variant
    response = json_response(body)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _counted(response: web.Response, campaign: str, reason: Reason) -> web.Response:
    metrics.child(metrics.CLAIMS, campaign, reason.value).inc()
    abuse.TALLY.note(campaign, reason)  # abuse trends per day (gateway/stats/abuse.py)
    return response


def _invalid(message: str, status: int) -> web.Response:
    return _counted(
        refusal(Reason.INVALID_REQUEST, message, status=status), "", Reason.INVALID_REQUEST
    )
