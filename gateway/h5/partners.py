"""Page set-up for partners (渠道合作): a campaign's H5 link per channel, and its QR code.

The copy and header image live in the campaign spec (``pages``, see
``gateway/campaigns/pages.py``), set like any field (``PATCH /admin/campaigns/{id}``).
Here operators get what they hand a partner: the page's link for the partner's channel
(on ``FLASHCLAIM_PUBLIC_BASE_URL``), the copy it will show, and a QR code of the link as
SVG (posters, any size) or PNG (chat apps), drawn by segno.
"""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Literal

import msgspec
import segno
from aiohttp import web

from gateway.campaigns.admin_api import OPS, InvalidFields
from gateway.campaigns.commands import run
from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.pages import PageCopy
from gateway.campaigns.spec import Campaign, FieldError, InvalidSpec
from gateway.campaigns.store import CampaignNotFound
from gateway.h5.api import DEFAULT_CHANNEL
from gateway.identifiers import CAMPAIGN_ID_PATTERN, LABEL_PATTERN, CampaignId, Label
from gateway.infra.http import SETTINGS, json_response
from gateway.infra.openapi import Answer, Operation
from gateway.infra.settings import Settings
from gateway.reasons import Reason

#: QR code formats: file suffix -> media type.
QR_KINDS = {"svg": "image/svg+xml", "png": "image/png"}

_CHANNEL = re.compile(LABEL_PATTERN)
_CAMPAIGN_ID = re.compile(CAMPAIGN_ID_PATTERN)


class PageLink(msgspec.Struct, rename="camel", frozen=True):
    """A campaign's page for one channel: where it is and what it shows."""

    campaign_id: str
    channel: str
    url: str
    page: PageCopy  # as the page shows it: the channel's copy over the default's


def base_url(settings: Settings) -> str:
    """Where users reach the gateway: the setting, else this host and port (local runs)."""
    return (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def page_link(campaign: Campaign, channel: str, base: str) -> PageLink:
    """The page of ``campaign`` for ``channel``; ``InvalidSpec`` if the channel is malformed
    or one the campaign does not take claims from (its claims would be NOT_ELIGIBLE)."""
    if _CHANNEL.fullmatch(channel) is None:
        raise InvalidSpec([FieldError("channel", "must be 1-32 of [a-z0-9_-]")])
    if campaign.channels and channel not in campaign.channels:
        allowed = ", ".join(campaign.channels)
        raise InvalidSpec([FieldError("channel", f"the campaign takes claims from {allowed}")])
    page = campaign.pages.titled_copy_for(channel, campaign.name)
    url = f"{base}/h5/{campaign.id}?channel={channel}"
    return PageLink(campaign_id=campaign.id, channel=channel, url=url, page=page)


def qr_code(text: str, kind: str) -> bytes:
    """A QR code of ``text`` as SVG or PNG. Error correction M: a poster may get smudged."""
    code = segno.make(text, error="m")
    out = io.BytesIO()
    code.save(out, kind=kind, scale=4 if kind == "svg" else 10, border=4)
    return out.getvalue()


async def _link(ops: CampaignOps, campaign_id: str, channel: str, base: str) -> PageLink:
    if _CAMPAIGN_ID.fullmatch(campaign_id) is None:
        raise CampaignNotFound(campaign_id)  # before the database: NUL, huge, odd bytes
    return page_link(await ops.store.get(campaign_id), channel, base)


async def _request_link(request: web.Request) -> PageLink:
    channel = request.query.get("channel", DEFAULT_CHANNEL)
    base = base_url(request.config_dict[SETTINGS])
    return await _link(request.config_dict[OPS], request.match_info["id"], channel, base)


async def page_setup(request: web.Request) -> web.Response:
    """``GET /admin/campaigns/{id}/page?channel=C``: the link, the copy, where the QR is."""
    link = await _request_link(request)
    qr = {
        kind: f"/admin/campaigns/{link.campaign_id}/page/qr.{kind}?channel={link.channel}"
        for kind in QR_KINDS
    }
    return json_response(msgspec.to_builtins(PageSetup(**msgspec.structs.asdict(link), qr=qr)))


async def page_qr(request: web.Request) -> web.Response:
    """``GET /admin/campaigns/{id}/page/qr.svg|png?channel=C``: the link as a QR code."""
    kind = request.match_info["kind"]
    link = await _request_link(request)
    return web.Response(body=qr_code(link.url, kind), content_type=QR_KINDS[kind])


def admin_routes() -> list[web.RouteDef]:
    """The partner set-up routes of the admin API (mounted under ``/admin/``)."""
    return [
        web.get("/campaigns/{id}/page", page_setup),
        web.get("/campaigns/{id}/page/qr.{kind:svg|png}", page_qr),
    ]


async def command(settings: Settings, campaign_id: str, channel: str, qr_path: str) -> int:
    """``flashclaim campaign page ID --channel C [--qr out.svg|out.png]``: print the link
    and copy as JSON; write the QR code when asked (its format from the file's suffix)."""
    kind = Path(qr_path).suffix.lstrip(".").lower() if qr_path else ""
    if qr_path and kind not in QR_KINDS:
        raise InvalidSpec([FieldError("qr", "the file name must end in .svg or .png")])

    async def operation(ops: CampaignOps) -> PageLink:
        link = await _link(ops, campaign_id, channel, base_url(settings))
        if qr_path:
            await asyncio.to_thread(Path(qr_path).write_bytes, qr_code(link.url, kind))
        return link

    return await run(settings, operation)


class PageSetup(PageLink, frozen=True, kw_only=True):
    """A campaign's page for one channel, with where its QR codes are."""

    qr: dict[str, str]  # kind (svg, png): the admin path of the QR code


_CHANNEL_QUERY = {"channel": Label}
_CHANNEL_REFUSALS: list[Answer] = [
    Reason.UNKNOWN_CAMPAIGN,
    (Reason.INVALID_REQUEST, 422),
    Reason.UNAVAILABLE,
]

#: This capability's admin operations, for the API document (``gateway/infra/openapi.py``).
OPERATIONS = [
    Operation(
        "GET",
        "/admin/campaigns/{id}/page",
        "A campaign's H5 page for a channel: link, copy, QR code locations",
        "admin",
        ok=PageSetup,
        auth="admin",
        params={"id": CampaignId},
        query=_CHANNEL_QUERY,
        refusals=_CHANNEL_REFUSALS,
        refusal_bodies={422: InvalidFields},
    ),
    Operation(
        "GET",
        "/admin/campaigns/{id}/page/qr.{kind}",
        "The page's link as a QR code (kind: svg or png)",
        "admin",
        ok_media=tuple(QR_KINDS.values()),
        auth="admin",
        params={"id": CampaignId, "kind": Literal["svg", "png"]},
        query=_CHANNEL_QUERY,
        refusals=_CHANNEL_REFUSALS,
        refusal_bodies={422: InvalidFields},
    ),
]
