"""The coupon rows of a load-test run, for scenario verdicts that hold answers against
PostgreSQL: ``python -m loadtests.rows PREFIX`` prints one JSON object per row of every
campaign whose id starts with PREFIX (``FLASHCLAIM_DATABASE_URL``).

A separate process: Locust runs under gevent, asyncpg under asyncio.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import asyncpg

from gateway.infra.settings import Settings


async def _rows(prefix: str) -> list[dict[str, Any]]:
    settings = Settings.from_env()
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT coupon_id::text AS coupon, campaign_id AS campaign, user_id AS user,"
            " request_id AS request, channel FROM coupons WHERE starts_with(campaign_id, $1)",
            prefix,
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


def fetch(prefix: str) -> list[dict[str, Any]]:
    """The rows, read by a child process (callable from a Locust listener)."""
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.rows", prefix],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def main() -> None:
    for row in asyncio.run(_rows(sys.argv[1])):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
