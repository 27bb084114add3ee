"""The campaign part of the operators' API (``/admin/campaigns``).

Create and change campaigns (refused field by field when invalid), publish them to
Redis, pause, resume, top up, block users or devices, and read live counters. A path id
that cannot be a campaign id (a NUL, a slash, 65 characters) is answered 404
UNKNOWN_CAMPAIGN before any storage is asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from gateway.campaigns.ops import CampaignOps, CampaignStateError
from gateway.campaigns.spec import (
    MAX_CENTS,
    MAX_COUNT,
    Campaign,
    CampaignSpec,
    FieldError,
    InvalidSpec,
    decode_spec,
)
from gateway.campaigns.store import CampaignExists, CampaignNotFound
from gateway.identifiers import CAMPAIGN_ID_PATTERN, CampaignId, DeviceId, UserId
from gateway.infra.http import CLIENT_GONE, json_body, json_response, refusal
from gateway.infra.openapi import Operation, Refusal
from gateway.reasons import Reason

log = logging.getLogger(__name__)

OPS = web.AppKey("campaign_ops", CampaignOps)
_CAMPAIGN_ID = re.compile(CAMPAIGN_ID_PATTERN)


class TopUp(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/campaigns/{id}/topup``."""

    stock: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 0
    budget_cents: Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)] = 0


class Block(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/campaigns/{id}/blocklist``."""

    users: list[UserId] = msgspec.field(default_factory=list)
    devices: list[DeviceId] = msgspec.field(default_factory=list)


class CampaignList(msgspec.Struct):
    """Every campaign, newest first."""

    campaigns: list[Campaign]


class LiveCounters(msgspec.Struct, rename="camel"):
    """A published campaign's counters in Redis right now (zeros for a draft)."""

    published_status: str | None
    issued: int
    issued_today: int
    stock_remaining: int
    spent_cents: int
    budget_remaining_cents: int | None
    outbox_length: int


class LiveCampaign(Campaign, kw_only=True):
    """A campaign with its live counters."""

    live: LiveCounters


class InvalidFields(Refusal, kw_only=True):
    """A body refused field by field: one entry per broken rule."""

    errors: list[FieldError]


def campaign_id(request: web.Request) -> str:
    """The path's campaign id; one that cannot exist is not looked up (404)."""
    value = request.match_info["id"]
    if not _CAMPAIGN_ID.match(value):
        raise CampaignNotFound("with that id (ids match " + CAMPAIGN_ID_PATTERN + ")")
    return value


def _campaign(campaign: Campaign, status: int = 200) -> web.Response:
    return json_response(msgspec.to_builtins(campaign), status)


def decode_json(data: bytes, kind: Any = Any) -> Any:
    """Decode an admin body; anything wrong is an ``InvalidSpec`` (a 422 naming it)."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidSpec([]) from exc


async def list_campaigns(request: web.Request) -> web.Response:
    """Every campaign, newest first."""
    campaigns = await request.config_dict[OPS].store.all()
    return json_response({"campaigns": [msgspec.to_builtins(c) for c in campaigns]})


async def create_campaign(request: web.Request) -> web.Response:
    """Store a new draft campaign."""
    spec = decode_spec(await json_body(request))
    return _campaign(await request.config_dict[OPS].create(spec), 201)


async def show_campaign(request: web.Request) -> web.Response:
    """A campaign with its live counters."""
    return json_response(await request.config_dict[OPS].live(campaign_id(request)))


async def update_campaign(request: web.Request) -> web.Response:
    """Change fields of a campaign (republished at once if live)."""
    changes = decode_json(await json_body(request), dict[str, Any])
    ops = request.config_dict[OPS]
    return _campaign(await ops.update(campaign_id(request), changes))


def _action(
    run: Callable[[CampaignOps, str], Awaitable[Campaign]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _campaign(await run(request.config_dict[OPS], campaign_id(request)))

    return handler


async def top_up(request: web.Request) -> web.Response:
    """Add stock and/or budget."""
    body: TopUp = decode_json(await json_body(request), TopUp)
    ops = request.config_dict[OPS]
    return _campaign(await ops.top_up(campaign_id(request), body.stock, body.budget_cents))


async def block(request: web.Request) -> web.Response:
    """Block users and devices from a campaign."""
    body: Block = decode_json(await json_body(request), Block)
    ops = request.config_dict[OPS]
    return _campaign(await ops.block(campaign_id(request), body.users, body.devices))


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Operator mistakes and outages as clear JSON refusals."""
    try:
        return await handler(request)
    except InvalidSpec as exc:
        cause = exc.__cause__
        message = str(cause) if cause is not None else str(exc) or "invalid body"
        return _invalid_fields(message, exc.errors)
    except CampaignNotFound as exc:
        return refusal(Reason.UNKNOWN_CAMPAIGN, f"no campaign {exc}")
    except CampaignExists as exc:
        return refusal(Reason.INVALID_REQUEST, f"campaign {exc} exists", status=409)
    except CampaignStateError as exc:
        return refusal(Reason.INVALID_REQUEST, str(exc), status=409)
    except asyncpg.DataError as exc:  # a value validation let through: still the caller's
        log.warning("PostgreSQL refused a value of %s %s: %s", request.method, request.path, exc)
        return _invalid_fields(f"a value was refused: {exc}", [])
    except CLIENT_GONE:
        raise  # the client hung up mid-body: the edge counts it as the client error it is
    except (RedisError, asyncpg.PostgresError, OSError) as exc:
        return refusal(Reason.UNAVAILABLE, f"storage unavailable: {type(exc).__name__}")


def _invalid_fields(message: str, errors: list[FieldError]) -> web.Response:
    reason = Reason.INVALID_REQUEST
    body = InvalidFields(code=reason.code, reason=reason, message=message, errors=errors)
    return json_response(msgspec.to_builtins(body), 422)


def routes() -> list[web.RouteDef]:
    """The campaign routes of the admin API (mounted under ``/admin/``)."""
    return [
        web.get("/campaigns", list_campaigns),
        web.post("/campaigns", create_campaign),
        web.get("/campaigns/{id}", show_campaign),
        web.patch("/campaigns/{id}", update_campaign),
        web.post("/campaigns/{id}/publish", _action(lambda ops, cid: ops.publish(cid))),
        web.post("/campaigns/{id}/pause", _action(lambda ops, cid: ops.pause(cid))),
        web.post("/campaigns/{id}/resume", _action(lambda ops, cid: ops.resume(cid))),
        web.post("/campaigns/{id}/topup", top_up),
        web.post("/campaigns/{id}/blocklist", block),
    ]


#: The body of ``PATCH /admin/campaigns/{id}``: any fields of a spec (the result is
#: validated whole). For the API document; the handler merges the raw object.
CampaignChanges = msgspec.defstruct(
    "CampaignChanges",
    [
        (f.name, f.type | msgspec.UnsetType, msgspec.UNSET)
        for f in msgspec.structs.fields(CampaignSpec)
    ],
    rename="camel",
    forbid_unknown_fields=True,
    kw_only=True,
    namespace={"__doc__": "Fields of a campaign spec to change; the rest stay as they are."},
)

_ID = {"id": CampaignId}
_LOOKED_UP = [Reason.UNKNOWN_CAMPAIGN, Reason.UNAVAILABLE]
_INVALID = {422: InvalidFields}


def _admin(method: str, path: str, summary: str, **details: Any) -> Operation:
    details.setdefault("ok", Campaign)
    details.setdefault("refusal_bodies", _INVALID)
    if "{id}" in path:
        details.setdefault("params", _ID)
        details.setdefault("refusals", _LOOKED_UP)
    return Operation(method, f"/admin{path}", summary, "admin", auth="admin", **details)


_CHANGE_STATUS = [*_LOOKED_UP, (Reason.INVALID_REQUEST, 409)]

OPERATIONS = [
    _admin("GET", "/campaigns", "List campaigns, newest first", ok=CampaignList,
           refusals=[Reason.UNAVAILABLE]),
    _admin("POST", "/campaigns", "Create a draft campaign", ok_status=201, body=CampaignSpec,
           refusals=[(Reason.INVALID_REQUEST, 409), Reason.UNAVAILABLE]),
    _admin("GET", "/campaigns/{id}", "Show a campaign with its live counters", ok=LiveCampaign),
    _admin("PATCH", "/campaigns/{id}", "Change fields (republished at once when live)",
           body=CampaignChanges),
    _admin("POST", "/campaigns/{id}/publish", "Publish: claims are decided from now on",
           refusals=_CHANGE_STATUS),
    _admin("POST", "/campaigns/{id}/pause", "Pause: claims answer PAUSED",
           refusals=_CHANGE_STATUS),
    _admin("POST", "/campaigns/{id}/resume", "Resume after a pause", refusals=_CHANGE_STATUS),
    _admin("POST", "/campaigns/{id}/topup", "Add stock and/or budget", body=TopUp),
    _admin("POST", "/campaigns/{id}/blocklist", "Block users and devices", body=Block),
]  # fmt: skip
