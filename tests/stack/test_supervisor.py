"""Several worker processes on one port, with metrics summed over all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.infra.clock import SystemClock
from gateway.stack.servers import free_port, wait_for_port
from tests.helpers import auth, child_env, open_now, published


@pytest.fixture
def gateway(settings, tmp_path: Path):
    port = free_port()
    env = child_env(settings, port=port, workers=2, metrics_dir=str(tmp_path / "metrics"))
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env)
    try:
        wait_for_port(port, timeout=20)
        yield process, f"http://127.0.0.1:{port}", tmp_path / "metrics"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


async def sample(session, base, name):
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_workers_share_the_port_and_sum_their_metrics(gateway, redis, pool):
    _process, base, metrics_dir = gateway
    ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
    campaign = await published(ops, stock=1000, **open_now())
    for n in range(1, 41):  # new connections, so the kernel spreads them over both workers
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{base}/api/coupon/issue",
                json={
                    "campaignId": campaign.id,
                    "requestId": f"serve-{n:05d}",
                    "deviceId": f"dev-{n}",
                    "channel": "seckill",
                },
                headers=auth(f"user-{n}"),
            )
            assert response.status == 200, await response.text()
    pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, "both workers should have answered claims"
    async with aiohttp.ClientSession() as session:
        for _ in range(6):  # whichever worker answers, the sum is the same
            total = await sample(session, base, "flashclaim_claims_total{")
            assert total == 40
        ready = await session.get(f"{base}/readyz")
        assert ready.status == 200


def test_a_killed_worker_is_replaced(gateway):
    process, _base, _ = gateway
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    first = int(children.stdout.split()[0])
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        pids = {int(p) for p in now.stdout.split()}
        if len(pids) == 2 and first not in pids:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the killed worker was not replaced")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    leftover = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
