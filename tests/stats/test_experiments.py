"""Experiments: the hash split (stable, within tolerance), the store, the report against
the statistics core on the same figures, promotion, and the command."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import orjson
import pytest

from gateway import keys
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.redemption import orders
from gateway.stats import bucketing
from gateway.stats.ab_report import report
from gateway.stats.abtest import two_proportions, welch
from gateway.stats.errors import ExperimentError, ExperimentNotFound
from gateway.stats.experiments import ExperimentStore, Variant, decode_experiment
from tests.helpers import T0_MS, child_env, flashclaim, published

PICKS = (
    "from gateway.stats import bucketing; "
    "print([bucketing.pick('exp-1', f'user-{i}', [50, 30, 20]) for i in range(2000)])"
)


def test_the_split_of_10000_users_is_within_two_points_of_the_weights():
    weights = [50, 30, 20]
    counts = [0, 0, 0]
    for user in range(10_000):
        counts[bucketing.pick("d11-threshold", f"user-{user}", weights)] += 1
    for count, weight in zip(counts, weights, strict=True):
        assert abs(count / 10_000 - weight / 100) <= 0.02, counts


def test_the_hash_is_the_documented_one():
    digest = hashlib.sha256(b"exp-1\nuser-0").digest()
    assert bucketing.position("exp-1", "user-0", 10_000) == (
        int.from_bytes(digest[:8], "big") * 10_000 >> 64) == 8815  # fmt: skip
    assert [bucketing.pick("exp-1", f"user-{i}", [50, 30, 20]) for i in range(12)] == [
        2, 0, 0, 1, 2, 1, 2, 1, 2, 1, 0, 1]  # fmt: skip


def test_the_split_is_the_same_in_other_processes():
    here = [bucketing.pick("exp-1", f"user-{i}", [50, 30, 20]) for i in range(2000)]
    for seed in ("1", "2"):  # Python's own str hash changes with the seed; ours must not
        out = subprocess.run(
            [sys.executable, "-c", PICKS],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert orjson.loads(out.stdout) == here


def test_experiments_are_validated():
    variants: list[dict[str, Any]] = [
        {"name": "a", "campaignId": "c1", "weight": 1},
        {"name": "b", "campaignId": "c2"},
    ]
    good: dict[str, Any] = {"id": "e1", "name": "threshold", "variants": variants}
    assert decode_experiment(orjson.dumps(good)).variants[1].weight == 1
    for bad in (
        {**good, "variants": good["variants"][:1]},
        {**good, "variants": [good["variants"][0], {**good["variants"][1], "name": "a"}]},
        {**good, "variants": [good["variants"][0], {**good["variants"][1], "campaignId": "c1"}]},
        {**good, "variants": [{**good["variants"][0], "weight": 0}, good["variants"][1]]},
        {**good, "extra": 1},
    ):
        with pytest.raises(ExperimentError):
            decode_experiment(orjson.dumps(bad))


def claim_event(campaign_id, user, n=0):
    return ClaimEvent(
        coupon_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign_id}/{user}/{n}")),
        campaign_id=campaign_id,
        user_id=user,
        device_id=f"dev-{user}",
        request_id=f"req-{user}-{n:04d}",
        channel="h5",
        value_cents=2_000,
        claimed_at_ms=T0_MS + 60_000,
        expires_at_ms=T0_MS + 86_400_000,
    )


@pytest.fixture
async def experiment(ops, pool, redis):
    await pool.execute("TRUNCATE exposure_daily, experiments")
    a = await published(ops, thresholdCents=20_000)
    b = await published(ops, thresholdCents=18_000)
    # A: 400 views, 40 claimers with a coupon each, 10 used.
    # B: 400 views, 60 claimers; 30 with two coupons; 36 used, counted per claimer below.
    events = [claim_event(a.id, f"a{u}") for u in range(40)]
    events += [claim_event(b.id, f"b{u}") for u in range(60)]
    events += [claim_event(b.id, f"b{u}", 1) for u in range(30)]
    async with pool.acquire() as conn:
        await insert_claims(conn, events)
    await pool.execute(
        "UPDATE coupons SET status = 'used' WHERE user_id = ANY($1::text[])",
        [f"a{u}" for u in range(10)] + [f"b{u}" for u in range(18)],  # b0-b17: 2 each = 36
    )
    await pool.executemany(
        "INSERT INTO exposure_daily VALUES ($1, 'h5', '2026-11-11', 400, 300, now())",
        [(a.id,), (b.id,)],
    )
    # Orders, as the redemption code records their confirms: a0-a9 one of 600 yuan each;
    # b0-b17 two orders of 500 yuan each (one per coupon).
    confirms = [(a.id, f"a{u}", 0, 60_000) for u in range(10)]
    confirms += [(b.id, f"b{u}", n, 50_000) for u in range(18) for n in range(2)]
    async with pool.acquire() as conn:
        for campaign_id, user, n, amount in confirms:
            coupon = claim_event(campaign_id, user, n).coupon_id
            await orders.record(conn, "confirm", [(coupon, "locked", "used", 2_000)],
                                order_id=f"{coupon}-order", amount_cents=amount,
                                actor=f"user:{user}", now_ms=T0_MS + 120_000)  # fmt: skip
    spec = {"id": "exp-threshold", "name": "200 vs 180", "variants": [
        {"name": "t200", "campaignId": a.id, "weight": 1},
        {"name": "t180", "campaignId": b.id, "weight": 1}]}  # fmt: skip
    return await ExperimentStore(pool, redis).create(decode_experiment(orjson.dumps(spec)))


async def test_the_report_compares_each_variant_with_the_control(experiment, pool):
    result = await report(pool, experiment)
    control, other = result.variants
    assert (control.views, control.claims, control.claimers, control.used) == (400, 40, 40, 10)
    assert (other.views, other.claims, other.claimers, other.used) == (400, 90, 60, 36)
    assert (control.claim_rate, other.claim_rate) == (0.1, 0.225)
    assert (control.use_rate, other.use_rate) == (0.25, 0.4)
    assert (control.used_per_claimer, other.used_per_claimer) == (0.25, 0.6)
    assert (control.gmv_cents, other.gmv_cents) == (600_000, 1_800_000)
    assert (control.gmv_per_claimer_cents, other.gmv_per_claimer_cents) == (15_000, 30_000)
    claim_rate, use_rate, per_user, gmv = result.comparisons["t180"]
    assert claim_rate == two_proportions("claim_rate", 40, 400, 90, 400)
    assert claim_rate.significant
    assert claim_rate.winner == "b"
    assert use_rate == two_proportions("use_rate", 10, 40, 36, 90)
    a_users = [1.0] * 10 + [0.0] * 30
    b_users = [2.0] * 18 + [0.0] * 42
    assert per_user == welch("used_per_claimer", a_users, b_users)
    a_gmv = [60_000.0] * 10 + [0.0] * 30
    b_gmv = [100_000.0] * 18 + [0.0] * 42
    assert gmv == welch("gmv_per_claimer_cents", a_gmv, b_gmv)
    assert (gmv.a, gmv.b, gmv.difference) == (15_000, 30_000, 15_000)


async def test_promotion_sends_everyone_to_the_winner(experiment, pool, redis):
    store = ExperimentStore(pool, redis)
    seen = {experiment.variant_for(f"user-{u}").name for u in range(50)}
    assert seen == {"t200", "t180"}
    promoted = await store.promote(experiment.id, "t180", T0_MS)
    assert {promoted.variant_for(f"user-{u}").name for u in range(50)} == {"t180"}
    mirrored = orjson.loads(await redis.get(keys.experiment(experiment.id)))
    assert mirrored["promoted"] == "t180"
    assert (await store.get(experiment.id)).promoted == "t180"
    assert await redis.hget(keys.EXPERIMENT_OF, experiment.variants[0].campaign_id) == experiment.id
    with pytest.raises(ExperimentError, match="no variant"):
        await store.promote(experiment.id, "t150", T0_MS)
    with pytest.raises(ExperimentNotFound):
        await store.get("no-such-experiment")


async def test_a_campaign_is_in_one_experiment_at_most(experiment, pool, redis):
    again = msgspec_replace(experiment, id="exp-again")
    with pytest.raises(ExperimentError, match="another experiment"):
        await ExperimentStore(pool, redis).create(again)
    missing = msgspec_replace(experiment, id="exp-missing", variants=[
        *experiment.variants[:1], Variant("x", "no-such-campaign")])  # fmt: skip
    with pytest.raises(ExperimentError, match="no campaign"):
        await ExperimentStore(pool, redis).create(missing)


def msgspec_replace(struct, **changes):
    return msgspec.structs.replace(struct, **changes)


async def test_the_command_reports_and_promotes(settings, experiment):
    env = child_env(settings)
    shown = flashclaim(env, "experiment", "report", experiment.id)
    assert shown.returncode == 0, shown.stderr
    assert "t180 against t200" in shown.stdout
    assert "claim_rate" in shown.stdout
    assert "gmv_per_claimer_cents" in shown.stdout
    assert "significant: b wins" in shown.stdout
    promoted = flashclaim(env, "experiment", "promote", experiment.id, "t180")
    assert orjson.loads(promoted.stdout)["promoted"] == "t180"
    refused = flashclaim(env, "experiment", "promote", experiment.id, "nope")
    assert (refused.returncode, refused.stderr.strip()) == (
        1, f"flashclaim experiment: experiment {experiment.id} has no variant nope")  # fmt: skip
