"""Exposures: views counted per campaign x channel x campaign-zone day, unique viewers in a
HyperLogLog, resent batches counted once, bad batches refused with nothing counted, and
the rollup into PostgreSQL that can run any number of times."""

from __future__ import annotations

from datetime import date

import pytest

from gateway import keys
from gateway.campaigns.cache import CampaignCache
from gateway.campaigns.spec import decode_spec
from gateway.stats.exposures import rollup
from tests.helpers import DAY_MS, T0_MS, published, spec


async def report(client, viewer, *views, batch_id=None):
    body = {"viewerId": viewer, "views": [{"campaignId": c, "channel": ch} for c, ch in views]}
    if batch_id:
        body["batchId"] = batch_id
    response = await client.post("/api/exposures", json=body)
    return response.status, await response.json()


async def views_of(redis, campaign_id, day):
    return {
        k: int(v) for k, v in (await redis.hgetall(keys.exposure_views(campaign_id, day))).items()
    }


async def test_views_count_per_channel_on_the_campaigns_own_day(client, ops, redis, clock):
    campaign = await published(ops)  # Asia/Shanghai; the clock is 23:50 on 10 Nov there
    status, answer = await report(
        client, "dev-a", (campaign.id, "h5"), (campaign.id, "h5"), (campaign.id, "app")
    )
    assert (status, answer) == (200, {"counted": 3, "ignored": 0, "replayed": False})
    assert await report(client, "dev-b", (campaign.id, "h5")) == (
        200, {"counted": 1, "ignored": 0, "replayed": False})  # fmt: skip
    clock.set(T0_MS + 1)  # 00:00:00.001 on 11 Nov in Shanghai (16:00 on 10 Nov in UTC)
    await report(client, "dev-a", (campaign.id, "h5"))

    assert await views_of(redis, campaign.id, "20261110") == {"h5": 3, "app": 1}
    assert await views_of(redis, campaign.id, "20261111") == {"h5": 1}
    assert await redis.pfcount(keys.exposure_viewers(campaign.id, "20261110", "h5")) == 2
    assert await redis.pfcount(keys.exposure_viewers(campaign.id, "20261110", "app")) == 1
    assert await redis.pfcount(keys.exposure_viewers(campaign.id, "20261110")) == 2
    assert await redis.smembers(keys.EXPOSURE_DAYS) == {
        f"{campaign.id}|20261110", f"{campaign.id}|20261111"}  # fmt: skip
    # Keys go away by themselves a week after their day.
    ttl = await redis.ttl(keys.exposure_views(campaign.id, "20261110"))
    assert 7 * 86_400 < ttl <= 8 * 86_400 + 600


async def test_unique_viewers_of_a_crowd_are_within_the_hyperloglog_error(client, ops, redis):
    campaign = await published(ops)
    for start in range(0, 1000, 50):
        views = [(campaign.id, "h5")]
        for viewer in range(start, start + 50):
            assert (await report(client, f"dev-{viewer}", *views))[0] == 200
        await report(client, f"dev-{start}", *views)  # a viewer seen again
    unique = await redis.pfcount(keys.exposure_viewers(campaign.id, "20261110", "h5"))
    assert abs(unique - 1000) <= 1000 * 0.02  # standard error 0.81 %
    assert await views_of(redis, campaign.id, "20261110") == {"h5": 1020}


async def test_a_resent_batch_counts_once(client, ops, redis):
    campaign = await published(ops)
    first = await report(client, "dev-a", (campaign.id, "h5"), batch_id="batch-0001")
    again = await report(client, "dev-a", (campaign.id, "h5"), batch_id="batch-0001")
    assert first == (200, {"counted": 1, "ignored": 0, "replayed": False})
    assert again == (200, {"counted": 0, "ignored": 0, "replayed": True})
    assert await views_of(redis, campaign.id, "20261110") == {"h5": 1}


async def test_views_of_campaigns_not_published_are_ignored(client, ops, redis):
    campaign = await published(ops)
    draft = await ops.create(decode_spec(spec()))
    status, answer = await report(
        client, "dev-a", (campaign.id, "h5"), ("no-such-campaign", "h5"), (draft.id, "h5")
    )
    assert (status, answer) == (200, {"counted": 1, "ignored": 2, "replayed": False})
    assert await redis.keys(f"{keys.PREFIX}:x:no-such-campaign*") == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"viewerId": "dev-a", "views": []}, 422),
        ({"viewerId": "dev a", "views": [{"campaignId": "c1"}]}, 422),
        ({"viewerId": "dev-a", "views": [{"campaignId": "c1", "channel": "H5"}]}, 422),
        ({"viewerId": "dev-a", "views": [{"campaignId": "c1"}], "extra": 1}, 422),
        ({"viewerId": "dev-a", "views": [{"campaignId": "c1"}], "batchId": "short"}, 422),
        ({"viewerId": "dev-a", "views": [{"campaignId": "c1"}] * 51}, 422),  # over the cap
        ({"views": [{"campaignId": "c1"}]}, 422),
    ],
)
async def test_a_bad_batch_is_refused_and_counts_nothing(client, ops, redis, body, status):
    campaign = await published(ops, id="c1")
    response = await client.post("/api/exposures", json=body)
    assert response.status == status
    assert (await response.json())["reason"] == "INVALID_REQUEST"
    assert await redis.keys(f"{keys.PREFIX}:x:*") == []
    assert campaign.id == "c1"


async def test_not_json_is_refused(client):
    response = await client.post(
        "/api/exposures", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    response = await client.post(
        "/api/exposures", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert response.status == 415


async def test_rollup_copies_days_and_can_run_again(client, ops, redis, pool, clock):
    await pool.execute("TRUNCATE exposure_daily")
    campaign = await published(ops)
    await report(client, "dev-a", (campaign.id, "h5"), (campaign.id, "app"))
    await report(client, "dev-b", (campaign.id, "h5"))
    clock.set(T0_MS + DAY_MS // 2)
    await report(client, "dev-c", (campaign.id, "h5"))
    cache = CampaignCache(redis, clock, 0, 1.0)

    assert await rollup(redis, pool, cache, clock.now_ms()) == 5
    assert await rollup(redis, pool, cache, clock.now_ms()) == 2  # today again: rewritten
    rows = await pool.fetch(
        "SELECT channel, day, views, unique_viewers FROM exposure_daily"
        " WHERE campaign_id = $1 ORDER BY day, channel",
        campaign.id,
    )
    assert [tuple(row) for row in rows] == [
        ("*", date(2026, 11, 10), 3, 2),
        ("app", date(2026, 11, 10), 1, 1),
        ("h5", date(2026, 11, 10), 2, 2),
        ("*", date(2026, 11, 11), 1, 1),
        ("h5", date(2026, 11, 11), 1, 1),
    ]
    # 10 Nov is over in Shanghai: final, no longer pending; 11 Nov stays for the next run.
    assert await redis.smembers(keys.EXPOSURE_DAYS) == {f"{campaign.id}|20261111"}
    await report(client, "dev-d", (campaign.id, "h5"))
    await rollup(redis, pool, cache, clock.now_ms())
    views = await pool.fetchval(
        "SELECT views FROM exposure_daily WHERE campaign_id = $1 AND channel = 'h5'"
        " AND day = '2026-11-11'",
        campaign.id,
    )
    assert views == 2


async def test_made_up_channels_past_the_cap_are_ignored(client, ops, redis):
    campaign = await published(ops)  # open to every channel
    for n in range(0, 70, 10):
        views = [(campaign.id, f"ch-{m}") for m in range(n, n + 10)]
        await report(client, "dev-a", *views)
    assert len(await views_of(redis, campaign.id, "20261110")) == 64
    assert (await report(client, "dev-b", (campaign.id, "ch-0"), (campaign.id, "ch-69"))) == (
        200, {"counted": 1, "ignored": 1, "replayed": False})  # fmt: skip
