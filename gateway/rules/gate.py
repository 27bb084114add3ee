"""The claim rules a worker decides before Redis: windows, cities, audience ranges, offers.

They depend only on the campaign, the clock and the claimant, never on a counter, so
deciding them in the gateway changes nothing a concurrent claim could see. Windows are
judged twice: here, to answer a closed window from memory (NOT_STARTED with the next
opening, or ENDED when none is left), and again with the very instant passed to
``claim.lua`` (``window_refusal``), so a claim decided after its window closed is refused
even if it queued while the window was open.

City: the token's ``city`` claim is trusted (the app's login service sets it from its
own geolocation); the request's ``city`` is used only by campaigns that say
``citySource: "request"``, where a user picking a city on the page is acceptable.

Offers ("holds a coupon of A: offer B instead") read A's per-user claim count in Redis:
"holds" is "has ever claimed" (the count never falls). That read is not atomic with this
claim: reading A's keys inside this campaign's script would span two hash slots, which
Redis Cluster refuses. A strict "one or the other" is an exclusion group (README: "What an
offer's holds means").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.campaigns.cache import CampaignCache, CampaignView
from gateway.infra.auth import Claimant
from gateway.reasons import Reason
from gateway.rules.profiles import ProfileSource, ProfileUnavailable
from gateway.rules.spec import AttributeSource, CitySource, Rules

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gate refused a claim; ``offer`` names the campaign offered instead."""

    reason: Reason
    retry_after_s: float = 0.0
    offer: str = ""


_NOT_ELIGIBLE = Refusal(Reason.NOT_ELIGIBLE)


def window_refusal(view: CampaignView, now_ms: int) -> Refusal | None:
    """NOT_STARTED (with the wait until the next window) or ENDED outside the windows."""
    if view.windows is None:
        return None
    state = view.windows.state(now_ms)
    if state.open:
        return None
    if state.opens_ms:
        return Refusal(Reason.NOT_STARTED, retry_after_s=(state.opens_ms - now_ms) / 1000)
    return Refusal(Reason.ENDED)


class ClaimGate:
    """Decides the rules of ``gateway/rules/spec.py`` that need no counter."""

    def __init__(
        self,
        redis: Redis,
        campaigns: CampaignCache,
        profiles: ProfileSource | None,
        fallback: str,
        timeout_s: float,
    ) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._campaigns = campaigns
        self._profiles = profiles
        self._fallback = fallback  # "token" or "refuse" (FLASHCLAIM_PROFILE_FALLBACK)

    async def check(
        self, view: CampaignView, claimant: Claimant, city: str | None, now_ms: int
    ) -> Refusal | None:
        """The refusal of a claim by ``claimant``, or None if the rules let it through."""
        rules = view.rules
        if rules is None:
            return None
        refused = window_refusal(view, now_ms)
        if refused is not None:
            return refused
        if rules.cities:
            where = claimant.city if rules.city_source is CitySource.TOKEN else city
            if where not in rules.cities:
                return _NOT_ELIGIBLE
        if rules.ranges:
            attributes = await self._attributes(rules, claimant)
            if attributes is None:
                return Refusal(Reason.UNAVAILABLE, retry_after_s=1.0)
            for name, bounds in rules.ranges.items():
                value = attributes.get(name)
                if value is None or not bounds.holds(value):
                    return _NOT_ELIGIBLE
        for offer in rules.offers:
            if await self._holds(offer.holds, claimant.user_id):
                return Refusal(Reason.NOT_ELIGIBLE, offer=offer.offer)
        return None

    async def _attributes(self, rules: Rules, claimant: Claimant) -> Mapping[str, float] | None:
        """The attributes to judge ranges on; None when the claim must be refused for now."""
        if rules.attributes_from is AttributeSource.TOKEN:
            return claimant.attrs
        if self._profiles is None:  # no profile service configured: only the token speaks
            return claimant.attrs
        try:
            return await self._profiles.attributes(claimant.user_id)
        except ProfileUnavailable as exc:
            log.debug("profile lookup failed for %s: %s", claimant.user_id, exc)
            return claimant.attrs if self._fallback == "token" else None

    async def _holds(self, campaign_id: str, user_id: str) -> bool:
        """Whether ``user_id`` claimed a coupon of ``campaign_id`` (published or not)."""
        held = await self._campaigns.get(campaign_id)
        if held is None:
            return False
        async with asyncio.timeout(self._timeout_s):
            count = await self._redis.hget(held.keys_for(user_id).users, user_id)  # its shard
        return int(count or 0) > 0
