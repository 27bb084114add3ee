"""The Lua side of the contract: codes, registration, and refusing malformed calls."""

from __future__ import annotations

import re

import pytest
from redis.exceptions import ResponseError

from gateway.campaign_ops import keys_of
from gateway.reasons import Reason
from gateway.scripts import SCRIPT_NAMES, Scripts, lua_dir, source
from tests.helpers import T0_MS, published, snapshot


def test_script_codes_match_the_reason_enum():
    text = source("claim")
    constants: dict[str, int] = {}
    for names, values in re.findall(r"^local ([A-Z_, ]+) = ([\d, ]+)$", text, re.M):
        constants.update(zip(names.split(", "), map(int, values.split(", ")), strict=True))
    codes = {name: code for name, code in constants.items() if name in Reason.__members__}
    assert len(codes) == 17, codes
    assert codes == {name: Reason(name).code for name in codes}
    header = {name: int(code) for code, name in re.findall(r"(\d+) ([A-Z_]+)", text[:3000])}
    assert header == codes


def test_every_lua_file_is_registered():
    assert sorted(p.stem for p in lua_dir().glob("*.lua")) == sorted(SCRIPT_NAMES)


def test_scripts_never_build_key_names():
    for name in SCRIPT_NAMES:
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
        pytest.param(lambda keys, args: (keys, [*args[:10], "level?", *args[11:]]), id="bad-level"),
        pytest.param(lambda keys, args: (keys, [*args[:5], "", *args[6:]]), id="empty-user"),
    ],
)
async def test_malformed_call_is_refused_before_any_write(redis, ops, clock, mangle):
    campaign = await published(ops)
    keys = keys_of(campaign)
    good_keys = [
        keys.config,
        keys.counters,
        keys.users,
        keys.devices,
        keys.blocked,
        keys.holds,
        keys.outbox,
        keys.daily("20261111"),
        keys.users_daily("20261111"),
        keys.request("req-00000001"),
    ]
    good_args: list[str | int] = [
        T0_MS + 1,
        T0_MS + 86_400_000,
        60,
        1000,
        1,
        "u1",
        "d1",
        "req-00000001",
        "coupon-1",
        0,
        0,
        "",
        "seckill",
    ]
    script = Scripts(redis).claim
    assert (await script(good_keys, good_args))[0][0][0] == 0  # the well-formed call works
    before = await snapshot(redis, campaign)
    bad_keys, bad_args = mangle(good_keys, good_args)
    with pytest.raises(ResponseError, match="malformed"):
        await script(bad_keys, bad_args)
    assert await snapshot(redis, campaign) == before
