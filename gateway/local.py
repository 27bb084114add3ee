"""``flashclaim up``: a working local gateway in one command.

Uses the Redis at ``FLASHCLAIM_REDIS_URL`` if one answers there, else starts a
``redis-server`` (AOF on, ``appendfsync everysec``) with its data under ``var/``;
creates the PostgreSQL database and applies migrations; publishes a demo campaign that
is open now; prints a ready-to-paste claim command; then runs the gateway workers in the
foreground. Ctrl-C stops the workers, then the Redis it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import redis as sync_redis

from gateway import db
from gateway.app import redis_client
from gateway.auth import mint
from gateway.campaign import decode_spec
from gateway.campaign_ops import CampaignOps
from gateway.campaign_store import CampaignExists, CampaignStore
from gateway.clock import SystemClock
from gateway.serve import Supervisor
from gateway.settings import Settings

DEMO_CAMPAIGN = "demo-seckill"


class StartError(RuntimeError):
    """Something the local stack needs cannot be started; the message says how to fix it."""


def ensure_redis(settings: Settings, data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Return a redis-server process started here, or None if one already answers."""
    url = urlparse(settings.redis_url)
    client = sync_redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.5)
    try:
        client.ping()
        return None
    except sync_redis.exceptions.ConnectionError:
        pass
    finally:
        client.close()
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartError(
            f"no Redis answers at {settings.redis_url} and redis-server is not installed:"
            " apt-get install redis-server, or set FLASHCLAIM_REDIS_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(url.port or 6379),
            "--bind",
            url.hostname or "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        time.sleep(0.05)
        if process.poll() is not None:
            raise StartError(f"redis-server exited at once: is port {url.port} taken?")
        try:
            sync_redis.Redis.from_url(settings.redis_url).ping()
            return process
        except sync_redis.exceptions.ConnectionError:
            continue
    process.terminate()
    raise StartError(f"redis-server did not answer at {settings.redis_url}")


async def prepare(settings: Settings) -> None:
    """Create the database, apply migrations, publish the demo campaign (open now)."""
    try:
        await db.ensure_database(settings.database_url)
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartError(
            f"PostgreSQL at {settings.database_url} is not reachable ({exc}):"
            " start it, or set FLASHCLAIM_DATABASE_URL"
        ) from exc
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    pool = await db.create_pool(settings.database_url, max_size=2)
    redis = redis_client(settings)
    try:
        ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
        now = datetime.now(UTC)
        spec = decode_spec(
            {
                "id": DEMO_CAMPAIGN,
                "name": "Demo seckill: 10 off 50",
                "kind": "cash_off",
                "faceValueCents": 1000,
                "thresholdCents": 5000,
                "stock": 10_000,
                "perUserLimit": 1,
                "startsAt": (now - timedelta(minutes=1)).isoformat(),
                "endsAt": (now + timedelta(days=30)).isoformat(),
                "validity": {"mode": "days_after_claim", "days": 7},
            }
        )
        with contextlib.suppress(CampaignExists):
            await ops.create(spec)
        await ops.publish(DEMO_CAMPAIGN)
    finally:
        await pool.close()
        await redis.aclose()


def claim_command(settings: Settings) -> str:
    """A curl command that claims the demo coupon as a fresh demo user."""
    user = f"demo-{uuid.uuid4().hex[:8]}"
    token = mint(settings.jwt_secret, user, expires_s=int(time.time()) + 86_400)
    body = (
        f'{{"campaignId":"{DEMO_CAMPAIGN}","requestId":"{uuid.uuid4().hex}",'
        f'"deviceId":"{user}-phone","channel":"seckill"}}'
    )
    return (
        f"curl -s -X POST http://{settings.host}:{settings.port}/api/coupon/issue"
        f" -H {shlex.quote('Authorization: Bearer ' + token)}"
        f" -H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def up(settings: Settings, data_dir: Path) -> int:
    """Start the local stack and serve until Ctrl-C."""
    redis_process = ensure_redis(settings, data_dir / "redis")
    try:
        asyncio.run(prepare(settings))
        base = f"http://{settings.host}:{settings.port}"
        print(
            f"\nflashclaim is starting: {settings.workers} workers\n"
            f"  claim endpoint  {base}/api/coupon/issue\n"
            f"  metrics         {base}/metrics\n"
            f"  admin API       {base}/admin/campaigns  (Bearer $FLASHCLAIM_ADMIN_TOKEN)\n"
            f"\nClaim the demo coupon:\n  {claim_command(settings)}\n",
            flush=True,
        )
        return Supervisor(settings).run()
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)
