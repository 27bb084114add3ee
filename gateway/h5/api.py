"""The H5 claim page's routes: the page, its files, and the public campaign endpoint.

``GET /h5/{campaignId}`` is one constant HTML shell (the page reads the id from its own
address); ``GET /h5/static/{name}`` its CSS and ES modules, among them ``flashclaim.js``,
the claim client page developers may import too; ``GET /api/campaigns/{id}/public`` what
the page shows, cacheable for a second. None needs a token. The app hands the page its
token in the URL fragment (README, "The H5 claim page"), which never reaches the server.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from aiohttp import web

from gateway.h5 import assets
from gateway.h5.public import LOAD_ERRORS, PublicCampaign, PublicViews
from gateway.identifiers import CAMPAIGN_ID_PATTERN, LABEL_PATTERN, CampaignId, Label
from gateway.infra.http import JSON, refusal
from gateway.infra.openapi import Operation
from gateway.reasons import Reason

VIEWS = web.AppKey("public_views", PublicViews)

#: The channel a page claims with when its link names none.
DEFAULT_CHANNEL = "h5"

#: The public view may be kept this long by browsers and shared caches (a CDN in front
#: takes the herd's polls off the workers); the page corrects its clock by ``Age``.
PUBLIC_CACHE_CONTROL = "public, max-age=1"

_CAMPAIGN_ID = re.compile(CAMPAIGN_ID_PATTERN)
_CHANNEL = re.compile(LABEL_PATTERN)
_encoder = msgspec.json.Encoder()


def routes() -> list[web.RouteDef]:
    """The H5 page's routes."""
    return [
        web.get("/h5/static/{name}", static_file),
        web.get("/h5/{campaign_id}", claim_page),
        web.get("/api/campaigns/{campaign_id}/public", public_campaign),
    ]


def _valid(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.fullmatch(text) is not None  # fullmatch: ``$`` would let a "\n" through


async def claim_page(request: web.Request) -> web.Response:
    """The claim page of a campaign (404 with the same page for an id that cannot exist:
    the page then says there is no such campaign)."""
    status = 200 if _valid(_CAMPAIGN_ID, request.match_info["campaign_id"]) else 404
    return assets.send(request, assets.assets()[assets.PAGE], status)


async def static_file(request: web.Request) -> web.Response:
    """A file of the page: CSS or an ES module."""
    asset = assets.assets().get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    return assets.send(request, asset)


async def public_campaign(request: web.Request) -> web.Response:
    """Name, times, status, stock band, the channel's page copy and the rule text; no token."""
    channel = request.query.get("channel", DEFAULT_CHANNEL)
    if not _valid(_CHANNEL, channel):
        return refusal(Reason.INVALID_REQUEST, "channel: 1-32 of [a-z0-9_-]", status=400)
    campaign_id = request.match_info["campaign_id"]
    if not _valid(_CAMPAIGN_ID, campaign_id):
        return _cacheable(refusal(Reason.UNKNOWN_CAMPAIGN))
    try:
        view = await request.app[VIEWS].public(campaign_id, channel)
    except LOAD_ERRORS:
        return refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
    if view is None:
        return _cacheable(refusal(Reason.UNKNOWN_CAMPAIGN))
    return _cacheable(web.Response(body=_encoder.encode(view), content_type=JSON))


def _cacheable(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    return response


#: This capability's operations, for the API document (``gateway/infra/openapi.py``).
OPERATIONS = [
    Operation(
        "GET",
        "/api/campaigns/{campaign_id}/public",
        "What a campaign's page shows; no token; cacheable for a second",
        "h5",
        ok=PublicCampaign,
        params={"campaign_id": CampaignId},
        query={"channel": Label},
        refusals=[Reason.UNKNOWN_CAMPAIGN, (Reason.INVALID_REQUEST, 400), Reason.UNAVAILABLE],
    ),
    Operation(
        "GET",
        "/h5/{campaign_id}",
        "The H5 claim page (HTML); ?channel= picks the partner's copy",
        "h5",
        ok_media="text/html",
        params={"campaign_id": CampaignId},
        query={"channel": str},  # the page passes it on; the public endpoint checks it
        refusals=[Reason.UNKNOWN_CAMPAIGN],
        refusal_media={404: "text/html"},  # the same page, saying there is no such campaign
    ),
    Operation(
        "GET",
        "/h5/static/{name}",
        "The page's files; flashclaim.js is the claim client for page developers",
        "h5",
        ok_media=("text/css", "text/javascript", "image/svg+xml"),
        params={"name": Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.-]{1,64}$")]},
        refusals=[Reason.NOT_FOUND],
    ),
]
