"""``flashclaim redemption …`` and ``flashclaim expiring``: the operators' coupon commands.

``sweep`` records lock and coupon expiries once (or ``--every S`` until SIGTERM);
``void`` voids one coupon or a campaign's unused ones; ``expiring --within 24h`` lists
unused coupons about to expire and, with ``--publish``, sends one event per coupon to
the reminders topic for the push service (key: the user id).
"""

from __future__ import annotations

import re

import orjson

from gateway.infra import clients
from gateway.infra.clock import SystemClock
from gateway.infra.console import progress
from gateway.infra.settings import Settings
from gateway.infra.signals import stop_on_signals
from gateway.redemption.operators import Expiring, void_coupons
from gateway.redemption.operators import expiring as find_expiring
from gateway.redemption.sweep import run_sweeper, sweep

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """``24h``, ``90m``, ``2d``, ``30s`` in milliseconds; ``ValueError`` otherwise."""
    match = re.fullmatch(r"([0-9]{1,6})([smhd])", text.strip())
    if not match:
        raise ValueError(f"not a duration like 24h, 90m, 2d: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


async def sweep_command(settings: Settings, every_s: float) -> int:
    """Sweep once, or every ``every_s`` seconds until SIGTERM / SIGINT."""
    pool = await clients.create_pool(settings.database_url, max_size=2)
    try:
        if every_s:
            await run_sweeper(pool, SystemClock(), every_s, stop_on_signals())
            return 0
        swept = await sweep(pool, SystemClock().now_ms())
        print(f"locks expired: {swept.locks_expired}, coupons expired: {swept.coupons_expired}")
        return 0
    finally:
        await pool.close()


async def void_command(
    settings: Settings, coupon_id: str | None, campaign_id: str | None, reason: str
) -> int:
    """Void a coupon, or every unused coupon of a campaign; print how many."""
    pool = await clients.create_pool(settings.database_url, max_size=2)
    try:
        voided = await void_coupons(
            pool, SystemClock().now_ms(), reason, coupon_id=coupon_id, campaign_id=campaign_id
        )
    finally:
        await pool.close()
    print(f"voided {voided} coupon(s)")
    return 0


async def expiring_command(settings: Settings, within: str, publish: bool) -> int:
    """List (and with ``publish`` send) the coupons expiring within ``within``."""
    pool = await clients.create_pool(settings.database_url, max_size=2)
    try:
        found = await find_expiring(pool, SystemClock().now_ms(), duration_ms(within))
    finally:
        await pool.close()
    reminders = [_reminder(coupon) for coupon in found]
    for reminder in reminders:
        print(reminder.decode())
    if publish and found:
        producer = clients.kafka_producer(settings)
        await producer.start()
        try:
            for coupon, reminder in zip(found, reminders, strict=True):
                await producer.send(settings.reminders_topic, reminder, key=coupon.user_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
        progress(f"published {len(found)} reminder(s) to {settings.reminders_topic}")
    return 0


def _reminder(coupon: Expiring) -> bytes:
    """A coupon about to expire as the listing prints it and the push service reads it."""
    return orjson.dumps(
        {
            "couponId": coupon.coupon_id,
            "campaignId": coupon.campaign_id,
            "userId": coupon.user_id,
            "expiresAtMs": coupon.expires_at_ms,
        }
    )
