"""Redeeming a code: the code's check, the lockout, the lookup, then one claim.

A typed code is first checked by its check character (a typo answers CODE_MISTYPED,
costs no lookup and no failed attempt). A user, device or IP locked out answers
CODE_LOCKED. The global index names the code's campaign; the claim then goes through the
claim path like any other (channel ``code``) with the code's keyed hash: ``claim.lua``
checks the code unused and marks it redeemed by this user and requestId in the same
atomic step that decides and writes the claim, so a code works once, and a retry with
the same requestId replays the same coupon. A code nobody issued, and one already used,
both answer CODE_INVALID and both count as a failed attempt.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from redis.asyncio import Redis

from gateway.channels.codes import CodeHasher, normalize
from gateway.channels.guard import CodeGuard
from gateway.claim.service import ClaimRequest, ClaimService, Outcome
from gateway.identifiers import DeviceId, RequestId
from gateway.infra.auth import Claimant
from gateway.keys import CODE_INDEX
from gateway.reasons import Reason

CHANNEL = "code"


class RedeemRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /api/coupon/redeem``."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    request_id: RequestId
    device_id: DeviceId


class Redeemer:
    """Answers redeem requests; one per worker."""

    def __init__(
        self, claims: ClaimService, redis: Redis, guard: CodeGuard, hasher: CodeHasher
    ) -> None:
        self._claims = claims
        self._redis = redis
        self._guard = guard
        self._hash = hasher

    async def redeem(self, claimant: Claimant, request: RedeemRequest, ip: str) -> Outcome:
        """Redeem ``request.code`` for ``claimant`` (token and body already verified)."""
        code = normalize(request.code)
        if code is None:
            return Outcome(Reason.CODE_MISTYPED)
        user, device = claimant.user_id, request.device_id
        locked = await self._guard.locked_for(user, device, ip)
        if locked:
            return Outcome(Reason.CODE_LOCKED, retry_after_s=locked)
        hashed = self._hash(code)
        campaign_id: str | None = await self._redis.hget(CODE_INDEX, hashed)  # type: ignore[assignment]
        if campaign_id is None or await self._used_by_another(campaign_id, hashed, user):
            return await self._failed(user, device, ip)
        claim = ClaimRequest(campaign_id, request.request_id, device, CHANNEL)
        outcome = await self._claims.claim(claimant, claim, ip, code=hashed)
        if outcome.reason is Reason.CODE_INVALID:
            return await self._failed(user, device, ip)
        return outcome

    async def _used_by_another(self, campaign_id: str, hashed: str, user: str) -> bool:
        """A code someone else redeemed answers as if it never existed, whatever state
        its campaign is in (a sold-out campaign must not tell a guesser the code was real).
        claim.lua decides again, atomically; this read only spares a claim."""
        view = await self._claims.campaigns.get(campaign_id)
        if view is None:
            return True
        state: str | None = await self._redis.hget(view.keys.codes, hashed)  # type: ignore[assignment]
        return state is None or (state != "" and not state.startswith(user + "\t"))

    async def _failed(self, user: str, device: str, ip: str) -> Outcome:
        await self._guard.failed(user, device, ip)
        return Outcome(Reason.CODE_INVALID)
