"""Shared test data: campaign specs, tokens and claim bodies."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.spec import Campaign, decode_spec
from gateway.infra.auth import mint
from gateway.infra.settings import Settings, to_env
from gateway.stack.servers import wait_for_port

JWT_SECRET = "test-jwt-secret-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 11, 0, 0, tzinfo=SHANGHAI)
T0_MS = int(T0.timestamp() * 1000)
DAY_MS = 86_400_000
_ids = itertools.count()

#: Set (``make test-cluster``): the session's Redis is a local Redis Cluster.
ON_CLUSTER = os.environ.get("TEST_REDIS_CLUSTER", "") not in ("", "0")


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid campaign spec (cash-off 100 off 500, opening at T0), with overrides."""
    data: dict[str, Any] = {
        "id": f"d11-{next(_ids)}",
        "name": "Double 11: 100 off 500",
        "kind": "cash_off",
        "faceValueCents": 10_000,
        "thresholdCents": 50_000,
        "stock": 100,
        "perUserLimit": 1,
        "startsAt": T0.isoformat(),
        "endsAt": datetime(2026, 11, 14, tzinfo=SHANGHAI).isoformat(),
        "timeZone": "Asia/Shanghai",
        "validity": {"mode": "days_after_claim", "days": 7},
    }
    data.update(overrides)
    return data


async def published(ops: CampaignOps, **overrides: Any) -> Campaign:
    """Create and publish a campaign built by ``spec(**overrides)``."""
    campaign = await ops.create(decode_spec(spec(**overrides)))
    return await ops.publish(campaign.id)


def open_now() -> dict[str, str]:
    """Spec fields of a campaign open on the wall clock (for gateways in child processes)."""
    now = datetime.now(UTC)
    return {
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + timedelta(days=1)).isoformat(),
    }


def token(user: str, *, expires_ms: int = T0_MS + 30 * DAY_MS, **claims: Any) -> str:
    """A valid bearer token for ``user``."""
    return mint(JWT_SECRET, user, expires_s=expires_ms // 1000, **claims)


def auth(user: str, **claims: Any) -> dict[str, str]:
    """Headers of a request made by ``user``."""
    return {"Authorization": f"Bearer {token(user, **claims)}"}


_rids = itertools.count()


def body(
    campaign_id: str,
    *,
    request_id: str | None = None,
    device: str = "dev-1",
    channel: str = "seckill",
    city: str | None = None,
) -> dict[str, str]:
    """A claim body; a fresh requestId unless one is given."""
    data = {
        "campaignId": campaign_id,
        "requestId": request_id or f"req-{next(_rids):08d}",
        "deviceId": device,
        "channel": channel,
    }
    if city is not None:
        data["city"] = city
    return data


async def claim(
    client: TestClient[Any, Any], user: str, campaign_id: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """POST a claim; return (status, JSON body)."""
    claims = kwargs.pop("claims", {})
    response = await client.post(
        "/api/coupon/issue", json=body(campaign_id, **kwargs), headers=auth(user, **claims)
    )
    return response.status, await response.json()


async def snapshot(redis: Redis, campaign: Campaign) -> dict[str, Any]:
    """Everything a claim may write for ``campaign``: equal snapshots mean nothing changed."""
    keys = keys_of(campaign)
    state: dict[Any, Any] = {}
    for key in await redis.keys(f"{keys.base}*") + [keys.holds]:
        kind = await redis.type(key)
        if kind == "hash":
            state[key] = await redis.hgetall(key)
        elif kind == "string":
            state[key] = await redis.get(key)
        elif kind == "stream":
            state[key] = await redis.xlen(key)
        elif kind == "set":
            state[key] = await redis.smembers(key)
        elif kind == "list":
            state[key] = await redis.lrange(key, 0, -1)
    return state


def child_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment of a flashclaim child process running with ``settings``."""
    return {**os.environ, **to_env(msgspec.structs.replace(settings, **overrides))}


def flashclaim(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the ``flashclaim`` command in a child process with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def start_gateway(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    """``flashclaim serve`` in a child process (a session of its own, so ``os.killpg``
    reaches its workers too), once it listens on ``port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", env=env, start_new_session=True
    )
    await asyncio.to_thread(wait_for_port, port, 30)
    return process
