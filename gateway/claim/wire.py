"""The claim path's own Redis connection: hiredis packs and parses, nothing else in between.

redis-py spends more per call than the claim script spends per claim: a pool checkout,
per-command option handling, response callbacks, an async read loop per reply. The claim
path needs three commands (EVALSHA, SCRIPT LOAD, MGET), so it speaks RESP itself over one
pipelined connection: ``hiredis.pack_command`` builds the request, ``hiredis.Reader``
parses the replies as they arrive, and replies are matched to callers in order (Redis
answers one connection's commands in the order sent). Every campaign's batches share the
connection, so calls of different campaigns ride the same writes and reads.

Errors are redis-py's: a reply error becomes the exception redis-py would raise for it
(``NoScriptError``, ``MovedError``, ``AskError``, ``ResponseError``...), a lost or refused
connection a ``redis.exceptions.ConnectionError``; the claim endpoint answers both with
UNAVAILABLE. ``evalsha`` loads the script again on NOSCRIPT (after a restart, a failover or
``SCRIPT FLUSH``). A broken connection is opened again on the next call, and a call that
failed on a broken connection is sent again, up to ``RETRIES`` times: safe for claims,
whose replay records answer what a first sending already decided, and for reads. A
caller that gives up (its timeout) leaves the connection as it is unless nothing at all
was answered on it while it waited.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.connection import parse_url
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    InvalidResponse,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

RETRIES = 3
BACKOFF_S = (0.05, 0.1, 0.2)


class _ErrorReply(Exception):
    """What the reader makes of an error reply, before it is given redis-py's class."""


def supports(url: str) -> bool:
    """Whether this connection can reach ``url`` (TCP or a Unix socket, no TLS)."""
    return url.startswith(("redis://", "unix://"))


class _Protocol(asyncio.Protocol):
    """Feeds bytes to the reader and hands each reply to the caller next in line."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(
            encoding="utf-8", protocolError=InvalidResponse, replyError=_ErrorReply
        )
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.replies = 0  # replies read so far: a caller that gave up checks for progress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self.replies += 1
                future = waiting.popleft()
                if future.done():  # its caller gave up (timeout); the reply is dropped
                    continue
                if isinstance(reply, _ErrorReply):
                    future.set_exception(BaseParser.parse_error(str(reply)))  # type: ignore[no-untyped-call]
                else:
                    future.set_result(reply)
        except InvalidResponse as exc:  # the stream is lost: nothing after it can be matched
            self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class Wire:
    """One pipelined RESP connection to the Redis at ``url``, opened on first use."""

    def __init__(
        self, url: str, connect_timeout_s: float, address: tuple[str, int] | None = None
    ) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        if address is not None:  # another node of the cluster ``url`` names
            self._options.update(host=address[0], port=address[1])
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def command(self, *args: str | int | float | bytes, retries: int = RETRIES) -> Any:
        """Send one command, return its reply (redis-py's exception for an error reply)."""
        for attempt in range(retries + 1):
            try:
                return await self._send(args)
            except RedisConnectionError:
                if attempt == retries:
                    raise
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        raise AssertionError("unreachable")

    async def evalsha(
        self, script: Script, keys: list[str], args: list[str | int], *, asking: bool = False
    ) -> Any:
        """Run ``script`` by its digest; load it first if this Redis does not know it.
        ``asking``: precede it with ASKING (a cluster slot being migrated here)."""
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await (self._asking(call) if asking else self.command(*call))
        except NoScriptError:
            await self.command("SCRIPT", "LOAD", script.text)
            return await (self._asking(call) if asking else self.command(*call))

    async def wait(self, key: str, replicas: int, timeout_ms: int) -> int:
        """``WAIT``: how many replicas acknowledged every write sent on this connection so
        far, waiting ``timeout_ms`` at most (``key`` matters only on a cluster)."""
        return int(await self.command("WAIT", replicas, timeout_ms, retries=0))

    async def _asking(self, call: tuple[str | int, ...]) -> Any:
        """ASKING and ``call`` back to back on one connection (ASKING covers the next
        command only)."""
        asking = asyncio.ensure_future(self._send(("ASKING",)))
        try:
            return await self._send(call)
        finally:
            await asking

    async def aclose(self) -> None:
        """Close the connection (a later call would open it again)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def _send(self, args: tuple[str | int | float | bytes, ...]) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connect()
        transport = protocol.transport
        if transport is None:
            raise RedisConnectionError("connection to Redis lost")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        replies = protocol.replies
        try:
            return await future
        except asyncio.CancelledError:
            # The caller gave up (its timeout); the reply, if it comes, is dropped in turn.
            # A connection that answered nothing at all meanwhile may be dead without
            # knowing it (no RST): start afresh. One that is answering is left alone, so a
            # slow moment does not fail every other campaign's call in flight on it.
            if protocol.replies == replies:
                transport.abort()
            raise

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            options = self._options
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    if "path" in options:
                        _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
                    else:
                        _, protocol = await loop.create_connection(
                            _Protocol, options.get("host", "localhost"), options.get("port", 6379)
                        )
                    self._protocol = protocol
                    await self._hello(protocol)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            return protocol

    async def _hello(self, protocol: _Protocol) -> None:
        """Authenticate and select the database the URL names."""
        options = self._options
        setup: list[tuple[str | int, ...]] = []
        if options.get("password"):
            user = options.get("username")
            setup.append(
                ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
            )
        if options.get("db"):
            setup.append(("SELECT", int(options["db"])))
        for args in setup:
            await self._send(args)


class ClusterWire:
    """The claim path's connections to a Redis Cluster: one ``Wire`` per master, each
    command sent to the master of its key's slot (every key of a claim decision shares a
    campaign's hash tag, so one slot decides a batch).

    The slot map comes from ``CLUSTER SLOTS`` of any node that answers (the seed of
    ``url`` first, then every node seen so far). ``MOVED`` (a slot now served elsewhere)
    updates the map and sends again; ``ASK`` (a slot being migrated) sends ``ASKING`` and
    the command to the node named; a lost connection, ``CLUSTERDOWN``, ``READONLY`` (a
    master turned replica) or ``TRYAGAIN`` read the map again after a pause, and send
    again: the claim service's timeout bounds the whole. After a failover the first call
    that fails on the dead master rereads the map and goes to the promoted replica.
    """

    PAUSES_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0)

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._url = url
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._seed = (options.get("host", "localhost"), int(options.get("port", 6379)))
        self._connect_timeout_s = connect_timeout_s
        self._nodes: dict[tuple[str, int], Wire] = {}
        self._known: list[tuple[str, int]] = [self._seed]  # nodes to ask for the map
        self._slots: list[tuple[str, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._refreshing: asyncio.Lock | None = None
        self.refreshes = 0  # slot maps read so far (tests, metrics)

    async def command(self, *args: str | int | float | bytes) -> Any:
        """Send a command whose first argument (``args[1]``) is a key (MGET, GET...)."""
        key = str(args[1])
        return await self._routed(key, lambda wire, asking: wire.command(*args))

    async def evalsha(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        """Run ``script`` on the master of ``keys[0]``'s slot (all keys share it)."""
        return await self._routed(
            keys[0], lambda wire, asking: wire.evalsha(script, keys, args, asking=asking)
        )

    async def wait(self, key: str, replicas: int, timeout_ms: int) -> int:
        """``WAIT`` on the connection to ``key``'s master: how many replicas acknowledged
        every write sent on it so far, waiting ``timeout_ms`` at most."""
        wire = self._wire(self._slots[key_slot(key.encode())] or self._seed)
        return int(await wire.command("WAIT", replicas, timeout_ms, retries=0))

    async def aclose(self) -> None:
        """Close every node's connection."""
        nodes, self._nodes = self._nodes, {}
        for wire in nodes.values():
            await wire.aclose()

    async def _routed(self, key: str, send: Any) -> Any:
        slot = key_slot(key.encode())
        asking_node: tuple[str, int] | None = None
        for attempt, pause in enumerate((*self.PAUSES_S, None)):
            node = asking_node or self._slots[slot]
            if node is None:
                await self._refresh()
                node = self._slots[slot]
                if node is None:
                    raise ClusterDownError(f"CLUSTERDOWN no node serves slot {slot}")
            try:
                return await send(self._wire(node), asking_node is not None)
            except MovedError as moved:
                self._slots[moved.slot_id] = (moved.host, moved.port)
                asking_node = None
                if attempt == 0:
                    self._schedule_refresh()  # more slots may have moved with this one
                continue
            except AskError as ask:  # after MovedError: MovedError is an AskError
                asking_node = (ask.host, ask.port)
                continue
            except (RedisConnectionError, ClusterDownError, ReadOnlyError, TryAgainError):
                if pause is None:
                    raise
                asking_node = None
            await asyncio.sleep(pause)
            await self._refresh()
        raise ClusterDownError(f"CLUSTERDOWN slot {slot}: too many redirections")

    def _wire(self, node: tuple[str, int]) -> Wire:
        wire = self._nodes.get(node)
        if wire is None:
            wire = self._nodes[node] = Wire(self._url, self._connect_timeout_s, node)
        return wire

    def _schedule_refresh(self) -> None:
        task = asyncio.ensure_future(self._refresh())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _refresh(self) -> None:
        """Read the slot map from the first node that answers (one at a time)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        if self._refreshing.locked():
            async with self._refreshing:
                return  # someone else just read it
        async with self._refreshing:
            for node in list(self._known):
                try:
                    reply = await self._wire(node).command("CLUSTER", "SLOTS", retries=0)
                except (RedisConnectionError, ClusterDownError):
                    continue
                self._apply(reply)
                self.refreshes += 1
                return
            raise RedisConnectionError("no Redis Cluster node answers CLUSTER SLOTS")

    def _apply(self, reply: list[list[Any]]) -> None:
        slots: list[tuple[str, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        known = [self._seed]
        for start, end, master, *replicas in reply:
            owner = (str(master[0]) or self._seed[0], int(master[1]))
            slots[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            for node in (owner, *((str(r[0]) or self._seed[0], int(r[1])) for r in replicas)):
                if node not in known:
                    known.append(node)
        self._slots = slots
        self._known = known + [n for n in self._known if n not in known]


class Script:
    """A Lua script's text and the SHA1 digest EVALSHA names it by."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
