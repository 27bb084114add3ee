"""The operators' coupon routes (``/admin/...``): void one coupon, or every unused coupon of
a campaign (作废 / 提前终止), with a reason kept in the audit trail."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from gateway.identifiers import CampaignId
from gateway.infra.http import json_response, refusal
from gateway.infra.openapi import Operation
from gateway.reasons import Reason
from gateway.redemption.api import REDEMPTION
from gateway.redemption.cart import CouponId, normal_coupon_id
from gateway.redemption.operators import void_coupons


class Void(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Why the coupons are voided (kept with each coupon and in its audit event)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class Voided(msgspec.Struct, rename="camel"):
    """How many coupons were voided (only unused ones are)."""

    code: int
    voided: int


_decoder = msgspec.json.Decoder(Void)


async def _voided(request: web.Request, **target: str) -> web.Response:
    try:
        body = _decoder.decode(await request.read())
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        return refusal(Reason.INVALID_REQUEST, f"body: {exc}", status=422)
    r = request.config_dict[REDEMPTION]
    count = await void_coupons(r.pool, r.clock.now_ms(), body.reason, **target)
    return json_response({"code": 0, "voided": count})


async def void_coupon(request: web.Request) -> web.Response:
    """Void one coupon, if it is unused."""
    try:
        coupon = msgspec.convert(request.match_info["coupon_id"], CouponId)
    except msgspec.ValidationError:
        return refusal(Reason.COUPON_NOT_FOUND)
    return await _voided(request, coupon_id=normal_coupon_id(coupon))


async def void_campaign_coupons(request: web.Request) -> web.Response:
    """Void every unused coupon of a campaign."""
    try:
        campaign = msgspec.convert(request.match_info["id"], CampaignId)
    except msgspec.ValidationError:
        return refusal(Reason.UNKNOWN_CAMPAIGN)
    return await _voided(request, campaign_id=campaign)


def routes() -> list[web.RouteDef]:
    """Mounted under ``/admin/``."""
    return [
        web.post("/coupons/{coupon_id}/void", void_coupon),
        web.post("/campaigns/{id}/void-coupons", void_campaign_coupons),
    ]


OPERATIONS = [
    Operation("POST", "/admin/coupons/{coupon_id}/void", "Void one coupon (if unused)", "admin",
              ok=Voided, body=Void, auth="admin", params={"coupon_id": CouponId},
              refusals=[Reason.COUPON_NOT_FOUND, Reason.UNAVAILABLE]),
    Operation("POST", "/admin/campaigns/{id}/void-coupons",
              "Void every unused coupon of a campaign (作废 / 提前终止)", "admin", ok=Voided,
              body=Void, auth="admin", params={"id": CampaignId},
              refusals=[Reason.UNKNOWN_CAMPAIGN, Reason.UNAVAILABLE]),
]  # fmt: skip
