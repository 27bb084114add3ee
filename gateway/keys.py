"""Every Redis key name flashclaim uses, built here and nowhere else.

All keys one claim decision touches carry the same hash tag, so a Redis Cluster keeps
the decision on one slot: ``{c:<campaign>}`` for a campaign of its own, ``{g:<group>}``
for every campaign of an exclusion group (a claim must see the group's holdings).
Lua scripts receive these names in ``KEYS`` and never build one themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "fc"

#: Hash campaign id -> exclusion group ("" for none): where a campaign's keys live.
CAMPAIGN_INDEX = f"{PREFIX}:campaigns"

#: Pub/sub channel on which a changed campaign's id is announced to every worker.
CAMPAIGN_EVENTS = f"{PREFIX}:campaign-events"


#: Hash campaign id -> its number of stock shards, for campaigns with more than one.
CAMPAIGN_SHARDS = f"{PREFIX}:campaign-shards"


def tag_for(campaign_id: str, group: str, shard: int = 0) -> str:
    """The hash tag that keeps one campaign's (or one group's) keys on one slot; a hot
    campaign's stock shard 1, 2, ... has a tag (a slot) of its own (gateway/shards/)."""
    if shard:
        return f"{{c:{campaign_id}/{shard}}}"
    return f"{{g:{group}}}" if group else f"{{c:{campaign_id}}}"


@dataclass(frozen=True, slots=True)
class CampaignKeys:
    """The keys of one published campaign."""

    campaign_id: str
    group: str
    shard: int = 0  # a hot campaign's stock shard (gateway/shards/); 0 is the campaign's own

    def of_shard(self, shard: int) -> CampaignKeys:
        """The same campaign's keys on stock shard ``shard`` (each shard its own slot)."""
        return CampaignKeys(self.campaign_id, self.group, shard)

    @property
    def base(self) -> str:
        """Common prefix: ``fc:{tag}:c:<campaign>``."""
        return f"{PREFIX}:{tag_for(self.campaign_id, self.group, self.shard)}:c:{self.campaign_id}"

    @property
    def config(self) -> str:
        """Hash: the published campaign (written by operators, read by the script)."""
        return f"{self.base}:cfg"

    @property
    def spec(self) -> str:
        """String: the campaign as published, JSON (for readers needing more than ``config``,
        e.g. the public page: name, kind, validity, page copy). Status and stock are
        ``config``'s: pause, resume and top-up change only those."""
        return f"{self.base}:spec"

    @property
    def counters(self) -> str:
        """Hash: ``issued`` coupons and ``spent`` cents (written only by scripts)."""
        return f"{self.base}:counters"

    @property
    def users(self) -> str:
        """Hash: user id -> coupons claimed in total."""
        return f"{self.base}:users"

    @property
    def devices(self) -> str:
        """Hash: device id -> coupons claimed in total."""
        return f"{self.base}:devices"

    @property
    def blocked(self) -> str:
        """Set: ``u:<user>`` and ``d:<device>`` members that may not claim."""
        return f"{self.base}:blocked"

    @property
    def holds(self) -> str:
        """Hash: user id -> ``<campaign>:<expires ms>`` of the group coupon held.

        Shared by every campaign of the exclusion group (one per campaign without one).
        """
        return f"{PREFIX}:{tag_for(self.campaign_id, self.group, self.shard)}:holds"

    @property
    def outbox(self) -> str:
        """Stream: accepted claims waiting to be relayed to Kafka."""
        return f"{self.base}:outbox"

    @property
    def winners(self) -> str:
        """List: requestIds of accepted claims, in order, kept while the stock is small
        enough (``claim.lua``'s winners cap); complete while its length equals issued."""
        return f"{self.base}:winners"

    def daily(self, day: str) -> str:
        """String: coupons issued on ``day`` (``YYYYMMDD`` in the campaign's zone)."""
        return f"{self.base}:day:{day}:issued"

    def users_daily(self, day: str) -> str:
        """Hash: user id -> coupons claimed on ``day``."""
        return f"{self.base}:day:{day}:users"

    @property
    def user_money(self) -> str:
        """Hash: user id -> cents of coupon value claimed in total (per-user money cap)."""
        return f"{self.base}:money:users"

    def daily_money(self, day: str) -> str:
        """String: cents of coupon value issued on ``day`` (per-day money budget)."""
        return f"{self.base}:day:{day}:money"

    def claim_keys(self, day: str) -> list[str]:
        """The fixed KEYS of ``claim.lua``, in its header's order (claims' records follow)."""
        return [
            self.config,
            self.counters,
            self.users,
            self.devices,
            self.blocked,
            self.holds,
            self.outbox,
            self.daily(day),
            self.users_daily(day),
            self.winners,
            self.user_money,
            self.daily_money(day),
        ]

    @property
    def codes(self) -> str:
        """Hash: keyed hash of a redeem code -> "" while unused, ``<user>\t<requestId>``
        once redeemed (written by ``claim.lua`` in the claim's own step)."""
        return f"{self.base}:codes"

    @property
    def transfers(self) -> str:
        """Hash: this shard's stock lent and not yet settled, transfer id ->
        ``<recipient shard>\t<amount>`` (the durable transfer log: gateway/shards/)."""
        return f"{self.base}:transfers"

    @property
    def credited(self) -> str:
        """Set: ids of transfers this shard has been credited with (so a credit is applied
        once, however often it is replayed)."""
        return f"{self.base}:credited"

    def recent(self, user_id: str) -> str:
        """Hash: the user's recent claims in this campaign, couponId -> ``RecentClaim``
        (``claim.lua`` writes it with the replay TTL; the wallet and the lock read it)."""
        return f"{self.base}:recent:{user_id}"

    def request(self, request_id: str) -> str:
        """String: the answer given to an accepted ``requestId``, for replay."""
        return f"{self.base}:req:{request_id}"


# Channels (gateway/channels/): redeem codes and automatic triggers.

#: Hash: keyed hash of a redeem code -> its campaign id (where to look it up).
CODE_INDEX = f"{PREFIX}:codes"


def code_failures(kind: str, who: str) -> str:
    """String: failed redeem attempts of a user, device or IP (``kind``) in the window."""
    return f"{PREFIX}:codefail:{kind}:{who}"


def code_lock(kind: str, who: str) -> str:
    """String, expiring: set while a user, device or IP is locked out of redeeming."""
    return f"{PREFIX}:codelock:{kind}:{who}"


def skydrop_opens(user_id: str) -> str:
    """Hash: ``opens`` -> the user's app opens counted so far, ``r:<requestId>`` -> which
    open that request was (a retried open keeps its number; "first N opens" rules)."""
    return f"{PREFIX}:skydrop:{{{user_id}}}"


# Statistics (gateway/stats/): exposures counted per campaign-zone day. Not touched by any
# Lua script, so no hash tag; each day's keys expire once rolled up into PostgreSQL.

#: Set of ``<campaign>|<YYYYMMDD>`` days with exposures not yet final in PostgreSQL.
EXPOSURE_DAYS = f"{PREFIX}:x:days"

#: Set of ``YYYYMMDDHH`` (UTC) hours with abuse refusals not yet final in PostgreSQL.
ABUSE_HOURS = f"{PREFIX}:ab:hours"


def abuse_hour(hour: str) -> str:
    """Hash ``<campaign>|<reason>`` -> abuse refusals in that UTC hour, all workers summed."""
    return f"{PREFIX}:ab:{hour}"


def exposure_views(campaign_id: str, day: str) -> str:
    """Hash: channel -> views of ``campaign_id`` on ``day`` (campaign zone)."""
    return f"{PREFIX}:x:{campaign_id}:{day}:views"


def exposure_viewers(campaign_id: str, day: str, channel: str = "") -> str:
    """HyperLogLog: viewers of ``campaign_id`` on ``day``, of one channel or ("") of all."""
    suffix = f":{channel}" if channel else ""
    return f"{PREFIX}:x:{campaign_id}:{day}:viewers{suffix}"


def exposure_batch(batch_id: str) -> str:
    """String: a front-end's batch already counted (a resent batch counts nothing)."""
    return f"{PREFIX}:x:batch:{{{batch_id}}}"


#: Hash campaign id -> the experiment it is a variant of (read by the claim path).
EXPERIMENT_OF = f"{PREFIX}:experiments"


def experiment(experiment_id: str) -> str:
    """String: the experiment as published, JSON (variants, weights, the promoted one)."""
    return f"{PREFIX}:experiment:{experiment_id}"
