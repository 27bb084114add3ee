"""``flashclaim credit ...``: plans, reconciliation and the sweeper from a shell.

``create FILE`` / ``update ID FILE`` / ``show ID`` / ``list`` (credit plans) print
what the admin API answers (JSON); ``reconcile`` prints the ledger's figures and exits 1
on any difference; ``sweep`` expires due bonus, sends reminders and releases locks past
their time, once (run it from cron or a Kubernetes CronJob, every minute).
"""

from __future__ import annotations

import sys
from typing import Any

import asyncpg
import msgspec
import orjson

from gateway.credit import reconcile as reconciliation
from gateway.credit.journal import CreditError
from gateway.credit.plan import decode_plan
from gateway.credit.store import PlanExists, PlanStore
from gateway.credit.sweeper import sweep
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings


def _print(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(msgspec.to_builtins(data), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")


async def plan(settings: Settings, action: str, plan_id: str, data: bytes) -> int:
    """Create, change, show or list credit plans."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        store = PlanStore(pool)
        if action == "create":
            _print(await store.create(decode_plan(data)))
        elif action == "update":
            _print(await store.update(plan_id, msgspec.json.decode(data, type=dict[str, Any])))
        elif action == "show":
            _print(await store.get(plan_id))
        else:
            _print({"plans": await store.all()})
    except (CreditError, PlanExists) as exc:
        print(f"flashclaim credit plan {action}: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    return 0


async def reconcile(settings: Settings, as_json: bool) -> int:
    """Print the ledger's figures; 1 when balances and journal differ by any cent."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        report = await reconciliation.reconcile(conn)
    finally:
        await conn.close()
    if as_json:
        _print({**msgspec.to_builtins(report), "ok": report.ok,
                "differenceCents": report.difference_cents})  # fmt: skip
    else:
        print(reconciliation.render(report))
    return 0 if report.ok else 1


async def sweep_once(settings: Settings) -> int:
    """Expire due bonus, remind, release locks past their time; print what was done."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        swept = await sweep(pool, SystemClock(),
                            remind_ms=settings.credit_reminder_hours * 3_600_000)  # fmt: skip
    finally:
        await pool.close()
    print(f"expired {swept.expired_buckets} bonus bucket(s), {swept.expired_cents} cents;"
          f" {swept.reminders} reminder(s); released {swept.released_holds} hold(s)")  # fmt: skip
    return 0
