"""The claim path's own Redis connection, against a real Redis: replies matched to their
callers, redis-py's errors, NOSCRIPT, a lost connection and a caller that gave up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvloop
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError

from gateway.claim.wire import Script, Wire
from tests.helpers import ON_CLUSTER

pytestmark = pytest.mark.skipif(
    ON_CLUSTER, reason="one Redis's connection; the cluster's is tests/cluster/test_cluster.py"
)


@pytest.fixture
async def wire(settings, redis) -> AsyncIterator[Wire]:  # ``redis``: a flushed server
    connection = Wire(settings.redis_url, 1.0)
    yield connection
    await connection.aclose()


async def test_concurrent_calls_each_get_their_own_reply(wire, redis):
    await redis.set("k", "v")
    replies = await asyncio.gather(*(wire.command("ECHO", f"m{n}") for n in range(300)))
    assert replies == [f"m{n}" for n in range(300)]
    assert await wire.command("MGET", "k", "missing") == ["v", None]
    assert await wire.command("INCRBY", "n", 5) == 5


async def test_reply_errors_are_redis_pys(wire):
    with pytest.raises(ResponseError, match="unknown command"):
        await wire.command("NO-SUCH-COMMAND")
    for reply, error in (("MOVED 3999 127.0.0.1:6381", MovedError), ("ASK 1 h:1", AskError)):
        with pytest.raises(error):
            await wire.command("EVAL", f"return redis.error_reply('{reply}')", 0)
    with pytest.raises(NoScriptError):
        await wire.command("EVALSHA", "0" * 40, 0)
    assert await wire.command("PING") == "PONG"  # the stream is still in step


async def test_script_is_loaded_again_after_a_flush(wire, redis):
    script = Script("return ARGV[1] .. KEYS[1]")
    assert await wire.evalsha(script, ["k"], ["v"]) == "vk"
    await redis.script_flush()
    assert await wire.evalsha(script, ["k"], ["w"]) == "wk"
    assert await redis.script_exists(script.sha) == [True]


async def test_a_killed_connection_is_opened_again(wire, redis):
    assert await wire.command("CLIENT", "SETNAME", "claim-wire") == "OK"
    await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await wire.command("ECHO", "back") == "back"


async def test_a_caller_that_gave_up_leaves_the_connection_usable(wire, redis):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await wire.command("BLPOP", "nothing", 1)
    both = await asyncio.gather(wire.command("ECHO", "a"), wire.command("ECHO", "b"))
    assert list(both) == ["a", "b"]


async def test_the_urls_database_is_selected(settings, redis):
    connection = Wire(settings.redis_url.rsplit("/", 1)[0] + "/3", 1.0)
    try:
        await connection.command("SET", "in-db-3", "yes")
    finally:
        await connection.aclose()
    assert await redis.get("in-db-3") is None
    await redis.execute_command("SELECT", 3)  # this pool's connection: the test's own
    assert await redis.execute_command("GET", "in-db-3") == "yes"
    await redis.execute_command("FLUSHDB")


async def test_an_unreachable_redis_is_a_connection_error():
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gateway.stack.servers import free_port

    connection = Wire(f"redis://127.0.0.1:{free_port()}/0", 0.2)
    with pytest.raises(RedisConnectionError):
        await connection.command("PING")


def test_it_runs_on_uvloop_as_the_workers_do(settings):
    async def talk() -> list[str]:
        connection = Wire(settings.redis_url, 1.0)
        try:
            return list(await asyncio.gather(*(connection.command("ECHO", c) for c in "abc")))
        finally:
            await connection.aclose()

    assert uvloop.run(talk()) == ["a", "b", "c"]


async def test_a_caller_that_gave_up_on_an_answering_connection_keeps_it(wire):
    before = await wire.command("CLIENT", "ID")
    first = asyncio.ensure_future(wire.command("BLPOP", "nothing", 0.1))  # answers nil
    await asyncio.sleep(0)  # sent first
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await wire.command("BLPOP", "nothing-either", 0.6)
    assert await first is None
    assert await wire.command("CLIENT", "ID") == before  # not torn down: the same client


async def test_a_caller_that_gave_up_on_a_silent_connection_opens_another(wire):
    before = await wire.command("CLIENT", "ID")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await wire.command("BLPOP", "nothing", 1)
    assert await wire.command("CLIENT", "ID") != before
