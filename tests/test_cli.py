"""The ``flashclaim`` command: migrations, campaigns and tokens from a shell, with manners:
help for everything, only the settings each command uses, one-line errors, JSON on ask."""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import jwt
import pytest

from gateway import cli
from gateway.keys import CampaignKeys
from gateway.stack.servers import free_port
from tests.helpers import JWT_SECRET, child_env, flashclaim, spec


@pytest.fixture
def run(settings, pool, redis):
    env = child_env(settings)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return flashclaim(env, *args, stdin=stdin)

    return run


def test_campaign_commands(run):
    assert "0 migration(s)" in run("migrate").stdout
    created = run("campaign", "create", "-", stdin=json.dumps(spec(id="cli-1", stock=5)))
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["status"] == "draft"
    assert json.loads(run("campaign", "publish", "cli-1").stdout)["status"] == "active"
    assert json.loads(run("campaign", "topup", "cli-1", "--stock", "3").stdout)["stock"] == 8
    assert json.loads(run("campaign", "pause", "cli-1").stdout)["status"] == "paused"
    shown = json.loads(run("campaign", "show", "cli-1").stdout)
    assert shown["live"]["publishedStatus"] == "paused"
    assert shown["live"]["stockRemaining"] == 8
    listed = json.loads(run("campaign", "list").stdout)
    assert [c["id"] for c in listed] == ["cli-1"]


def test_invalid_campaign_prints_each_field(run):
    result = run("campaign", "create", "-", stdin=json.dumps(spec(stock=0, timeZone="X/Y")))
    assert result.returncode == 1
    assert "invalid: stock:" in result.stderr
    missing = run("campaign", "publish", "no-such-campaign")
    assert missing.returncode == 1
    assert missing.stderr == "flashclaim campaign: no campaign no-such-campaign\n"


def test_token_is_valid_for_the_gateway(run):
    result = run("token", "alice", "--level", "3", "--tag", "vip")
    claims = jwt.decode(result.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["level"], claims["tags"]) == ("alice", 3, ["vip"])


def bare(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``flashclaim`` with no FLASHCLAIM_* variable but those given."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLASHCLAIM_")}
    return flashclaim({**environ, **{f"FLASHCLAIM_{k.upper()}": v for k, v in env.items()}}, *args)


def test_each_command_asks_only_for_the_secrets_it_uses(settings):
    result = bare("token", "bob")
    assert (result.returncode, result.stderr) == (
        2,
        "flashclaim token: FLASHCLAIM_JWT_SECRET must be set\n",
    )
    minted = bare("token", "bob", jwt_secret=JWT_SECRET)  # no admin token needed
    assert minted.returncode == 0, minted.stderr
    migrated = bare("migrate", database_url=settings.database_url)  # no secret at all
    assert migrated.returncode == 0, migrated.stderr
    assert "applying migrations" in migrated.stderr  # progress on stderr, the result on stdout
    serve = bare("serve")
    assert serve.returncode == 2
    assert "FLASHCLAIM_JWT_SECRET must be set" in serve.stderr
    assert "FLASHCLAIM_ADMIN_TOKEN must be set" in serve.stderr


def test_every_settings_problem_is_one_line_and_all_are_reported():
    result = bare("migrate", port="eighty", workers="0", log_level="LOUD", metric_port="1")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    for variable in ("PORT", "WORKERS", "LOG_LEVEL", "METRIC_PORT"):
        assert any(f"FLASHCLAIM_{variable}" in line for line in lines), lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["a b"], "user id"),
        (["alice", "--level", "101"], "level"),
        (["alice", "--tag", "VIP!"], "tags"),
        (["alice", "--ttl", "0"], "ttl"),
    ],
)
def test_token_refuses_what_the_gateway_would_refuse(args, wrong):
    result = bare("token", *args, jwt_secret=JWT_SECRET)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"flashclaim token: the gateway would refuse this token: {wrong}"
    )
    assert len(result.stderr.splitlines()) == 1


def test_unreachable_services_and_bad_input_are_one_line(run, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    down = bare("verify", "--wait", "1", redis_url=dead, database_url=settings.database_url)
    assert down.returncode == 1
    (line,) = [line for line in down.stderr.splitlines() if "Redis at" in line]
    assert dead in line
    assert "Traceback" not in down.stderr
    assert run("campaign", "create", "-", stdin=json.dumps(spec(id="cli-bad"))).returncode == 0
    broken = run("campaign", "update", "cli-bad", "-", stdin='{"stock": 5,')
    assert broken.returncode == 1
    assert broken.stderr.startswith("flashclaim campaign: invalid: $: not a JSON object")
    assert len(broken.stderr.splitlines()) == 1
    missing = run("campaign", "create", "/no/such/file.json")
    assert missing.returncode == 1
    assert "No such file" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1


def test_help_describes_every_command_with_defaults_and_variables():
    parser = cli._parser()
    assert "FLASHCLAIM_REDIS_URL" in parser.format_help()  # every setting, with its default
    assert "'redis://127.0.0.1:6379/0'" in parser.format_help()
    group = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands: dict[str, argparse.ArgumentParser] = group.choices  # type: ignore[assignment]
    for name, sub in commands.items():
        text = " ".join(sub.format_help().split())  # argparse wraps lines
        assert sub.description, name
        if name != "openapi":
            assert "environment: FLASHCLAIM_" in text, name
        for action in sub._actions:
            described = action.option_strings and action.help != argparse.SUPPRESS
            if described and action.default is not None and "--help" not in action.option_strings:
                assert f"(default: {action.default})" in text, (name, action.dest)
    assert bare("--version").stdout.startswith("flashclaim ")


def test_reconcile_reports_and_flags_drift(run, tmp_path, redis_server):
    import redis as sync_redis

    assert run("campaign", "create", "-", stdin=json.dumps(spec(id="rec-1"))).returncode == 0
    assert run("campaign", "publish", "rec-1").returncode == 0
    clean = run("reconcile", "--no-kafka", "--textfile", str(tmp_path / "r.prom"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "rec-1" in clean.stdout
    assert 'flashclaim_reconcile_alarm{campaign="rec-1"} 0.0' in (tmp_path / "r.prom").read_text()
    # Redis claims 5 coupons that neither PostgreSQL nor the outbox knows: drift.
    sync_redis.Redis.from_url(redis_server.url).hset(
        CampaignKeys("rec-1", "").counters, "issued", 5
    )
    drifted = run("reconcile", "--no-kafka")
    assert drifted.returncode == 1
    assert "DRIFT" in drifted.stdout


def test_reconcile_and_verify_speak_json(run):
    assert run("campaign", "create", "-", stdin=json.dumps(spec(id="json-1"))).returncode == 0
    assert run("campaign", "publish", "json-1").returncode == 0
    reconciled = run("reconcile", "--no-kafka", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    report = json.loads(reconciled.stdout)
    assert report["alarm"] is False
    assert [c["campaign_id"] for c in report["campaigns"]] == ["json-1"]
    assert "reconciling 1 campaign(s)" in reconciled.stderr
    verified = run("verify", "--prefix", "json-", "--wait", "5", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verdict = json.loads(verified.stdout)
    assert verdict["verdict"] == "PASS"
    assert verdict["campaigns"][0]["campaign_id"] == "json-1"
    assert "checking 1 campaign(s)" in verified.stderr
