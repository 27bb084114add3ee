"""``flashclaim``: run the gateway and operate campaigns from a shell.

    flashclaim up                        local stack: Redis if needed, migrations, demo, gateway
    flashclaim serve                     the gateway, FLASHCLAIM_WORKERS processes
    flashclaim relay                     move accepted claims from the outboxes to Kafka
    flashclaim consumer                  persist claims from Kafka into PostgreSQL
    flashclaim reconcile                 Redis vs outbox vs Kafka vs PostgreSQL (exit 1: drift)
    flashclaim recover [ID ...]          rebuild Redis state from PostgreSQL + outbox
    flashclaim migrate                   create the database if needed, apply migrations
    flashclaim campaign create FILE      store a campaign (JSON spec; - for stdin)
    flashclaim campaign update ID FILE   change fields of a campaign
    flashclaim campaign publish|pause|resume|show ID
    flashclaim campaign topup ID --stock N --budget-cents N
    flashclaim campaign block ID --user U --device D
    flashclaim campaign list
    flashclaim token USER                mint a bearer token (demos, load tests)

Configuration comes from ``FLASHCLAIM_*`` variables (see ``gateway/settings.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import orjson

from gateway import logs
from gateway.campaign_store import CampaignStore
from gateway.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flashclaim`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(**_overrides(args))
    except ConfigError as exc:
        print(f"flashclaim: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return int(args.run(settings, args) or 0)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {
        name: getattr(args, name)
        for name in ("workers", "port", "host")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "redis_port", None):
        overrides["redis_url"] = f"redis://127.0.0.1:{args.redis_port}/0"
    if getattr(args, "kafka_port", None):
        overrides["kafka_bootstrap"] = f"127.0.0.1:{args.kafka_port}"
    return overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashclaim", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (several worker processes)")
    serve.add_argument("--workers", type=int)
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.set_defaults(run=_serve)

    up = commands.add_parser("up", help="local stack: Redis if needed, migrations, demo, gateway")
    up.add_argument("--workers", type=int)
    up.add_argument("--port", type=int)
    up.add_argument("--host")
    up.add_argument("--data-dir", default="var", help="where started servers keep their data")
    up.add_argument("--redis-port", type=int, help="Redis to use or start on 127.0.0.1")
    up.add_argument("--kafka-port", type=int, help="Kafka to use or start on 127.0.0.1")
    up.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="run a PostgreSQL of its own under the data dir, even if one is configured",
    )
    up.set_defaults(run=_up)

    relay = commands.add_parser("relay", help="relay outboxes to Kafka until SIGTERM")
    relay.set_defaults(run=_relay)

    consumer = commands.add_parser("consumer", help="persist claims from Kafka to PostgreSQL")
    consumer.set_defaults(run=_consumer)

    reconcile = commands.add_parser("reconcile", help="compare Redis, outbox, Kafka, PostgreSQL")
    reconcile.add_argument("--textfile", help="also write the figures as Prometheus text here")
    reconcile.add_argument("--no-kafka", action="store_true", help="skip the Kafka lag")
    reconcile.set_defaults(run=_sync(_reconcile))

    verify = commands.add_parser("verify", help="after a load test: drain, then check invariants")
    verify.add_argument("--prefix", default="", help="only campaigns whose id starts so")
    verify.add_argument("--metrics-url", default="", help="a gateway's /metrics, for refusals")
    verify.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the drain")
    verify.set_defaults(run=_sync(_verify))

    recover = commands.add_parser("recover", help="rebuild campaigns' Redis state after loss")
    recover.add_argument("ids", nargs="*", metavar="ID", help="campaign ids (default: all live)")
    recover.set_defaults(run=_sync(_recover))

    worker = commands.add_parser("worker", help="run one gateway worker (serve starts these)")
    worker.set_defaults(run=_worker)

    migrate = commands.add_parser("migrate", help="create the database, apply migrations")
    migrate.set_defaults(run=_sync(_migrate))

    token = commands.add_parser("token", help="mint a bearer token for a user")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=86_400, help="seconds of validity")
    token.add_argument("--new-user", action="store_true")
    token.add_argument("--level", type=int, default=0)
    token.add_argument("--tag", action="append", default=[])
    token.set_defaults(run=_token)

    _campaign_commands(commands.add_parser("campaign", help="operate campaigns"))
    return parser


def _campaign_commands(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="store a campaign from a JSON spec")
    create.add_argument("file", help="JSON spec file, - for stdin")
    create.set_defaults(run=_sync(_campaign_create))
    update = actions.add_parser("update", help="change fields of a campaign")
    update.add_argument("id")
    update.add_argument("file", help="JSON object of changed fields, - for stdin")
    update.set_defaults(run=_sync(_campaign_update))
    for name in ("publish", "pause", "resume", "show"):
        action = actions.add_parser(name, help=f"{name} a campaign")
        action.add_argument("id")
        action.set_defaults(run=_sync(_campaign_simple), action=name)
    topup = actions.add_parser("topup", help="add stock and/or budget")
    topup.add_argument("id")
    topup.add_argument("--stock", type=int, default=0)
    topup.add_argument("--budget-cents", type=int, default=0)
    topup.set_defaults(run=_sync(_campaign_topup))
    block = actions.add_parser("block", help="block users and devices from a campaign")
    block.add_argument("id")
    block.add_argument("--user", action="append", default=[])
    block.add_argument("--device", action="append", default=[])
    block.set_defaults(run=_sync(_campaign_block))
    listing = actions.add_parser("list", help="list campaigns")
    listing.set_defaults(run=_sync(_campaign_list))


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.serve import Supervisor

    return Supervisor(settings).run()


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.local import StartError, up

    try:
        return up(settings, Path(args.data_dir), embedded_postgres=args.embedded_postgres)
    except StartError as exc:
        print(f"flashclaim up: {exc}", file=sys.stderr)
        return 1


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    import uvloop

    from gateway.app import redis_client
    from gateway.metrics import serve_metrics
    from gateway.relay import run_relay

    serve_metrics(settings.metrics_port)

    async def relay() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        redis = redis_client(settings)
        try:
            await run_relay(settings, redis, stop)
        finally:
            await redis.aclose()

    uvloop.run(relay())
    return 0


def _consumer(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.run import main as consume

    return consume(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.serve import run_worker

    run_worker(settings)
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from gateway.auth import mint

    claims: dict[str, Any] = {"new_user": args.new_user, "level": args.level, "tags": args.tag}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    print(mint(settings.jwt_secret, args.user, expires_s=int(time.time()) + args.ttl, **claims))
    return 0


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _sync(command: Command) -> Callable[[Settings, argparse.Namespace], int]:
    """Run an async command; operator mistakes print a message and exit 1."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from gateway.campaign import InvalidSpec
        from gateway.campaign_ops import CampaignStateError
        from gateway.campaign_store import CampaignExists, CampaignNotFound

        try:
            return asyncio.run(command(settings, args))
        except InvalidSpec as exc:
            for error in exc.errors:
                print(f"invalid: {error.field}: {error.message}", file=sys.stderr)
            return 1
        except (CampaignNotFound, CampaignExists, CampaignStateError, OSError) as exc:
            print(f"flashclaim: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

    return run


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from gateway import db

    await db.ensure_database(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        applied = await db.migrate(conn)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


async def _with_ops(settings: Settings, work: Callable[[Any], Awaitable[object]]) -> int:
    from gateway import db
    from gateway.app import redis_client
    from gateway.campaign_ops import CampaignOps
    from gateway.campaign_store import CampaignStore
    from gateway.clock import SystemClock

    pool = await db.create_pool(settings.database_url, max_size=2)
    redis = redis_client(settings)
    try:
        result = await work(CampaignOps(CampaignStore(pool), redis, SystemClock()))
    finally:
        await pool.close()
        await redis.aclose()
    sys.stdout.write(orjson.dumps(msgspec.to_builtins(result), option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    return 0


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from gateway import db, reconcile
    from gateway.app import redis_client

    pool = await db.create_pool(settings.database_url, max_size=2)
    redis = redis_client(settings)
    try:
        reports = await reconcile.reconcile(pool, redis, await CampaignStore(pool).all())
        lag = None if args.no_kafka else await reconcile.kafka_lag(settings)
    finally:
        await pool.close()
        await redis.aclose()
    print(reconcile.render(reports, lag))
    if args.textfile:
        reconcile.write_textfile(args.textfile, reports, lag)
    return 1 if any(r.alarm for r in reports) else 0


async def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.verify import verify

    text, ok = await verify(
        settings, prefix=args.prefix, metrics_url=args.metrics_url, wait_s=args.wait
    )
    print(text)
    return 0 if ok else 1


async def _recover(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.campaign import Status
    from gateway.clock import SystemClock
    from gateway.recover import recover

    async def run(ops: Any) -> list[object]:
        ids = args.ids or [c.id for c in await ops.store.all() if c.status is not Status.DRAFT]
        return [
            await recover(ops, ops.store.pool, ops.redis, SystemClock(), settings, cid)
            for cid in ids
        ]

    return await _with_ops(settings, run)


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


async def _campaign_create(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.campaign import decode_spec

    spec = decode_spec(_read(args.file))
    return await _with_ops(settings, lambda ops: ops.create(spec))


async def _campaign_update(settings: Settings, args: argparse.Namespace) -> int:
    changes = orjson.loads(_read(args.file))
    return await _with_ops(settings, lambda ops: ops.update(args.id, changes))


async def _campaign_simple(settings: Settings, args: argparse.Namespace) -> int:
    method = "live" if args.action == "show" else args.action
    return await _with_ops(settings, lambda ops: getattr(ops, method)(args.id))


async def _campaign_topup(settings: Settings, args: argparse.Namespace) -> int:
    return await _with_ops(settings, lambda ops: ops.top_up(args.id, args.stock, args.budget_cents))


async def _campaign_block(settings: Settings, args: argparse.Namespace) -> int:
    return await _with_ops(settings, lambda ops: ops.block(args.id, args.user, args.device))


async def _campaign_list(settings: Settings, args: argparse.Namespace) -> int:
    return await _with_ops(settings, lambda ops: ops.store.all())


if __name__ == "__main__":
    sys.exit(main())
