"""Refused uses per campaign x day x reason, for the statistics (``use_failures``).

A refused lock rolls its transaction back, so it leaves nothing in ``coupon_events``; the
HTTP edge of redemption calls ``record`` once per refusal that names a campaign (a coupon
out of scope, under its threshold, outside its hours …). A failure to count is logged and
swallowed: the refusal's answer to the user does not depend on the statistics.
"""

from __future__ import annotations

import logging

import asyncpg

from gateway.redemption.wallet import at

log = logging.getLogger(__name__)

_RECORD = """
INSERT INTO use_failures AS f (campaign_id, day, reason, failures)
SELECT id, ($2::timestamptz AT TIME ZONE coalesce(spec->>'timeZone', 'UTC'))::date, $3, 1
FROM campaigns WHERE id = $1
ON CONFLICT (campaign_id, day, reason) DO UPDATE SET failures = f.failures + 1
"""


async def record(pool: asyncpg.Pool, campaign_id: str, reason: str, now_ms: int) -> None:
    """Count one refused use of ``campaign_id``'s coupons on the campaign's current day."""
    try:
        await pool.execute(_RECORD, campaign_id, at(now_ms), reason)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("a refused use was not counted: %s", exc)
