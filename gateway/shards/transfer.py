"""The call contract of ``lua/transfer.lua``, in one typed place.

The script moves stock between a hot campaign's stock shards: ``lend`` on the donor
(debit and log, one step), ``credit`` on the recipient (once per transfer id), ``peek``
to read a shard's figures. Its header says the same in Lua's terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.infra import lua
from gateway.keys import CampaignKeys


@dataclass(frozen=True, slots=True)
class ShardFigures:
    """One shard's figures after a ``transfer.lua`` call."""

    amount: int  # lent or credited by this call (0 for a peek, or a repeated credit)
    left: int  # stock left on the shard
    pending: int  # transfers lent by the shard and not yet settled
    received: int  # stock credited to the shard in total (only grows)
    share: int  # the shard's share of the campaign's stock (cfg.stock)


def transfer_keys(keys: CampaignKeys) -> list[str]:
    """The script's KEYS for the shard ``keys`` names, in its header's order."""
    return [keys.config, keys.counters, keys.transfers, keys.credited]


def decode(reply: Sequence[Any]) -> ShardFigures:
    """The typed form of the script's reply."""
    amount, left, pending, received, share = (int(x) for x in reply)
    return ShardFigures(amount, left, pending, received, share)


class TransferScript:
    """``transfer.lua`` registered on one Redis client."""

    def __init__(self, redis: Redis, major_version: int = 7) -> None:
        self._script = lua.register(redis, "transfer", major_version)

    async def lend(
        self, donor: CampaignKeys, transfer_id: str, recipient: int, wanted: int
    ) -> ShardFigures:
        """Take up to ``wanted`` of the donor's stock and log it for ``recipient``."""
        return await self._call(donor, ["lend", transfer_id, recipient, wanted])

    async def credit(self, recipient: CampaignKeys, transfer_id: str, amount: int) -> ShardFigures:
        """Add a lent ``amount`` to the recipient's stock, once per ``transfer_id``."""
        return await self._call(recipient, ["credit", transfer_id, amount])

    async def peek(self, shard: CampaignKeys) -> ShardFigures:
        """The shard's figures; writes nothing."""
        return await self._call(shard, ["peek"])

    async def raw(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Call with KEYS and ARGV as given (the contract tests send malformed calls)."""
        return await self._script(keys, args)

    async def _call(self, shard: CampaignKeys, args: list[str | int]) -> ShardFigures:
        return decode(await self._script(transfer_keys(shard), args))
