"""The claim path's experiment routes: a user's claim goes to their variant's campaign
whichever variant's link they came by, and to the winner once one is promoted."""

from __future__ import annotations

import orjson

from gateway.stats.experiments import ExperimentStore, decode_experiment
from gateway.stats.routing import ExperimentRouter, Route
from tests.helpers import T0_MS, published


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
