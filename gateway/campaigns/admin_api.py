"""The campaign part of the operators' API (``/admin/campaigns``).

Create and change campaigns (refused field by field when invalid), publish them to
Redis, pause, resume, top up, block users or devices, and read live counters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from gateway.campaigns.ops import CampaignOps, CampaignStateError
from gateway.campaigns.spec import MAX_CENTS, MAX_COUNT, Campaign, InvalidSpec, decode_spec
from gateway.campaigns.store import CampaignExists, CampaignNotFound
from gateway.identifiers import DeviceId, UserId
from gateway.infra.http import json_response, refusal
from gateway.reasons import Reason

OPS = web.AppKey("campaign_ops", CampaignOps)


class TopUp(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/campaigns/{id}/topup``."""

    stock: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 0
    budget_cents: Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)] = 0


class Block(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/campaigns/{id}/blocklist``."""

    users: list[UserId] = msgspec.field(default_factory=list)
    devices: list[DeviceId] = msgspec.field(default_factory=list)


def _campaign(campaign: Campaign, status: int = 200) -> web.Response:
    return json_response(msgspec.to_builtins(campaign), status)


async def _body(request: web.Request) -> bytes:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="Content-Type must be application/json")
    return await request.read()


def _decode(data: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidSpec([]) from exc


async def list_campaigns(request: web.Request) -> web.Response:
    """Every campaign, newest first."""
    campaigns = await request.config_dict[OPS].store.all()
    return json_response({"campaigns": [msgspec.to_builtins(c) for c in campaigns]})


async def create_campaign(request: web.Request) -> web.Response:
    """Store a new draft campaign."""
    spec = decode_spec(await _body(request))
    return _campaign(await request.config_dict[OPS].create(spec), 201)


async def show_campaign(request: web.Request) -> web.Response:
    """A campaign with its live counters."""
    return json_response(await request.config_dict[OPS].live(request.match_info["id"]))


async def update_campaign(request: web.Request) -> web.Response:
    """Change fields of a campaign (republished at once if live)."""
    try:
        changes = msgspec.json.decode(await _body(request))
    except msgspec.DecodeError as exc:
        raise InvalidSpec([]) from exc
    if not isinstance(changes, dict):
        raise InvalidSpec([])
    ops = request.config_dict[OPS]
    return _campaign(await ops.update(request.match_info["id"], changes))


def _action(
    run: Callable[[CampaignOps, str], Awaitable[Campaign]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _campaign(await run(request.config_dict[OPS], request.match_info["id"]))

    return handler


async def top_up(request: web.Request) -> web.Response:
    """Add stock and/or budget."""
    body: TopUp = _decode(await _body(request), TopUp)
    ops = request.config_dict[OPS]
    return _campaign(await ops.top_up(request.match_info["id"], body.stock, body.budget_cents))


async def block(request: web.Request) -> web.Response:
    """Block users and devices from a campaign."""
    body: Block = _decode(await _body(request), Block)
    ops = request.config_dict[OPS]
    return _campaign(await ops.block(request.match_info["id"], body.users, body.devices))


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Operator mistakes and outages as clear JSON refusals."""
    try:
        return await handler(request)
    except InvalidSpec as exc:
        cause = exc.__cause__
        errors = [msgspec.to_builtins(e) for e in exc.errors]
        message = str(cause) if cause is not None else str(exc) or "invalid body"
        return json_response(
            {
                "code": Reason.INVALID_REQUEST.code,
                "reason": Reason.INVALID_REQUEST.value,
                "message": message,
                "errors": errors,
            },
            422,
        )
    except CampaignNotFound as exc:
        return refusal(Reason.UNKNOWN_CAMPAIGN, f"no campaign {exc}")
    except CampaignExists as exc:
        return refusal(Reason.INVALID_REQUEST, f"campaign {exc} exists", status=409)
    except CampaignStateError as exc:
        return refusal(Reason.INVALID_REQUEST, str(exc), status=409)
    except (RedisError, asyncpg.PostgresError, OSError) as exc:
        return refusal(Reason.UNAVAILABLE, f"storage unavailable: {type(exc).__name__}")


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
