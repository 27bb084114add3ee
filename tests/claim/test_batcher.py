"""The batcher alone: no timers, bounded batches, one call in flight, failures delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.claim.batcher import Batcher


class Recorder:
    """A batch runner that records each batch and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on: set[int] = set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail_on & set(items):
                raise RuntimeError("batch failed")
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1


async def test_a_lone_item_is_sent_at_once():
    run = Recorder()
    batcher = Batcher(run, max_size=8)
    assert await asyncio.wait_for(batcher.submit(1), 1.0) == 10
    assert run.batches == [[1]]


async def test_items_of_one_loop_turn_ride_together():
    run = Recorder()
    batcher = Batcher(run, max_size=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1, 2, 3, 4]]


async def test_items_arriving_during_a_call_wait_for_the_next_one_in_bounded_batches():
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, max_size=3)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert run.batches == [[0]]  # in flight, held open
    later = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 8)]
    await asyncio.sleep(0)
    assert run.batches == [[0]], "nothing more is sent while a call is in flight"
    run.gate.set()
    assert await asyncio.gather(first, *later) == [i * 10 for i in range(8)]
    assert run.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert run.most_in_flight == 1


async def test_a_failed_batch_fails_its_waiters_only_and_the_drain_goes_on():
    run = Recorder()
    run.gate.clear()
    run.fail_on = {2}
    batcher = Batcher(run, max_size=2)
    futures = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    run.gate.set()
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert run.batches == [[0, 1], [2, 3], [4]]
    assert outcomes[:2] == [0, 10]
    assert all(isinstance(o, RuntimeError) for o in outcomes[2:4])
    assert outcomes[4] == 40


async def test_a_cancelled_waiter_does_not_stop_its_batch():
    """A client that hangs up must not undo a decision already sent to Redis."""
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, max_size=4)
    gone = asyncio.ensure_future(batcher.submit(1))
    stays = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    run.gate.set()
    assert await stays == 20
    assert run.batches == [[1, 2]], "the cancelled item was still decided with its batch"
    assert await batcher.submit(3) == 30, "the batcher keeps working afterwards"
