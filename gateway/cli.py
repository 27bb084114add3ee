"""``flashclaim``: run the gateway and operate campaigns from a shell.

This module only parses arguments and dispatches: each command lives in the module of its
capability. Configuration comes from ``FLASHCLAIM_*`` variables (``gateway/infra/
settings.py``); flags override the few that matter on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway.infra import logs
from gateway.infra.settings import ConfigError, Settings

Run = Callable[[Settings, argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flashclaim`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(**_overrides(args))
    except ConfigError as exc:
        print(f"flashclaim: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return _guarded(args.run, settings, args)


def _guarded(run: Run, settings: Settings, args: argparse.Namespace) -> int:
    """Run a command; operator mistakes and unreachable services print a line, exit 1."""
    from gateway.campaigns.ops import CampaignStateError
    from gateway.campaigns.spec import InvalidSpec
    from gateway.campaigns.store import CampaignExists, CampaignNotFound
    from gateway.stack.servers import StartError

    try:
        return run(settings, args)
    except InvalidSpec as exc:
        for error in exc.errors:
            print(f"invalid: {error.field}: {error.message}", file=sys.stderr)
        return 1
    except StartError as exc:
        print(f"flashclaim {args.command}: {exc}", file=sys.stderr)
        return 1
    except (CampaignNotFound, CampaignExists, CampaignStateError, OSError) as exc:
        print(f"flashclaim: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


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


def _sync(command: Callable[..., Coroutine[Any, Any, int]]) -> Callable[..., int]:
    """An async command as a plain one."""

    def run(*args: Any, **kwargs: Any) -> int:
        return asyncio.run(command(*args, **kwargs))

    return run


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


# Dispatch: one small function per command, each calling its capability's entry point.


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stack.supervisor import Supervisor

    return Supervisor(settings).run()


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stack.supervisor import run_worker

    run_worker(settings)
    return 0


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stack.local import up

    return up(settings, Path(args.data_dir), embedded_postgres=args.embedded_postgres)


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.handoff import relay

    return relay.main(settings)


def _consumer(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.handoff import consumer

    return consumer.main(settings)


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import reconcile

    command = _sync(reconcile.command)
    return command(settings, textfile=args.textfile or "", with_kafka=not args.no_kafka)


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import verify

    command = _sync(verify.command)
    return command(settings, prefix=args.prefix, metrics_url=args.metrics_url, wait_s=args.wait)


def _recover(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import recover

    return _sync(recover.command)(settings, args.ids)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.infra.migrations import migrate_database

    applied = asyncio.run(migrate_database(settings.database_url))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.infra.auth import user_token

    print(
        user_token(
            settings,
            args.user,
            ttl_s=args.ttl,
            now_s=int(time.time()),
            new_user=args.new_user,
            level=args.level,
            tags=args.tag,
        )
    )
    return 0


def _campaign(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.campaigns import commands

    action: str = args.action
    if action == "create":
        return _sync(commands.create)(settings, _read(args.file))
    if action == "update":
        return _sync(commands.update)(settings, args.id, _read(args.file))
    if action == "topup":
        return _sync(commands.top_up)(settings, args.id, args.stock, args.budget_cents)
    if action == "block":
        return _sync(commands.block)(settings, args.id, args.user, args.device)
    if action == "list":
        return _sync(commands.listing)(settings)
    if action == "page":
        from gateway.h5 import partners

        return _sync(partners.command)(settings, args.id, args.channel, args.qr or "")
    return _sync(commands.lifecycle)(settings, action, args.id)


# The parser.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashclaim", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    serve = commands.add_parser("serve", help="run the gateway (several worker processes)")
    _server_flags(serve)
    serve.set_defaults(run=_serve)

    up = commands.add_parser("up", help="local stack: Redis if needed, migrations, demo, gateway")
    _server_flags(up)
    up.add_argument("--data-dir", default="var", help="where started servers keep their data")
    up.add_argument("--redis-port", type=int, help="Redis to use or start on 127.0.0.1")
    up.add_argument("--kafka-port", type=int, help="Kafka to use or start on 127.0.0.1")
    up.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="run a PostgreSQL of its own under the data dir, even if one is configured",
    )
    up.set_defaults(run=_up)

    commands.add_parser("relay", help="relay outboxes to Kafka until SIGTERM").set_defaults(
        run=_relay
    )
    commands.add_parser("consumer", help="persist claims from Kafka to PostgreSQL").set_defaults(
        run=_consumer
    )

    reconcile = commands.add_parser("reconcile", help="compare Redis, outbox, Kafka, PostgreSQL")
    reconcile.add_argument("--textfile", help="also write the figures as Prometheus text here")
    reconcile.add_argument("--no-kafka", action="store_true", help="skip the Kafka lag")
    reconcile.set_defaults(run=_reconcile)

    verify = commands.add_parser("verify", help="after a load test: drain, then check invariants")
    verify.add_argument("--prefix", default="", help="only campaigns whose id starts so")
    verify.add_argument("--metrics-url", default="", help="a gateway's /metrics, for refusals")
    verify.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the drain")
    verify.set_defaults(run=_verify)

    recover = commands.add_parser("recover", help="rebuild campaigns' Redis state after loss")
    recover.add_argument("ids", nargs="*", metavar="ID", help="campaign ids (default: all live)")
    recover.set_defaults(run=_recover)

    commands.add_parser("worker", help="run one gateway worker (serve starts these)").set_defaults(
        run=_worker
    )
    commands.add_parser("migrate", help="create the database, apply migrations").set_defaults(
        run=_migrate
    )

    token = commands.add_parser("token", help="mint a bearer token for a user")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=86_400, help="seconds of validity")
    token.add_argument("--new-user", action="store_true")
    token.add_argument("--level", type=int, default=0)
    token.add_argument("--tag", action="append", default=[])
    token.set_defaults(run=_token)

    _campaign_parser(commands.add_parser("campaign", help="operate campaigns"))
    return parser


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")


def _campaign_parser(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_campaign)
    actions = parser.add_subparsers(required=True, metavar="ACTION", dest="action")
    create = actions.add_parser("create", help="store a campaign from a JSON spec")
    create.add_argument("file", help="JSON spec file, - for stdin")
    update = actions.add_parser("update", help="change fields of a campaign")
    update.add_argument("id")
    update.add_argument("file", help="JSON object of changed fields, - for stdin")
    for name in ("publish", "pause", "resume", "show"):
        actions.add_parser(name, help=f"{name} a campaign").add_argument("id")
    topup = actions.add_parser("topup", help="add stock and/or budget")
    topup.add_argument("id")
    topup.add_argument("--stock", type=int, default=0)
    topup.add_argument("--budget-cents", type=int, default=0)
    block = actions.add_parser("block", help="block users and devices from a campaign")
    block.add_argument("id")
    block.add_argument("--user", action="append", default=[])
    block.add_argument("--device", action="append", default=[])
    actions.add_parser("list", help="list campaigns")
    page = actions.add_parser("page", help="a campaign's H5 page for a channel: link, QR code")
    page.add_argument("id")
    page.add_argument("--channel", default="h5", help="the partner's channel (default h5)")
    page.add_argument("--qr", help="also write the link's QR code here (.svg or .png)")


if __name__ == "__main__":
    sys.exit(main())
