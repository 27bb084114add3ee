"""``flashclaim campaign …``: the operators' campaign commands, printing JSON.

Each command opens Redis and PostgreSQL for its length, runs one ``CampaignOps``
operation and prints the result as indented JSON on stdout (what the admin API answers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.spec import FieldError, InvalidSpec, decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import open_clients
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings

Operation = Callable[[CampaignOps], Awaitable[object]]


def print_json(result: object) -> None:
    """Print ``result`` (structs, lists, dicts) as indented JSON."""
    text = orjson.dumps(msgspec.to_builtins(result), option=orjson.OPT_INDENT_2).decode()
    print(text)


async def run(settings: Settings, operation: Operation) -> int:
    """Run one operation with clients of its own and print what it returns."""
    async with open_clients(settings) as opened:
        ops = CampaignOps(CampaignStore(opened.pool), opened.redis, SystemClock())
        print_json(await operation(ops))
    return 0


async def create(settings: Settings, spec_json: bytes) -> int:
    """Store a campaign from a JSON spec, as a draft."""
    spec = decode_spec(spec_json)
    return await run(settings, lambda ops: ops.create(spec))


async def update(settings: Settings, campaign_id: str, changes_json: bytes) -> int:
    """Change fields of a campaign (a JSON object of camelCase fields)."""
    try:
        changes = msgspec.json.decode(changes_json, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise InvalidSpec([FieldError("$", f"not a JSON object: {exc}")]) from None
    return await run(settings, lambda ops: ops.update(campaign_id, changes))


async def lifecycle(settings: Settings, action: str, campaign_id: str) -> int:
    """``publish``, ``pause``, ``resume`` or ``show`` one campaign."""
    method = "live" if action == "show" else action
    return await run(settings, lambda ops: getattr(ops, method)(campaign_id))


async def top_up(settings: Settings, campaign_id: str, stock: int, budget_cents: int) -> int:
    """Add stock and/or budget."""
    return await run(settings, lambda ops: ops.top_up(campaign_id, stock, budget_cents))


async def block(settings: Settings, campaign_id: str, users: list[str], devices: list[str]) -> int:
    """Block users and devices from a campaign."""
    return await run(settings, lambda ops: ops.block(campaign_id, users, devices))


async def listing(settings: Settings) -> int:
    """Every campaign, newest first."""
    return await run(settings, lambda ops: ops.store.all())
