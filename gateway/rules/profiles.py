"""User attributes from the company's user-profile (tag) service, cached, with a timeout.

The interface flashclaim expects of that service (documented in the README):

    GET {FLASHCLAIM_PROFILE_URL}/{userId}
    200 {"attributes": {"churnProbability": 0.42, "orderCount": 7, ...}}
    404 the user has no profile (no attributes: every range refuses)

Numbers only; unknown names are kept (a campaign may range over any of them). Answers
are remembered ``FLASHCLAIM_PROFILE_CACHE_S`` per user (a herd asks once per user). A
lookup that fails or takes longer than ``FLASHCLAIM_PROFILE_TIMEOUT_MS`` raises
``ProfileUnavailable``; the gate then applies ``FLASHCLAIM_PROFILE_FALLBACK``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote

import aiohttp
import msgspec

from gateway.infra.clock import Clock

#: Users remembered at most; the oldest answers go first (a dict keeps insertion order).
CACHE_ENTRIES = 100_000


class ProfileUnavailable(Exception):
    """The profile service did not answer usefully in time."""


class ProfileSource(Protocol):
    """Where a user's numeric attributes come from."""

    async def attributes(self, user_id: str) -> Mapping[str, float]:
        """The user's attributes; ``ProfileUnavailable`` if they cannot be had now."""
        ...


class _Answer(msgspec.Struct):
    attributes: dict[str, float] = msgspec.field(default_factory=dict)


_decoder = msgspec.json.Decoder(_Answer)


class HttpProfiles:
    """The profile service over HTTP (one pooled session, opened on first use)."""

    def __init__(self, base_url: str, timeout_ms: int) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    async def attributes(self, user_id: str) -> Mapping[str, float]:
        """Ask the service; ``ProfileUnavailable`` on any failure or timeout."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self._base}/{quote(user_id, safe='')}"
        try:
            async with self._session.get(url) as response:
                if response.status == 404:
                    return {}
                if response.status != 200:
                    raise ProfileUnavailable(f"profile service answered {response.status}")
                return _decoder.decode(await response.read()).attributes
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            raise ProfileUnavailable(f"profile service: {exc!r}") from None

    async def aclose(self) -> None:
        """Close the session (the app's cleanup)."""
        if self._session is not None:
            await self._session.close()


class CachedProfiles:
    """A ``ProfileSource`` with answers remembered per user for ``ttl_ms``."""

    def __init__(self, source: ProfileSource, clock: Clock, ttl_ms: int, timeout_ms: int) -> None:
        self._source, self._clock = source, clock
        self._ttl_ms, self._timeout_s = ttl_ms, timeout_ms / 1000
        self._entries: dict[str, tuple[int, Mapping[str, float]]] = {}

    async def attributes(self, user_id: str) -> Mapping[str, float]:
        """The user's attributes, from memory when fresh; failures are not remembered."""
        now = self._clock.now_ms()
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._source.attributes(user_id)
        except TimeoutError:
            raise ProfileUnavailable("profile service timed out") from None
        if len(self._entries) >= CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[user_id] = (now + self._ttl_ms, found)
        return found
