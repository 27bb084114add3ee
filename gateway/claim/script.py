"""The call contract of ``lua/claim.lua``, in one typed place.

Whoever runs the script or reads what it wrote goes through here: the claim service
builds its KEYS and ARGV with ``call``, decodes the reply with ``decode``; recover writes
replay records with ``ReplayRecord.encode`` and reconcile reads them with
``ReplayRecord.parse``. The script's header says the same in Lua's terms; the contract
test holds the two together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.claim.wire import ClusterWire, Script, Wire
from gateway.infra import lua
from gateway.keys import CampaignKeys
from gateway.reasons import Reason

#: ARGV holds these before the claims; each claim then takes ``STRIDE`` values.
HEADER_ARGS = 6
STRIDE = 8


def coupon_id_for(campaign_id: str, user_id: str, request_id: str) -> str:
    """The coupon a claim issues: the same claim always names the same coupon, end to end,
    so a replay after any loss lands on the same database row. (The text of
    ``uuid.UUID(bytes=digest)``, spelled out: building the UUID object cost more than the
    hash.)"""
    h = hashlib.blake2b(
        f"{campaign_id}\x00{user_id}\x00{request_id}".encode(), digest_size=16
    ).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class ClaimInput:
    """One claim as the script sees it."""

    user_id: str
    device_id: str
    request_id: str
    coupon_id: str
    new_user: bool
    level: int
    tags: str  # ",a,b," (the form the script searches), "" for none
    channel: str
    code: str = ""  # a redeem code's keyed hash; sent after the claims (see Batch.call)

    def args(self) -> list[str | int]:
        """This claim's ``STRIDE`` ARGV values, in the script's order."""
        return [
            self.user_id,
            self.device_id,
            self.request_id,
            self.coupon_id,
            int(self.new_user),
            self.level,
            self.tags,
            self.channel,
        ]


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one call decides: a campaign's claims at one instant."""

    keys: CampaignKeys
    day: str  # YYYYMMDD in the campaign's zone
    now_ms: int
    day_end_ms: int
    replay_ttl_s: int
    outbox_max_len: int
    claims: Sequence[ClaimInput]
    winners_max: int = 0  # keep accepted requestIds in a list while stock <= this

    def call(self) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of the script call deciding this batch.

        The fixed KEYS are ``CampaignKeys.claim_keys`` in the header's order, the claim
        rules' two last (KEYS[11] ``user_money``, KEYS[12] ``daily_money``: gateway/rules/);
        the claims' replay records follow them. A batch carrying redeem codes
        (gateway/channels/) adds, at the end, the campaign's ``codes`` key and one value per
        claim (its code's keyed hash, "" for none); otherwise neither."""
        names = self.keys.claim_keys(self.day)
        args: list[str | int] = [
            self.now_ms,
            self.day_end_ms,
            self.replay_ttl_s,
            self.outbox_max_len,
            len(self.claims),
            self.winners_max,
        ]
        for claim in self.claims:
            names.append(self.keys.request(claim.request_id))
            args += claim.args()
        # Redemption: each claim's user's recent claims (KEYS[12+n+i], after the replay keys).
        names += [self.keys.recent(claim.user_id) for claim in self.claims]
        if any(claim.code for claim in self.claims):  # redeem codes: one key, n more ARGV
            names.append(self.keys.codes)
            args += [claim.code for claim in self.claims]
        return names, args


@dataclass(frozen=True, slots=True)
class Decision:
    """The script's answer to one claim."""

    reason: Reason
    coupon_id: str
    expires_at_ms: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class Decided:
    """The script's answer to a batch, with the campaign's figures after it."""

    decisions: list[Decision]
    outbox_length: int
    issued: int
    stock: int


def decode(reply: Sequence[Any]) -> Decided:
    """The typed form of the script's reply."""
    results, outbox_length, issued, stock = reply
    return Decided(
        [
            Decision(Reason.from_code(int(code)), str(coupon), int(expires), bool(replayed))
            for code, coupon, expires, replayed in results
        ],
        int(outbox_length),
        int(issued),
        int(stock),
    )


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """What the script remembers of an accepted requestId, to answer its retries."""

    user_id: str
    device_id: str
    coupon_id: str
    expires_at_ms: int

    def encode(self) -> str:
        """The stored form: tab-separated, as ``claim.lua`` writes it."""
        return f"{self.user_id}\t{self.device_id}\t{self.coupon_id}\t{self.expires_at_ms}"

    @classmethod
    def parse(cls, text: str) -> ReplayRecord:
        """Read a stored record."""
        user, device, coupon, expires = text.split("\t")
        return cls(user, device, coupon, int(expires))


class ClaimScript:
    """``claim.lua`` registered on one Redis client, called over the claim path's own
    connection (``wire``) when there is one, else through redis-py."""

    def __init__(
        self, redis: Redis, major_version: int = 7, wire: Wire | ClusterWire | None = None
    ) -> None:
        self._script = lua.register(redis, "claim", major_version)
        self._lean = Script(lua.for_redis(lua.source("claim"), major_version))
        self._wire = wire

    async def __call__(self, batch: Batch) -> Decided:
        """Decide ``batch`` in one atomic call."""
        keys, args = batch.call()
        return decode(await self.raw(keys, args))

    async def raw(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Call with KEYS and ARGV as given (the contract tests send malformed calls)."""
        if self._wire is not None:
            return await self._wire.evalsha(self._lean, list(keys), list(args))
        return await self._script(keys, args)


@dataclass(frozen=True, slots=True)
class RecentClaim:
    """A claim as ``claim.lua`` keeps it in its user's recent claims (KEYS[12+n+i]): what
    the wallet and a lock need of a coupon whose row has not reached PostgreSQL yet."""

    coupon_id: str
    device_id: str
    request_id: str
    channel: str
    value_cents: int
    claimed_at_ms: int
    expires_at_ms: int

    def encode(self) -> str:
        """The stored form (the hash field's value; the coupon id is the field)."""
        return (
            f"{self.device_id}\t{self.request_id}\t{self.channel}\t{self.value_cents}"
            f"\t{self.claimed_at_ms}\t{self.expires_at_ms}"
        )

    @classmethod
    def parse(cls, coupon_id: str, text: str) -> RecentClaim:
        """Read a stored record."""
        device, request, channel, value, at, expires = text.split("\t")
        return cls(coupon_id, device, request, channel, int(value), int(at), int(expires))
