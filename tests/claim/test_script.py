"""The Lua side of the contract: codes, registration, and refusing malformed calls."""

from __future__ import annotations

import re

import pytest
from redis.exceptions import ResponseError

from gateway.campaigns.ops import keys_of
from gateway.claim.script import Batch, ClaimInput, ClaimScript
from gateway.claim.wire import ClusterWire, Wire
from gateway.infra.lua import lua_dir, source
from gateway.reasons import Reason
from tests.helpers import T0_MS, published, snapshot


def test_script_codes_match_the_reason_enum():
    text = source("claim")
    constants: dict[str, int] = {}
    for names, values in re.findall(r"^local ([A-Z_, ]+) = ([\d, ]+)$", text, re.M):
        constants.update(zip(names.split(", "), map(int, values.split(", ")), strict=True))
    codes = {name: code for name, code in constants.items() if name in Reason.__members__}
    assert len(codes) == 21, codes  # 0-16, 17 CODE_INVALID (redeem codes), 55-57 (claim rules)
    assert codes == {name: Reason(name).code for name in codes}
    header = {
        name: int(code) for code, name in re.findall(r"(\d+) ([A-Z_]+)", text[: text.index("]]")])
    }
    assert header == codes


def test_scripts_never_build_key_names():
    for name in (p.stem for p in lua_dir().glob("*.lua")):
        code = "\n".join(
            line for line in source(name).splitlines() if not line.strip().startswith("--")
        )
        assert "KEYS[" in code
        assert not re.search(r"redis\.call\('\w+',\s*['\"]", code), "a literal key name"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda keys, args: (keys[:-1], args), id="missing-key"),
        pytest.param(lambda keys, args: (keys, args[:-1]), id="missing-arg"),
        pytest.param(lambda keys, args: (keys, ["soon", *args[1:]]), id="bad-now"),
        pytest.param(lambda keys, args: (keys, [*args[:5], "many", *args[6:]]), id="bad-cap"),
        pytest.param(lambda keys, args: (keys, [*args[:11], "level?", *args[12:]]), id="bad-level"),
        pytest.param(lambda keys, args: (keys, [*args[:6], "", *args[7:]]), id="empty-user"),
    ],
)
@pytest.mark.parametrize("lean", [False, True], ids=["redis-py", "wire"])
async def test_malformed_call_is_refused_before_any_write(redis, settings, ops, mangle, lean):
    campaign = await published(ops)
    claim = ClaimInput("u1", "d1", "req-00000001", "coupon-1", False, 0, "", "seckill")
    batch = Batch(keys_of(campaign), "20261111", T0_MS + 1, T0_MS + 86_400_000, 60, 1000, [claim])
    good_keys, good_args = batch.call()
    wire = (
        (ClusterWire if settings.redis_cluster else Wire)(settings.redis_url, 1.0) if lean else None
    )
    script = ClaimScript(redis, wire=wire)
    assert (await script.raw(good_keys, good_args))[0][0][0] == 0  # well-formed works
    before = await snapshot(redis, campaign)
    bad_keys, bad_args = mangle(good_keys, good_args)
    with pytest.raises(ResponseError, match="malformed"):
        await script.raw(bad_keys, bad_args)
    assert await snapshot(redis, campaign) == before
    if wire is not None:
        await wire.aclose()


def test_coupon_id_is_the_uuid_of_the_claims_digest():
    import hashlib
    import uuid

    from gateway.claim.script import coupon_id_for

    for n in range(200):
        digest = hashlib.blake2b(f"c-{n}\x00u-{n}\x00r-{n}".encode(), digest_size=16).digest()
        assert coupon_id_for(f"c-{n}", f"u-{n}", f"r-{n}") == str(uuid.UUID(bytes=digest))
