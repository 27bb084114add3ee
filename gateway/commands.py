"""The ``flashclaim`` commands, one entry each: its flags, the secrets it cannot run
without, the variables worth naming in its ``--help``, and a small function handing the
parsed arguments to its capability's entry point (imported late, so ``flashclaim token``
never loads Kafka or PostgreSQL clients). ``cli.py`` builds the parser from ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.infra.settings import Settings

Run = Callable[[Settings, argparse.Namespace], int]
Flags = Callable[[argparse.ArgumentParser], None]
GATEWAY_SECRETS = ("jwt_secret", "admin_token")


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

    explicit_redis = "FLASHCLAIM_REDIS_URL" in os.environ or bool(args.redis_port)
    return up(
        settings,
        Path(args.data_dir),
        embedded_postgres=args.embedded_postgres,
        explicit_redis=explicit_redis,
    )


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.handoff import relay

    return relay.main(settings)


def _consumer(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.handoff import consumer

    return consumer.main(settings)


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import reconcile

    if args.every:
        return reconcile.watch(settings, every_s=args.every, with_kafka=not args.no_kafka)
    command = _sync(reconcile.command)
    return command(
        settings, textfile=args.textfile or "", with_kafka=not args.no_kafka, as_json=args.json
    )


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import verify

    command = _sync(verify.command)
    return command(
        settings,
        prefix=args.prefix,
        metrics_url=args.metrics_url,
        wait_s=args.wait,
        as_json=args.json,
    )


def _recover(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.ops import recover

    return _sync(recover.command)(settings, args.ids)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.infra.console import progress
    from gateway.infra.migrations import migrate_database

    progress("applying migrations")
    applied = asyncio.run(migrate_database(settings.database_url))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.infra.auth import InvalidClaims, user_token

    try:
        token = user_token(
            settings,
            args.user,
            ttl_s=args.ttl,
            now_s=int(time.time()),
            new_user=args.new_user,
            level=args.level,
            tags=args.tag,
            city=args.city,
            attrs=_attributes(args.attr),
            device=args.device,
        )
    except (InvalidClaims, ValueError) as exc:
        print(f"flashclaim token: the gateway would refuse this token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def _attributes(pairs: list[str]) -> dict[str, float]:
    """``--attr NAME=NUMBER`` flags as a dict; ValueError names a malformed one."""
    found = {}
    for pair in pairs:
        name, sep, number = pair.partition("=")
        try:
            found[name] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--attr {pair!r}: expected NAME=NUMBER")
    return found


def _openapi(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from gateway.app import OPERATIONS
    from gateway.infra.openapi import build_document

    sys.stdout.buffer.write(orjson.dumps(build_document(OPERATIONS), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
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


def _codes(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.channels import commands

    return _sync(commands.generate_codes)(settings, args.id, args.count, args.out)


def _bind(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.channels import commands

    if args.status:
        return _sync(commands.status)(settings, args.job)
    if not args.id or not args.users:
        print("flashclaim bind: CAMPAIGN and USERS are required (or --status)", file=sys.stderr)
        return 2
    report = args.report or f"{args.job}.report.csv"
    return _sync(commands.bind)(settings, args.id, args.users, args.job, report, args.batch)


def _events(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.channels import event_consumer

    return event_consumer.main(settings)


def _codes_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="CAMPAIGN", help="the campaign (published)")
    parser.add_argument("--count", type=int, required=True, help="how many codes (1-1000000)")
    parser.add_argument("--out", default="-", help="CSV file to write (default: stdout)")


def _bind_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="CAMPAIGN", nargs="?", help="the campaign")
    parser.add_argument("users", metavar="USERS", nargs="?", help="CSV, first column user ids")
    parser.add_argument("--job", required=True, help="job id: the same id resumes the job")
    parser.add_argument("--report", default="", help="report CSV (default JOB.report.csv)")
    parser.add_argument("--batch", type=int, default=2000, help="users per checkpoint")
    parser.add_argument("--status", action="store_true", help="only print the job's progress")


def _sweep(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.redemption import commands

    return _sync(commands.sweep_command)(settings, args.every or 0.0)


def _void(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.redemption import commands

    if (args.coupon is None) == (args.campaign is None):
        print("flashclaim void: name one --coupon or one --campaign", file=sys.stderr)
        return 2
    return _sync(commands.void_command)(settings, args.coupon, args.campaign, args.reason)


def _expiring(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.redemption import commands

    try:
        commands.duration_ms(args.within)
    except ValueError as exc:
        print(f"flashclaim expiring: {exc}", file=sys.stderr)
        return 2
    return _sync(commands.expiring_command)(settings, args.within, args.publish)


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stats import commands

    return _sync(commands.stats)(settings, args.id, args.since, args.until, args.format, args.view)


def _rollup(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stats import commands

    return _sync(commands.rollup)(settings)


def _health(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stats import commands

    return _sync(commands.health_check)(settings, args.id, args.json)


def _health_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="campaign id")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _experiment(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.stats import commands

    rest = [value for value in (args.target, getattr(args, "variant", None)) if value]
    data = _read(args.target) if args.action == "create" else b""
    return _sync(commands.experiment)(settings, args.action, rest, args.json, data)


def _credit(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.credit import commands

    if args.action == "reconcile":
        return _sync(commands.reconcile)(settings, args.json)
    if args.action == "sweep":
        return _sync(commands.sweep_once)(settings)
    data = _read(args.file) if getattr(args, "file", None) else b""
    return _sync(commands.plan)(settings, args.action, getattr(args, "id", ""), data)


def credit_actions(parser: argparse.ArgumentParser) -> None:
    """``flashclaim credit ACTION``: plans, reconciliation, the sweeper."""
    actions = parser.add_subparsers(required=True, metavar="ACTION", dest="action")
    create = actions.add_parser("create", help="store a credit plan from a JSON spec")
    create.add_argument("file", help="JSON plan file, - for stdin")
    update = actions.add_parser("update", help="change fields of a credit plan")
    update.add_argument("id", help="plan id")
    update.add_argument("file", help="JSON object of changed fields, - for stdin")
    actions.add_parser("show", help="show a credit plan").add_argument("id", help="plan id")
    actions.add_parser("list", help="list credit plans")
    reconcile = actions.add_parser("reconcile", help="balances against the journal, to the cent")
    reconcile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions.add_parser("sweep", help="expire due bonus, remind, release locks past their time")


@dataclass(frozen=True)
class Command:
    """One ``flashclaim`` command: what it does, what it needs, which variables it reads."""

    name: str
    run: Run
    summary: str
    description: str = ""
    needs: tuple[str, ...] = ()  # secrets it cannot run without
    env: tuple[str, ...] = ()  # variables worth naming in its --help
    flags: Flags | None = None


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="worker processes (FLASHCLAIM_WORKERS)")
    parser.add_argument("--port", type=int, help="port to listen on (FLASHCLAIM_PORT)")
    parser.add_argument("--host", help="address to listen on (FLASHCLAIM_HOST)")


def _up_flags(parser: argparse.ArgumentParser) -> None:
    _server_flags(parser)
    parser.add_argument("--data-dir", default="var", help="where started servers keep data")
    parser.add_argument("--redis-port", type=int, help="Redis to use, or start, on 127.0.0.1")
    parser.add_argument("--kafka-port", type=int, help="Kafka to use, or start, on 127.0.0.1")
    parser.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="run a PostgreSQL of its own under the data dir, even if one is configured",
    )


def _reconcile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textfile", help="also write the figures as Prometheus text here")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka lag")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--every", type=float, metavar="SECONDS", help="reconcile every SECONDS, serve /metrics"
    )


def _verify_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", default="", help="only campaigns whose id starts so")
    parser.add_argument("--metrics-url", default="", help="a gateway's /metrics, for refusals")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the drain")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _recover_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="campaign ids (default: all live)")


def _token_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id (the token's sub)")
    parser.add_argument("--ttl", type=int, default=86_400, help="seconds of validity")
    parser.add_argument("--new-user", action="store_true", help="claim new_user: true")
    parser.add_argument("--level", type=int, default=0, help="the user's level (0-100)")
    parser.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    parser.add_argument("--city", default=None, help="the user's city (claim rules: cities)")
    parser.add_argument(
        "--device", default=None, help="the user's verified device (usage rule verifiedDevice)"
    )
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="a numeric attribute, e.g. churnProbability=0.6 (repeatable)",
    )


def _sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", type=float, metavar="SECONDS", help="sweep until SIGTERM")


def _void_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coupon", help="the coupon id to void")
    parser.add_argument("--campaign", help="void every unused coupon of this campaign")
    parser.add_argument("--reason", required=True, help="why (kept in the audit trail)")


def _expiring_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--within", default="24h", help="how soon: 30m, 24h, 2d")
    parser.add_argument("--publish", action="store_true", help="send reminders to Kafka")


def _stats_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="campaign id")
    parser.add_argument("--from", dest="since", help="first day, YYYY-MM-DD (campaign zone)")
    parser.add_argument("--to", dest="until", help="last day, YYYY-MM-DD (inclusive)")
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="how to print it"
    )
    parser.add_argument(
        "--view", choices=("funnel", "use", "layers"), default="funnel",
        help="funnel: per claim day; use: orders, GMV, discount, ROI per day of use;"
        " layers: per user layer (json prints all three)",
    )  # fmt: skip


_GATEWAY_ENV = ("HOST", "PORT", "WORKERS", "REDIS_URL", "DATABASE_URL", "JWT_SECRET",
                "ADMIN_TOKEN", "KAFKA_BOOTSTRAP", "CORS_ORIGINS", "ALLOW_VOLATILE_REDIS",
                "LOG_FORMAT")  # fmt: skip
_PROBES = "Serves /metrics and /livez on FLASHCLAIM_METRICS_PORT (0: off)."

COMMANDS = [
    Command("serve", _serve, "run the gateway (several worker processes)",
            "Workers share the port (SO_REUSEPORT); each runs a relay unless"
            " FLASHCLAIM_RELAY_IN_GATEWAY=false.", GATEWAY_SECRETS, _GATEWAY_ENV, _server_flags),
    Command("up", _up, "the whole system on this machine (what make run runs)",
            "Starts a Redis of its own (AOF on) unless FLASHCLAIM_REDIS_URL or --redis-port"
            " names one; uses Kafka and PostgreSQL if they answer, else starts them; applies"
            " migrations, publishes a demo campaign, starts a consumer and the gateway."
            " Ctrl-C drains the outboxes and stops what it started.",
            GATEWAY_SECRETS, _GATEWAY_ENV, _up_flags),
    Command("relay", _relay, "relay outboxes to Kafka until SIGTERM", _PROBES, (),
            ("REDIS_URL", "KAFKA_BOOTSTRAP", "METRICS_PORT", "RELAY_BATCH")),
    Command("consumer", _consumer, "persist claims from Kafka to PostgreSQL until SIGTERM",
            _PROBES, (), ("KAFKA_BOOTSTRAP", "DATABASE_URL", "METRICS_PORT", "CONSUMER_GROUP")),
    Command("reconcile", _reconcile, "compare Redis, outbox, Kafka and PostgreSQL",
            "Exit status 1 when drift passes 0.1 % or stock was oversold. With --every it runs"
            " until SIGTERM and serves the figures for the oversell and drift alerts. "
            + _PROBES, (), ("REDIS_URL", "DATABASE_URL", "KAFKA_BOOTSTRAP", "METRICS_PORT"),
            _reconcile_flags),
    Command("verify", _verify, "after a load test: wait for the drain, check the invariants",
            "Exit status 0 for PASS, 1 for FAIL.", (), ("REDIS_URL", "DATABASE_URL"),
            _verify_flags),
    Command("recover", _recover, "rebuild campaigns' Redis state after Redis lost data",
            "A campaign's claims answer UNAVAILABLE while it recovers.", (),
            ("REDIS_URL", "DATABASE_URL", "REPLAY_TTL_S"), _recover_flags),
    Command("worker", _worker, "run one gateway worker (serve starts these)", "",
            GATEWAY_SECRETS, _GATEWAY_ENV, _server_flags),
    Command("migrate", _migrate, "create the database and apply pending migrations", "", (),
            ("DATABASE_URL",)),
    Command("openapi", _openapi, "print the API's OpenAPI 3.1 document",
            "The document /openapi.json serves, for code generators and reviews."),
    Command("token", _token, "mint a bearer token for a user (demos, load tests)",
            "Refuses what the gateway would refuse: a malformed user id, a level outside"
            " 0-100, malformed tags, a ttl under a second.", ("jwt_secret",),
            ("JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE"), _token_flags),
    Command("codes", _codes, "generate redeem codes for a campaign, as CSV",
            "Only keyed hashes of the codes are kept: the CSV is their only copy.",
            (), ("REDIS_URL", "DATABASE_URL", "CODE_SECRET"), _codes_flags),
    Command("bind", _bind, "give a campaign's coupon to every user of a CSV (resumable)",
            "Through the claim path in batches; the same --job resumes after a crash and"
            " gives nobody a second coupon. Progress bar on stderr, counts as JSON on stdout.",
            (), ("REDIS_URL", "DATABASE_URL", "REPLAY_TTL_S"), _bind_flags),
    Command("events", _events, "grant coupons for events from the events topic until SIGTERM",
            "Each event id grants at most once per trigger rule. " + _PROBES, (),
            ("KAFKA_BOOTSTRAP", "EVENTS_TOPIC", "EVENTS_GROUP", "REDIS_URL", "DATABASE_URL",
             "METRICS_PORT")),
    Command("sweep", _sweep, "record coupon lock expiries and coupon expiries",
            "Each gateway worker sweeps every FLASHCLAIM_SWEEP_EVERY_S; this runs one pass"
            " (or --every S) where that is off. Readers never wait for it: a coupon past its"
            " validity reads as expired at once.", (), ("DATABASE_URL",), _sweep_flags),
    Command("void", _void, "void a coupon, or every unused coupon of a campaign",
            "Only unused coupons are voided (a coupon locked to an order is left to it).",
            (), ("DATABASE_URL",), _void_flags),
    Command("expiring", _expiring, "list unused coupons about to expire (reminders)",
            "One JSON line per coupon; --publish sends each to FLASHCLAIM_REMINDERS_TOPIC"
            " (key: the user id) for the push service.", (),
            ("DATABASE_URL", "KAFKA_BOOTSTRAP", "REMINDERS_TOPIC"), _expiring_flags),
    Command("stats", _stats, "a campaign's funnel per channel and day: views, claims, use",
            "Reads the rollups in PostgreSQL (run flashclaim rollup for today's exposures).",
            (), ("DATABASE_URL",), _stats_flags),
    Command("rollup", _rollup, "copy exposures and abuse tallies from Redis into PostgreSQL",
            "Safe to run at any time and as often as wanted: figures are written, not added.",
            (), ("REDIS_URL", "DATABASE_URL")),
    Command("health", _health, "a campaign's health check: budget burn, use-rate swings,"
            " coupons expiring unused", "", (), ("DATABASE_URL",), _health_flags),
    Command("experiment", _experiment, "A/B experiments: create, show, report, promote",
            "report compares each variant with the first (Welch's t-test, two-proportion"
            " z-test); promote sends every user to one variant.", (),
            ("REDIS_URL", "DATABASE_URL")),
    Command("campaign", _campaign, "operate campaigns (create, publish, pause, top up, ...)",
            "Prints what the admin API answers, as JSON.", (), ("REDIS_URL", "DATABASE_URL")),
    Command("credit", _credit, "shopping credit: plans, reconcile, sweep",
            "reconcile exits 1 when balances and journal differ by any cent.", (),
            ("DATABASE_URL", "CREDIT_REMINDER_HOURS"), credit_actions),
]  # fmt: skip
