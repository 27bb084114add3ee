"""``flashclaim``: run the gateway and operate campaigns from a shell.

This module only parses arguments and dispatches: each command lives in the module of its
capability. Configuration comes from ``FLASHCLAIM_*`` variables (``gateway/infra/
settings.py``); flags override the few that matter on a command line. Each command asks
only for the secrets it uses, reports every settings problem at once, and answers an
operator's mistake or an unreachable service with one line on stderr (exit 1), never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.commands import COMMANDS, GATEWAY_SECRETS, Run
from gateway.infra import logs
from gateway.infra.console import failure
from gateway.infra.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flashclaim`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(require=args.needs, **_overrides(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"flashclaim {args.command}: {problem}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, process=args.command)
    return _guarded(args.run, settings, args)


def _guarded(run: Run, settings: Settings, args: argparse.Namespace) -> int:
    """Run a command; operator mistakes and unreachable services print a line, exit 1."""
    from aiokafka.errors import KafkaError
    from asyncpg import PostgresError
    from redis.exceptions import RedisError

    from gateway.campaigns.ops import CampaignStateError
    from gateway.campaigns.spec import InvalidSpec
    from gateway.campaigns.store import CampaignExists, CampaignNotFound
    from gateway.stack.servers import StartError
    from gateway.stats.errors import ExperimentError, ExperimentNotFound

    command = f"flashclaim {args.command}"
    try:
        return run(settings, args)
    except InvalidSpec as exc:
        for error in exc.errors:
            print(f"{command}: invalid: {error.field}: {error.message}", file=sys.stderr)
        return 1
    except (StartError, CampaignStateError, ConfigError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    except ExperimentError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    except ExperimentNotFound as exc:
        print(f"{command}: no experiment {exc}", file=sys.stderr)
        return 1
    except CampaignNotFound as exc:
        print(f"{command}: no campaign {exc}", file=sys.stderr)
        return 1
    except CampaignExists as exc:
        print(f"{command}: campaign {exc} exists already", file=sys.stderr)
        return 1
    except (RedisError, PostgresError, KafkaError, OSError, TimeoutError) as exc:
        print(f"{command}: {failure(exc, settings)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


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


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option; descriptions and epilogs keep their lines."""


def _environment(names: Sequence[str]) -> str:
    """An epilog naming the variables a command reads."""
    listed = "\n".join(f"  FLASHCLAIM_{name}" for name in names)
    return f"environment:\n{listed}\n  (all settings: flashclaim --help; README: Settings)"


def _all_settings() -> str:
    """Every setting with its default, for ``flashclaim --help``."""
    lines = ["settings (environment variables) and their defaults:"]
    for field in msgspec.structs.fields(Settings):
        if field.name in GATEWAY_SECRETS:
            default = "(no default; serve, worker and up need it)"
        else:
            default = repr(field.default)
        lines.append(f"  FLASHCLAIM_{field.name.upper():<26} {default}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashclaim",
        description="Flash-claim coupon gateway: every claim decided atomically in Redis,"
        " carried without loss to PostgreSQL.",
        epilog=_all_settings(),
        formatter_class=_Help,
    )
    version = importlib.metadata.version("flashclaim")
    parser.add_argument("--version", action="version", version=f"flashclaim {version}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.summary,
            description=f"{command.summary[:1].upper()}{command.summary[1:]}."
            + (f"\n\n{command.description}" if command.description else ""),
            epilog=_environment(command.env) if command.env else None,
            formatter_class=_Help,
        )
        sub.set_defaults(run=command.run, needs=command.needs)
        if command.flags is not None:
            command.flags(sub)
        if command.name == "campaign":
            _campaign_actions(sub)
        if command.name == "experiment":
            _experiment_actions(sub)
    return parser


def _campaign_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(required=True, metavar="ACTION", dest="action")
    epilog = _environment(("REDIS_URL", "DATABASE_URL"))

    def action(name: str, summary: str, *ids: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name, help=summary, description=f"{summary}.", epilog=epilog, formatter_class=_Help
        )
        for arg in ids:
            sub.add_argument(arg, help="campaign id")
        return sub

    action("create", "store a campaign from a JSON spec, as a draft").add_argument(
        "file", help="JSON spec file, - for stdin"
    )
    update = action("update", "change fields of a campaign (republished at once when live)", "id")
    update.add_argument("file", help="JSON object of changed fields, - for stdin")
    action("publish", "publish a campaign: claims are decided from now on", "id")
    action("pause", "pause a campaign: claims answer PAUSED", "id")
    action("resume", "resume a paused campaign", "id")
    action("show", "show a campaign with its live counters", "id")
    topup = action("topup", "add stock and/or budget", "id")
    topup.add_argument("--stock", type=int, default=0, help="coupons to add")
    topup.add_argument("--budget-cents", type=int, default=0, help="budget to add, in cents")
    block = action("block", "block users and devices from a campaign", "id")
    block.add_argument("--user", action="append", default=[], help="a user id (repeatable)")
    block.add_argument("--device", action="append", default=[], help="a device id (repeatable)")
    action("list", "list campaigns, newest first")
    page = action("page", "a campaign's H5 page for a channel: its link, its QR code", "id")
    page.add_argument("--channel", default="h5", help="the partner's channel")
    page.add_argument("--qr", help="also write the link's QR code here (.svg or .png)")


def _experiment_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(required=True, metavar="ACTION", dest="action")
    epilog = _environment(("REDIS_URL", "DATABASE_URL"))

    def action(name: str, summary: str, target: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name, help=summary, description=f"{summary}.", epilog=epilog, formatter_class=_Help
        )
        sub.add_argument("target", metavar=target.split()[0].upper(), help=target)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return sub

    action("create", "store an experiment from a JSON file and publish it", "file (- for stdin)")
    action("show", "show an experiment", "experiment id")
    action("report", "each variant against the control: differences, intervals, p-values",
           "experiment id")  # fmt: skip
    promote = action("promote", "send every user to one variant from now on", "experiment id")
    promote.add_argument("variant", help="the variant's name")


if __name__ == "__main__":
    sys.exit(main())
