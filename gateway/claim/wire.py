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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError

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

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def command(self, *args: str | int | float | bytes) -> Any:
        """Send one command, return its reply (redis-py's exception for an error reply)."""
        for attempt in range(RETRIES + 1):
            try:
                return await self._send(args)
            except RedisConnectionError:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        raise AssertionError("unreachable")

    async def evalsha(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        """Run ``script`` by its digest; load it first if this Redis does not know it."""
        try:
            return await self.command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.command("SCRIPT", "LOAD", script.text)
            return await self.command("EVALSHA", script.sha, len(keys), *keys, *args)

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


class Script:
    """A Lua script's text and the SHA1 digest EVALSHA names it by."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
