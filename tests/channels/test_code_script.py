"""claim.lua's redeem-code addition, called directly: codes checked and used per claim,
claims without a code in the same batch untouched, malformed code calls refused."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from gateway.campaigns.ops import keys_of
from gateway.claim.script import Batch, ClaimInput, ClaimScript
from gateway.reasons import Reason
from tests.helpers import T0_MS, published, snapshot


def claim(user: str, code: str = "") -> ClaimInput:
    return ClaimInput(
        user, f"d-{user}", f"req-{user}-0001", f"coupon-{user}", False, 0, "", "x", code
    )


def batch(campaign, *claims: ClaimInput) -> Batch:
    return Batch(keys_of(campaign), "20261111", T0_MS + 1, T0_MS + 86_400_000, 60, 1000, claims)


async def test_a_batch_mixes_codes_and_plain_claims(redis, ops):
    campaign = await published(ops, stock=10)
    codes = keys_of(campaign).codes
    await redis.hset(codes, mapping={"aa": "", "bb": "someone\treq-x"})
    script = ClaimScript(redis)
    decided = await script(
        batch(campaign, claim("u1", "aa"), claim("u2"), claim("u3", "bb"), claim("u4", "zz"),
              claim("u5", "aa"))
    )  # fmt: skip
    assert [d.reason for d in decided.decisions] == [
        Reason.ACCEPTED, Reason.ACCEPTED, Reason.CODE_INVALID, Reason.CODE_INVALID,
        Reason.CODE_INVALID,
    ]  # fmt: skip
    assert await redis.hget(codes, "aa") == "u1\treq-u1-0001"
    assert decided.issued == 2
    # Without codes in the batch, the call carries neither the key nor the values.
    keys, args = batch(campaign, claim("u6")).call()
    assert codes not in keys
    assert len(args) == 6 + 8


@pytest.mark.parametrize("cut", ["key", "arg"])
async def test_a_code_call_missing_its_key_or_a_value_is_refused(redis, ops, cut):
    campaign = await published(ops, stock=10)
    await redis.hset(keys_of(campaign).codes, "aa", "")
    keys, args = batch(campaign, claim("u1", "aa"), claim("u2")).call()
    before = await snapshot(redis, campaign)
    with pytest.raises(ResponseError, match="malformed"):
        await ClaimScript(redis).raw(
            keys[:-1] if cut == "key" else keys, args if cut == "key" else args[:-1]
        )
    assert await snapshot(redis, campaign) == before
