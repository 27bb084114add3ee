"""Granting by trigger: events and sky-drop opens turned into claims.

Both go through the ``ClaimService`` (channels ``event`` and ``skydrop``), so each grant
is decided by the same atomic call as a click and reaches PostgreSQL the same way.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec
from redis.asyncio import Redis

from gateway.channels.triggers import (
    AttributeName,
    Scalar,
    TriggerRules,
    chance,
    derived_request_id,
)
from gateway.claim.service import ClaimRequest, ClaimService, Outcome
from gateway.identifiers import DeviceId, Label, RequestId, UserId
from gateway.infra.auth import Claimant
from gateway.keys import skydrop_opens
from gateway.reasons import Reason

_OPENS_TTL_S = 90 * 86_400


class Audience(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The audience facts a user's token would state, vouched for by the service that sends
    the event (it holds the events token, as the login service holds the JWT secret)."""

    new_user: bool = False
    level: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    tags: Annotated[list[Label], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)
    city: Label | None = None
    attrs: Annotated[dict[AttributeName, float], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=dict
    )

    def claimant(self, user_id: str) -> Claimant:
        """The user as a token with these facts would show them."""
        tags = f",{','.join(self.tags)}," if self.tags else ""
        return Claimant(user_id, self.new_user, self.level, tags, 0, 0, self.city or "", self.attrs)


class Event(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Something that happened to a user (``POST /api/events``, or the events topic).
    Without ``audience`` the user has no token facts: campaigns with an audience of tags,
    level or new users refuse the grant (NOT_ELIGIBLE)."""

    event_id: RequestId
    type: Label
    user_id: UserId
    attributes: Annotated[
        dict[AttributeName, Annotated[str, msgspec.Meta(max_length=128)] | int | float | bool],
        msgspec.Meta(max_length=32),
    ] = msgspec.field(default_factory=dict)
    audience: Audience | None = None


class SkydropOpen(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /api/skydrop/open``: the app was opened."""

    request_id: RequestId
    device_id: DeviceId
    channel: Label
    city: Label | None = None


class Grant(msgspec.Struct, rename="camel", omit_defaults=True):
    """One rule's outcome: a coupon (``couponId``) or why not (``reason``)."""

    rule_id: str
    campaign_id: str
    reason: Reason
    coupon_id: str = ""
    expires_at: str = ""
    replayed: bool = False


class EventGrants(msgspec.Struct, rename="camel"):
    """What an event granted (every matching rule's outcome)."""

    event_id: str
    grants: list[Grant]


class Skydrop(msgspec.Struct, rename="camel"):
    """What fell on this open (at most ``FLASHCLAIM_SKYDROP_MAX_GRANTS`` coupons), and the
    rules tried that gave nothing."""

    dropped: list[Grant]
    missed: list[Grant]


def _device(user_id: str, kind: str) -> str:
    return f"{kind}-" + hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


def _grant(rule_id: str, campaign_id: str, outcome: Outcome) -> Grant:
    return Grant(
        rule_id, campaign_id, outcome.reason, outcome.coupon_id, outcome.expires_at,
        outcome.replayed,
    )  # fmt: skip


class Triggers:
    """Applies trigger rules; one per worker (and one in the events consumer)."""

    def __init__(self, claims: ClaimService, rules: TriggerRules, redis: Redis, max_drops: int):
        self._claims = claims
        self._rules = rules
        self._redis = redis
        self._max_drops = max_drops

    async def on_event(self, event: Event) -> EventGrants:
        """Grant what the event's matching rules grant; an event id grants once per rule."""
        facts: dict[str, Scalar] = dict(event.attributes)
        audience = event.audience or Audience()
        who = audience.claimant(event.user_id)
        grants = []
        for rule in await self._rules.current():
            if rule.kind != "event" or rule.event_type != event.type or not rule.matches(facts):
                continue
            request = ClaimRequest(
                rule.campaign_id,
                derived_request_id("ev", event.event_id, rule.rule_id),
                _device(event.user_id, "event"),
                "event",
            )
            outcome = await self._claims.grant(who, request)
            grants.append(_grant(rule.rule_id, rule.campaign_id, outcome))
        return EventGrants(event.event_id, grants)

    async def on_open(self, who: Claimant, open_: SkydropOpen, ip: str) -> Skydrop:
        """Claim at most ``max_drops`` of the sky-drop campaigns this open may get."""
        facts: dict[str, Scalar] = {
            "channel": open_.channel, "newUser": who.new_user, "level": who.level,
        }  # fmt: skip
        if open_.city is not None:
            facts["city"] = open_.city
        rules = [r for r in await self._rules.current() if r.kind == "skydrop" and r.matches(facts)]
        rules.sort(key=lambda r: chance(open_.request_id, "order\x00" + r.rule_id))
        opens = (
            await self._open_number(who.user_id, open_.request_id)
            if any(r.first_opens for r in rules)
            else 0
        )
        dropped: list[Grant] = []
        missed: list[Grant] = []
        for rule in rules:
            if len(dropped) >= self._max_drops:
                break
            if rule.first_opens and opens > rule.first_opens:
                continue
            if chance(open_.request_id, rule.rule_id) >= rule.probability:
                continue
            request = ClaimRequest(
                rule.campaign_id,
                derived_request_id("sd", open_.request_id, rule.rule_id),
                open_.device_id,
                "skydrop",
                open_.city,  # campaigns that take the city from the request judge it
            )
            outcome = await self._claims.claim(who, request, ip)
            grant = _grant(rule.rule_id, rule.campaign_id, outcome)
            (dropped if outcome.reason is Reason.ACCEPTED else missed).append(grant)
        return Skydrop(dropped, missed)

    async def _open_number(self, user_id: str, request_id: str) -> int:
        """Which open of the user's this is (1 for the first); a retried open keeps its
        number."""
        key = skydrop_opens(user_id)
        field = f"r:{request_id}"
        known = await self._redis.hget(key, field)
        if known is not None:
            return int(known)
        number = int(await self._redis.hincrby(key, "opens", 1))
        if not await self._redis.hsetnx(key, field, number):  # a concurrent retry won
            number = int(await self._redis.hget(key, field) or number)
        await self._redis.expire(key, _OPENS_TTL_S)
        return number
