"""Does the Redis we are given keep accepted claims across a restart?

An accepted claim lives only in Redis (its counters and its outbox entry) until the relay
has handed it to Kafka. A Redis with neither an AOF nor snapshots forgets all of it when
it restarts: coupons users were told they won, gone, and stock counters rewound.

``read_persistence`` asks Redis (``CONFIG GET appendonly appendfsync save``; managed
services often rename or forbid CONFIG, then ``INFO persistence``, which tells whether
the AOF is on but not the snapshot schedule or the fsync policy: those are "unknown").

``PersistenceGuard`` turns that into the gateway's rule, checked at start and every
``RECHECK_S`` seconds (so ``CONFIG SET appendonly yes`` reopens a refusing gateway, and a
failover to a replica without persistence closes it):

* AOF on, or snapshots on: claims are served;
* neither (or AOF off and the snapshots unknown): claims are **refused**, answered 503
  UNAVAILABLE with a message saying why and how to fix it; ``/readyz`` answers 503 so a
  load balancer sends claims elsewhere; ``/livez`` stays 200 (a restart would not help);
* unless ``FLASHCLAIM_ALLOW_VOLATILE_REDIS=true``: then claims are served and the risk is
  said in ``/readyz``, the ``flashclaim up`` banner and ``flashclaim_redis_volatile_allowed``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from gateway.infra import metrics

log = logging.getLogger(__name__)

RECHECK_S = 10.0
RETRY_S = 1.0  # while the persistence is not known yet
ALLOW_VARIABLE = "FLASHCLAIM_ALLOW_VOLATILE_REDIS"


@dataclass(frozen=True, slots=True)
class Persistence:
    """What a Redis keeps on disk; ``None`` / ``""`` where it would not say."""

    aof: bool | None
    fsync: str  # appendfsync: always, everysec, no; "" when unknown
    snapshots: bool | None
    source: str  # "CONFIG GET" or "INFO persistence"

    @property
    def mode(self) -> str:
        """``aof``, ``snapshots``, ``none`` or ``unknown`` (AOF off, snapshots not known)."""
        if self.aof:
            return "aof"
        if self.snapshots:
            return "snapshots"
        return "none" if self.aof is False and self.snapshots is False else "unknown"

    @property
    def keeps_claims(self) -> bool:
        """Whether a restart of this Redis finds the accepted claims again (some of them,
        for snapshots: those up to the last one)."""
        return self.mode in ("aof", "snapshots")

    def describe(self) -> str:
        """One sentence for an operator."""
        if self.mode == "aof":
            fsync = self.fsync or "unknown"
            return f"AOF on (appendfsync {fsync}, read by {self.source})"
        if self.mode == "snapshots":
            return "snapshots only: a crash loses the claims accepted since the last one"
        if self.mode == "none":
            return "nothing on disk (appendonly no, no snapshots): a restart forgets every claim"
        return f"AOF off and the snapshot schedule unknown ({self.source}; CONFIG unavailable)"

    def as_json(self) -> dict[str, Any]:
        """For ``/readyz``."""
        return {
            "mode": self.mode,
            "aof": self.aof,
            "appendfsync": self.fsync or None,
            "snapshots": self.snapshots,
            "source": self.source,
        }


async def read_persistence(redis: Redis) -> Persistence:
    """Ask Redis what it keeps on disk (``RedisError`` if it does not answer at all).
    On a Redis Cluster, every node is asked and the one that keeps least decides (any
    node may be a master after a failover)."""
    if isinstance(redis, RedisCluster):
        return await _cluster_persistence(redis)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for name in ("appendonly", "appendfsync", "save"):  # one each: Redis 6 takes one
                pipe.config_get(name)
            replies: list[dict[str, str]] = await pipe.execute()
    except ResponseError:  # CONFIG renamed or forbidden (managed Redis, ACLs)
        info: dict[str, Any] = await redis.info("persistence")
        return Persistence(
            aof=bool(int(info.get("aof_enabled", 0))),
            fsync="",
            snapshots=None,
            source="INFO persistence",
        )
    config = {key: value for reply in replies for key, value in reply.items()}
    return Persistence(
        aof=config.get("appendonly") == "yes",
        fsync=config.get("appendfsync", ""),
        snapshots=bool(config.get("save", "").strip()),
        source="CONFIG GET",
    )


_KEEPING = {"aof": 0, "snapshots": 1, "unknown": 2, "none": 3}


async def _cluster_persistence(cluster: RedisCluster) -> Persistence:
    """The weakest node's persistence (``CONFIG`` is a per-node command; nodes are asked
    at once, so the check takes a node's round trips, not six nodes')."""
    await cluster.initialize()  # reads the slot map on first use (a no-op after)
    found = await asyncio.gather(*(_node_persistence(cluster, n) for n in cluster.get_nodes()))
    if not found:
        raise RedisError("no Redis Cluster node is known")
    return max(found, key=lambda p: (_KEEPING[p.mode], p.fsync != "always"))


async def _node_persistence(cluster: RedisCluster, node: Any) -> Persistence:
    config: dict[str | None, str | None] = {}
    try:
        names = ("appendonly", "appendfsync", "save")  # one each: Redis 6 takes one
        for reply in await asyncio.gather(
            *(cluster.config_get(n, target_nodes=node) for n in names)
        ):
            config.update(reply)
    except ResponseError:  # CONFIG renamed or forbidden
        info: dict[str, Any] = await cluster.info("persistence", target_nodes=node)
        return Persistence(bool(int(info.get("aof_enabled", 0))), "", None, "INFO persistence")
    aof, fsync = config.get("appendonly") == "yes", config.get("appendfsync") or ""
    snapshots = bool((config.get("save") or "").strip())
    return Persistence(aof, fsync, snapshots, "CONFIG GET")


class PersistenceGuard:
    """Whether claims may be served from this Redis, kept up to date by ``watch``."""

    def __init__(self, redis: Redis, *, allow_volatile: bool, timeout_s: float) -> None:
        self._redis = redis
        self._allow_volatile = allow_volatile
        self._timeout_s = timeout_s
        self.state: Persistence | None = None
        #: Why claims are refused now, or None when they are served (read by every claim:
        #: a plain attribute, worked out when the state changes).
        self.refusal: str | None = self._refusal()

    @property
    def volatile_allowed(self) -> bool:
        """Serving claims from a Redis that would forget them, because a setting says so."""
        return self._allow_volatile and self.state is not None and not self.state.keeps_claims

    def _refusal(self) -> str | None:
        if self.state is None:
            return "Redis persistence is not known yet (Redis has not answered); retry shortly"
        if self.state.keeps_claims or self._allow_volatile:
            return None
        return (
            f"claims are refused: Redis keeps {self.state.describe()}. Turn on its AOF"
            f" (CONFIG SET appendonly yes), or set {ALLOW_VARIABLE}=true to accept the loss"
        )

    async def check(self) -> bool:
        """Read Redis's persistence now; False if Redis did not answer (state kept)."""
        # A cluster's check reads the slot map (first time) and asks every node: more
        # round trips than one Redis's single pipeline, so it gets more time.
        timeout_s = self._timeout_s * (5 if isinstance(self._redis, RedisCluster) else 1)
        try:
            async with asyncio.timeout(timeout_s):
                state = await read_persistence(self._redis)
        except (RedisError, OSError) as exc:
            log.debug("could not read Redis persistence: %s", exc)
            return False
        if state != self.state:
            level = logging.INFO if state.keeps_claims else logging.WARNING
            log.log(level, "Redis persistence: %s", state.describe())
        self.state = state
        self.refusal = self._refusal()
        self._export()
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Check again every ``RECHECK_S`` seconds (every ``RETRY_S`` while unknown)."""
        while not stop.is_set():
            delay = RECHECK_S if self.state is not None else RETRY_S
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                await self.check()

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` says about Redis's persistence."""
        answer: dict[str, Any] = {
            "persistence": self.state.as_json() if self.state else None,
            "volatileAllowed": self.volatile_allowed,
        }
        if self.volatile_allowed:
            answer["warning"] = (
                f"serving claims from a Redis that would forget them ({ALLOW_VARIABLE}=true)"
            )
        return answer

    def _export(self) -> None:
        mode = self.state.mode if self.state else "unknown"
        for each in ("aof", "snapshots", "none", "unknown"):
            metrics.REDIS_PERSISTENCE.labels(each).set(int(each == mode))
        metrics.VOLATILE_REDIS_ALLOWED.set(int(self.volatile_allowed))
