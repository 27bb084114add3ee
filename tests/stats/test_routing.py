"""The claim path's experiment routes: a user's claim goes to their variant's campaign
whichever variant's link they came by, and to the winner once one is promoted."""

from __future__ import annotations

import orjson

from gateway.stats.experiments import ExperimentStore, decode_experiment
from gateway.stats.routing import ExperimentRouter, Route
from tests.helpers import T0_MS, claim, published


async def test_claims_are_routed_to_the_users_variant_then_to_the_winner(ops, pool, redis, clock):
    await pool.execute("TRUNCATE experiments")
    a = await published(ops)
    b = await published(ops)
    alone = await published(ops)
    spec = {"id": "exp-route", "name": "a vs b", "variants": [
        {"name": "a", "campaignId": a.id}, {"name": "b", "campaignId": b.id}]}  # fmt: skip
    store = ExperimentStore(pool, redis)
    experiment = await store.create(decode_experiment(orjson.dumps(spec)))
    router = ExperimentRouter(redis, clock, 1000, 1.0)

    assert await router.route(alone.id, "u1") is None
    routes = {user: await router.route(a.id, user) for user in (f"u{n}" for n in range(40))}
    for user, route in routes.items():
        variant = experiment.variant_for(user)
        assert route == Route(variant.campaign_id, "exp-route", variant.name)
        assert await router.route(b.id, user) == route  # the other link: the same variant
    assert {route.variant for route in routes.values() if route} == {"a", "b"}

    await store.promote("exp-route", "b", T0_MS)
    assert (await router.route(a.id, "u0")) == routes["u0"]  # within the ttl: as before
    clock.advance(1000)
    for user in routes:
        assert await router.route(a.id, user) == Route(b.id, "exp-route", "b")


async def test_the_claim_answer_names_the_variant_and_its_campaign_decides(
    make_client, ops, pool, redis, clock
):
    client = await make_client(experiment_cache_ms=0)  # experiments made below: seen at once
    await pool.execute("TRUNCATE experiments")
    a = await published(ops, stock=100)
    b = await published(ops, stock=100)
    spec = {"id": "exp-claim", "name": "a vs b", "variants": [
        {"name": "a", "campaignId": a.id}, {"name": "b", "campaignId": b.id}]}  # fmt: skip
    experiment = await ExperimentStore(pool, redis).create(decode_experiment(orjson.dumps(spec)))
    clock.set(T0_MS)
    users = [f"u{n}" for n in range(20)]
    for user in users:
        status, answer = await claim(client, user, a.id, channel="h5")  # all by a's link
        variant = experiment.variant_for(user)
        assert status == 200, answer
        assert (answer["experiment"], answer["variant"]) == ("exp-claim", variant.name)
        again = await claim(client, user, b.id, channel="h5")  # b's link: the same variant
        assert again[0] == 409  # perUserLimit 1, on the variant's own campaign
        assert again[1]["reason"] == "USER_LIMIT"
    in_b = sum(experiment.variant_for(user).name == "b" for user in users)
    assert 0 < in_b < 20
    assert (await ops.live(b.id))["live"]["issued"] == in_b
    assert (await ops.live(a.id))["live"]["issued"] == 20 - in_b
    status, plain = await claim(client, "u0", (await published(ops)).id)
    assert "variant" not in plain  # a campaign in no experiment: the answer as always


async def test_a_retry_after_a_promotion_moved_its_user(make_client, ops, pool, redis, clock):
    client = await make_client(experiment_cache_ms=0)
    await pool.execute("TRUNCATE experiments")
    a = await published(ops)
    b = await published(ops)
    spec = {"id": "exp-retry", "name": "a vs b", "variants": [
        {"name": "a", "campaignId": a.id}, {"name": "b", "campaignId": b.id}]}  # fmt: skip
    store = ExperimentStore(pool, redis)
    experiment = await store.create(decode_experiment(orjson.dumps(spec)))
    user = next(f"u{n}" for n in range(100) if experiment.variant_for(f"u{n}").name == "a")
    clock.set(T0_MS)
    first = await claim(client, user, a.id, request_id="retry-0001", channel="h5")
    assert first[1]["variant"] == "a"
    await store.promote("exp-retry", "b", T0_MS)
    retry = await claim(client, user, a.id, request_id="retry-0001", channel="h5")
    assert retry[1] == first[1]  # the same coupon, from the variant the user holds
    fresh = await claim(client, user, b.id, request_id="retry-0002", channel="h5")
    assert fresh[1]["reason"] == "USER_LIMIT"  # still on a: never a coupon of both variants
    assert (await ops.live(b.id))["live"]["issued"] == 0
    newcomer = next(f"n{n}" for n in range(100) if experiment.variant_for(f"n{n}").name == "a")
    status, answer = await claim(client, newcomer, a.id, channel="h5")
    assert (status, answer["variant"]) == (200, "b")  # no coupon yet: the winner
