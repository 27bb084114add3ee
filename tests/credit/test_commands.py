"""``flashclaim credit``: plans from a file, the reconciliation verdict, one sweep."""

from __future__ import annotations

import json

import asyncpg

from gateway.infra.settings import Settings
from tests.credit.conftest import PLAN
from tests.helpers import child_env, flashclaim


async def test_credit_commands(settings: Settings, credit_pool: asyncpg.Pool) -> None:
    env = child_env(settings)
    created = flashclaim(env, "credit", "create", "-", stdin=json.dumps(PLAN))
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["tiers"][1]["bonusCents"] == 5_000
    broken = json.dumps({**PLAN, "id": "x", "minPayCents": 0})
    bad = flashclaim(env, "credit", "create", "-", stdin=broken)
    assert bad.returncode == 1
    assert "invalid: minPayCents" in bad.stderr
    shown = flashclaim(env, "credit", "show", "double11")
    assert json.loads(shown.stdout)["id"] == "double11"
    missing = flashclaim(env, "credit", "show", "nope")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    whole = flashclaim(env, "credit", "reconcile", "--json")
    assert whole.returncode == 0, whole.stdout
    assert json.loads(whole.stdout)["ok"]
    assert "released 0 hold(s)" in flashclaim(env, "credit", "sweep").stdout
    # A balance moved without its journal line: the verdict says so, exit status 1.
    await credit_pool.execute(
        "INSERT INTO credit_accounts (owner, kind, balance_cents)"
        " VALUES ('mallory', 'principal', 1)"
    )
    off = flashclaim(env, "credit", "reconcile")
    assert off.returncode == 1
    assert "DIFFERENCE" in off.stdout
