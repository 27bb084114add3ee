"""Fixtures of the channels' tests: a claim service on the test clock, as a bind job or
an events consumer runs one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.claim.service import ClaimService
from gateway.infra import clients
from gateway.infra.clock import ManualClock
from gateway.infra.settings import Settings


@pytest.fixture
async def claims(
    settings: Settings, redis: Redis, clock: ManualClock
) -> AsyncIterator[ClaimService]:
    client = clients.claim_redis_client(settings)
    service = ClaimService(client, clock, settings)
    await service.detect_server()
    yield service
    await service.aclose()
    await client.aclose()


async def outbox_users(redis: Redis, outbox: str) -> list[str]:
    """The user of every accepted claim in a campaign's outbox."""
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(outbox)  # type: ignore[assignment]
    return [fields["user"] for _, fields in entries]
