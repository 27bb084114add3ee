"""Smart batching: while one call is in flight, the next claims queue up.

No timer is involved. A claim arriving at an idle batcher is sent at once (after one
turn of the event loop, which gathers every claim that arrived in the same turn); claims
arriving while a call is in flight ride together in the next call, up to ``max_size``.
At low load nobody waits; at T0 one round trip decides a hundred claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchRunner = Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]


class Batcher(Generic[Item, Result]):
    """Feeds queued items to ``run`` in bounded batches, one call in flight at a time."""

    def __init__(self, run: BatchRunner[Item, Result], max_size: int) -> None:
        self._run = run
        self._max_size = max_size
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining = False

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` and wait for its result (or the batch's exception)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run batches until the queue is empty. The task outlives cancelled waiters,
        so a decision that was sent is always seen through and counted."""
        try:
            while self._queue:
                batch = self._queue[: self._max_size]
                del self._queue[: self._max_size]
                await self._run_one(batch)
        finally:
            self._draining = False

    async def _run_one(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:  # every waiter hears the failure; the drain goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
