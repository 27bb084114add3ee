"""The ``flashclaim`` command: migrations, campaigns and tokens from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jwt
import pytest

from gateway.keys import CampaignKeys
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
    assert "CampaignNotFound" in missing.stderr


def test_token_is_valid_for_the_gateway(run):
    result = run("token", "alice", "--level", "3", "--tag", "vip")
    claims = jwt.decode(result.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["level"], claims["tags"]) == ("alice", 3, ["vip"])


def test_missing_secret_is_a_clear_error(run, monkeypatch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHCLAIM_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "token", "bob"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "FLASHCLAIM_JWT_SECRET must be set" in result.stderr


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
