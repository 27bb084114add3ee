"""Campaigns (coupon templates): what an operator sets up, checked field by field.

A ``CampaignSpec`` is what operators write (JSON, camelCase, amounts in integer cents).
``validate_spec`` refuses a spec that cannot be run with one message per bad field.
``Campaign`` is a stored spec with its lifecycle status. ``redis_config`` flattens a
campaign into the hash ``claim.lua`` reads; PostgreSQL stays the source of truth.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gateway.campaigns.pages import PageSetup
from gateway.campaigns.usage import UsageRules, usage_violations
from gateway.identifiers import AttributeName, CampaignId, Label
from gateway.rules.spec import (
    MAX_ATTRIBUTES,
    MAX_CITIES,
    AttributeSource,
    CitySource,
    ClaimWindows,
    Cost,
    CostSource,
    Offer,
    Range,
    Rules,
    window_violations,
)

MAX_CENTS = 100_000_000_000  # one billion yuan: far above any real coupon budget
MAX_COUNT = 1_000_000_000
MAX_SHARDS = 64  # far above the masters of any cluster this runs on

Cents = Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
#: Free text shown to people; no NUL (PostgreSQL's JSON cannot hold one).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
#: An IANA time zone name's shape ("Asia/Shanghai", "Etc/GMT+8"); validate_spec checks it exists.
ZoneName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_+/-]{1,64}$")]


class Kind(enum.StrEnum):
    """What the coupon does at checkout."""

    CASH_OFF = "cash_off"  # 满减: faceValue off an order of at least threshold
    PERCENT_OFF = "percent_off"  # 折扣: percentOff off, at most maxDiscount
    NO_THRESHOLD = "no_threshold"  # 无门槛: faceValue off any order
    FREE_ORDER = "free_order"  # 免单: the whole order, at most maxDiscount
    POINTS_EXCHANGE = "points_exchange"  # 积分兑换: faceValue, bought with pointsCost points


class Status(enum.StrEnum):
    """Where a campaign is in its life."""

    DRAFT = "draft"  # stored, not yet in Redis: claims answer UNKNOWN_CAMPAIGN
    ACTIVE = "active"  # published: claims are decided
    PAUSED = "paused"  # published, claims answer PAUSED
    RECOVERING = "recovering"  # Redis state being rebuilt: claims answer UNAVAILABLE


class _ValidityMode(msgspec.Struct, tag_field="mode", rename="camel", forbid_unknown_fields=True):
    """A way of setting each coupon's expiry; ``mode`` names it in JSON."""


class FixedWindow(_ValidityMode, tag="fixed"):
    """Every coupon is valid in the same window."""

    valid_from: AwareTime
    valid_until: AwareTime


class DaysAfterClaim(_ValidityMode, tag="days_after_claim"):
    """Each coupon is valid for ``days`` days from its claim."""

    days: Annotated[int, msgspec.Meta(ge=1, le=3650)]


class EndOfClaimDay(_ValidityMode, tag="end_of_claim_day"):
    """Each coupon is valid until midnight of its claim day, in the campaign's time zone."""


Validity = FixedWindow | DaysAfterClaim | EndOfClaimDay


class Audience(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Who may claim, judged on facts in the verified token."""

    new_users_only: bool = False
    min_level: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    tags: list[Label] = msgspec.field(default_factory=list)  # any one of them suffices
    # Ranges over numeric user attributes (发放人群), from the token or the profile service.
    ranges: Annotated[dict[AttributeName, Range], msgspec.Meta(max_length=MAX_ATTRIBUTES)] = (
        msgspec.field(default_factory=dict)
    )
    attributes_from: AttributeSource = AttributeSource.TOKEN
    # "Holds a coupon of campaign A: offer B instead" (answered NOT_ELIGIBLE with ``offer``).
    offers: Annotated[list[Offer], msgspec.Meta(max_length=8)] = msgspec.field(default_factory=list)


class CampaignSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A campaign as an operator writes it."""

    id: CampaignId
    name: Name
    kind: Kind
    face_value_cents: Cents = 0
    threshold_cents: Cents = 0
    percent_off: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    max_discount_cents: Cents = 0
    points_cost: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 0
    stock: Count
    daily_stock: Count | None = None
    budget_cents: Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)] | None = None
    per_user_limit: Count = 1
    per_user_daily_limit: Count | None = None
    per_device_limit: Count | None = None
    starts_at: AwareTime
    ends_at: AwareTime
    time_zone: ZoneName = "Asia/Shanghai"
    validity: Validity = msgspec.field(default_factory=EndOfClaimDay)
    audience: Audience = msgspec.field(default_factory=Audience)
    exclusion_group: Label | None = None
    channels: list[Label] = msgspec.field(default_factory=list)  # empty: every channel
    pages: PageSetup = msgspec.field(default_factory=PageSetup)  # the H5 page's copy, per channel
    # Where, when and with what a claimed coupon may be used (gateway/campaigns/usage.py).
    usage: UsageRules = msgspec.field(default_factory=UsageRules)
    # Claim rules (issue 10 items 5-8): gateway/rules/.
    windows: ClaimWindows | None = None
    channel_quotas: Annotated[dict[Label, Count], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )
    cost: Cost = msgspec.field(default_factory=Cost)
    per_user_money_cap_cents: Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)] | None = None
    daily_budget_cents: Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)] | None = None
    cities: Annotated[list[Label], msgspec.Meta(max_length=MAX_CITIES)] = msgspec.field(
        default_factory=list
    )
    city_source: CitySource = CitySource.TOKEN
    # A hot campaign's stock over this many shards, each its own Redis slot (gateway/shards/).
    stock_shards: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHARDS)] = 1

    @property
    def value_cents(self) -> int:
        """The most one coupon can cost the campaign: what it draws from the budget."""
        if self.kind in (Kind.PERCENT_OFF, Kind.FREE_ORDER):
            return self.max_discount_cents
        return self.face_value_cents

    @property
    def zone(self) -> ZoneInfo:
        """The campaign's time zone (validated before a spec is ever stored)."""
        return ZoneInfo(self.time_zone)


class Campaign(CampaignSpec, kw_only=True):
    """A stored campaign: its spec plus where it is in its life."""

    status: Status = Status.DRAFT
    version: int = 1


class FieldError(msgspec.Struct, frozen=True):
    """One reason a spec was refused, naming the field (camelCase, dotted)."""

    field: str
    message: str


class InvalidSpec(ValueError):
    """A campaign spec was refused; ``errors`` says why, field by field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


_Document = TypeVar("_Document", bound=msgspec.Struct)


def decode_document(data: bytes | dict[str, object], kind: type[_Document]) -> _Document:
    """Decode an operator's document (a campaign spec, a credit plan) from JSON bytes or a
    dict; raise ``InvalidSpec`` naming the field that is wrong."""
    try:
        if isinstance(data, bytes | bytearray):
            return msgspec.json.decode(data, type=kind)
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise InvalidSpec([_field_error(str(exc))]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 inside a string
        raise InvalidSpec([FieldError("$", f"not valid JSON: {exc}")]) from None


def decode_spec(data: bytes | dict[str, object]) -> CampaignSpec:
    """Decode and validate a spec from JSON bytes or a dict; raise ``InvalidSpec``."""
    spec = decode_document(data, CampaignSpec)
    validate_spec(spec)
    return spec


def _field_error(message: str) -> FieldError:
    if " - at `key` in `$" in message:  # a bad key of a mapping (channelQuotas, ranges)
        message = message.replace(" - at `key` in `$", " (a key) - at `$")
    text, sep, path = message.rpartition(" - at `$")
    if not sep:
        match = re.search(r"`([^`]+)`", message)
        return FieldError(match.group(1) if match else "$", message)
    return FieldError(path.rstrip("`").lstrip(".") or "$", text)


def validate_spec(spec: CampaignSpec) -> None:
    """Check the rules types alone cannot; raise ``InvalidSpec`` listing every broken one."""
    errors = [FieldError(f, m) for f, m in _rule_violations(spec)]
    if errors:
        raise InvalidSpec(errors)


def _rule_violations(spec: CampaignSpec) -> list[tuple[str, str]]:
    found = _kind_violations(spec)
    if spec.daily_stock is not None and spec.daily_stock > spec.stock:
        found.append(("dailyStock", "must not exceed stock"))
    if spec.budget_cents is not None and spec.budget_cents < spec.value_cents:
        found.append(("budgetCents", "must cover at least one coupon's value"))
    if spec.per_user_daily_limit is not None and spec.per_user_daily_limit > spec.per_user_limit:
        found.append(("perUserDailyLimit", "must not exceed perUserLimit"))
    if spec.ends_at <= spec.starts_at:
        found.append(("endsAt", "must be after startsAt"))
    try:
        ZoneInfo(spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        found.append(("timeZone", f"unknown time zone {spec.time_zone!r}"))
    found += _claim_rule_violations(spec)
    found += _shard_violations(spec)
    if isinstance(spec.validity, FixedWindow):
        if spec.validity.valid_until <= spec.validity.valid_from:
            found.append(("validity.validUntil", "must be after validFrom"))
        if spec.validity.valid_until <= spec.starts_at:
            found.append(("validity.validUntil", "must be after startsAt"))
    found.extend(usage_violations(spec.usage))
    return found


def _claim_rule_violations(spec: CampaignSpec) -> list[tuple[str, str]]:
    """Windows, channel quotas, money caps, cost sharing, ranges and offers."""
    found = window_violations(spec.windows) if spec.windows is not None else []
    for channel, quota in spec.channel_quotas.items():
        if quota > spec.stock:
            found.append((f"channelQuotas.{channel}", "must not exceed stock"))
        if spec.channels and channel not in spec.channels:
            found.append((f"channelQuotas.{channel}", "is not one of channels"))
    for name, cap in (
        ("perUserMoneyCapCents", spec.per_user_money_cap_cents),
        ("dailyBudgetCents", spec.daily_budget_cents),
    ):
        if cap is not None and cap < spec.value_cents:
            found.append((name, "must cover at least one coupon's value"))
    daily, total = spec.daily_budget_cents, spec.budget_cents
    if daily is not None and total is not None and daily > total:
        found.append(("dailyBudgetCents", "must not exceed budgetCents"))
    shared = spec.cost.source is CostSource.SHARED
    if shared and not 1 <= (spec.cost.platform_percent or 0) <= 99:
        found.append(("cost.platformPercent", "must be between 1 and 99 for a shared cost"))
    if not shared and spec.cost.platform_percent is not None:
        found.append(
            ("cost.platformPercent", f"only a shared cost has one, not {spec.cost.source}")
        )
    for name, bounds in spec.audience.ranges.items():
        limits = [b for b in (bounds.min, bounds.max) if b is not None]
        if not limits or any(b != b or abs(b) == float("inf") for b in limits):
            found.append((f"audience.ranges.{name}", "needs a finite min or max"))
        elif bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
            found.append((f"audience.ranges.{name}", "min must not exceed max"))
    for i, offer in enumerate(spec.audience.offers):
        if spec.id in (offer.holds, offer.offer):
            found.append((f"audience.offers[{i}]", "must name other campaigns"))
    return found


#: What a campaign over several stock shards may not have: each is counted on one shard
#: only, so across shards it would not be exact (gateway/shards/, README "Hot campaigns").
#: Budgets: with one value per coupon a budget is a stock of budget / value; set that.
_UNSHARDABLE = (
    ("dailyStock", "daily_stock"),
    ("budgetCents", "budget_cents"),
    ("dailyBudgetCents", "daily_budget_cents"),
    ("perDeviceLimit", "per_device_limit"),
    ("exclusionGroup", "exclusion_group"),
)


def _shard_violations(spec: CampaignSpec) -> list[tuple[str, str]]:
    """A sharded campaign keeps only the rules that stay exact per user over shards."""
    if spec.stock_shards == 1:
        return []
    found = [
        (name, "is not allowed with stockShards > 1 (not exact across shards)")
        for name, attribute in _UNSHARDABLE
        if getattr(spec, attribute) is not None
    ]
    if spec.channel_quotas:
        found.append(("channelQuotas", "is not allowed with stockShards > 1"))
    if spec.stock < spec.stock_shards:
        found.append(("stockShards", "must not exceed stock"))
    return found


def _kind_violations(spec: CampaignSpec) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    face_valued = (Kind.CASH_OFF, Kind.NO_THRESHOLD, Kind.POINTS_EXCHANGE)
    if spec.kind in face_valued and spec.face_value_cents <= 0:
        found.append(("faceValueCents", f"must be positive for {spec.kind}"))
    if spec.kind is Kind.CASH_OFF and spec.threshold_cents <= spec.face_value_cents:
        found.append(("thresholdCents", "must exceed faceValueCents for cash_off"))
    if spec.kind is Kind.NO_THRESHOLD and spec.threshold_cents:
        found.append(("thresholdCents", "must be 0 for no_threshold"))
    if spec.kind is Kind.PERCENT_OFF and not 1 <= spec.percent_off <= 99:
        found.append(("percentOff", "must be between 1 and 99 for percent_off"))
    if spec.kind in (Kind.PERCENT_OFF, Kind.FREE_ORDER) and spec.max_discount_cents <= 0:
        found.append(("maxDiscountCents", f"must be positive for {spec.kind}"))
    if spec.kind is Kind.POINTS_EXCHANGE and spec.points_cost <= 0:
        found.append(("pointsCost", "must be positive for points_exchange"))
    return found


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def redis_config(campaign: Campaign) -> dict[str, str | int]:
    """The flat hash ``claim.lua`` and the gateway's caches read (0 means "no limit")."""
    validity = campaign.validity
    config: dict[str, str | int] = {
        "cid": campaign.id,
        "status": campaign.status.value,
        "version": campaign.version,
        "start": _ms(campaign.starts_at),
        "end": _ms(campaign.ends_at),
        "tz": campaign.time_zone,
        "stock": campaign.stock,
        "dstock": campaign.daily_stock or 0,
        "budget": campaign.budget_cents or 0,
        "value": campaign.value_cents,
        "ulimit": campaign.per_user_limit,
        "udlimit": campaign.per_user_daily_limit or 0,
        "dlimit": campaign.per_device_limit or 0,
        "newonly": int(campaign.audience.new_users_only),
        "minlevel": campaign.audience.min_level,
        "tags": _csv(campaign.audience.tags),
        "channels": _csv(campaign.channels),
        "group": campaign.exclusion_group or "",
        "vmode": "fixed",
        "vuntil": 0,
        "vdays": 0,
        # Claim rules (gateway/rules/): the gateway's part as JSON, claim.lua's as numbers.
        "rules": _rules_json(campaign),
        "quotas": _csv([f"{c}={n}" for c, n in campaign.channel_quotas.items()]),
        "ucap": campaign.per_user_money_cap_cents or 0,
        "dbudget": campaign.daily_budget_cents or 0,
        "shards": campaign.stock_shards,  # gateway/shards/: each shard's copy sets its stock
    }
    if isinstance(validity, FixedWindow):
        config["vuntil"] = _ms(validity.valid_until)
    elif isinstance(validity, DaysAfterClaim):
        config.update(vmode="days", vdays=validity.days)
    else:
        config["vmode"] = "eod"
    return config


def rules_of(campaign: CampaignSpec) -> Rules:
    """The rules a worker decides before Redis."""
    audience = campaign.audience
    return Rules(
        windows=campaign.windows,
        cities=list(campaign.cities),
        city_source=campaign.city_source,
        ranges=dict(audience.ranges),
        attributes_from=audience.attributes_from,
        offers=list(audience.offers),
    )


def _rules_json(campaign: CampaignSpec) -> str:
    rules = rules_of(campaign)
    return "" if rules.empty else msgspec.json.encode(rules).decode()


def _csv(items: list[str]) -> str:
    """``",a,b,"``: Lua finds ``",a,"`` in it with a plain ``string.find``."""
    return f",{','.join(items)}," if items else ""
