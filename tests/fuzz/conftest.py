"""One real gateway for the fuzz suite: ``flashclaim serve`` in a child process, as in
production (aiohttp's runner, uvloop, JSON logs on stderr, a published campaign open now,
Kubernetes' service-link variables in its environment), on the session's Redis (AOF)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import open_clients
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.stack.servers import RedisServer, free_port, wait_for_port
from tests.helpers import ADMIN_TOKEN, JWT_SECRET, child_env, open_now, published
from tests.infra.test_settings import SERVICE_LINKS

#: The campaign every fuzz test may claim from: open now, stock enough for any run.
FUZZ_CAMPAIGN = "fuzz-open"


@dataclass
class FuzzedGateway:
    """The gateway under fuzzing: where it listens, what it logged, what it counted."""

    port: int
    campaign_id: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_errors(self) -> list[str]:
        """Requests answered 5xx so far, as /metrics counts them."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("http_server_request_duration_seconds_count")
            and 'status="5' in line
            and not line.endswith(" 0.0")
        ]

    def logged_errors(self) -> list[str]:
        """Log lines at ERROR or above, and anything that is not a JSON line (a traceback
        printed raw, say)."""
        bad = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if record.get("level") in ("ERROR", "CRITICAL") or "exc" in record:
                bad.append(line)
        return bad

    def assert_healthy(self) -> None:
        """No 5xx answered, nothing logged as an error: the fuzz suite's verdict."""
        assert not self.server_errors(), self.server_errors()
        assert not self.logged_errors(), "\n".join(self.logged_errors()[:20])


@pytest.fixture(scope="package")
def fuzzed(
    redis_server: RedisServer, database_url: str, tmp_path_factory
) -> Iterator[FuzzedGateway]:
    settings = Settings.from_env(
        {},
        redis_url=redis_server.url,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        port=free_port(),
        workers=1,
        user_rate=0,
        device_rate=0,
        ip_rate=0,
        relay_in_gateway=False,
        cors_origins="https://m.shop.example",
        metrics_dir=str(tmp_path_factory.mktemp("fuzz-metrics")),
    )
    campaign_id = asyncio.run(_publish(settings))
    log = tmp_path_factory.mktemp("fuzz") / "gateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            env={**child_env(settings), **SERVICE_LINKS},  # as a Kubernetes pod would have
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(settings.port, timeout=30)
        yield FuzzedGateway(settings.port, campaign_id, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _publish(settings: Settings) -> str:
    """A clean slate (earlier tests' campaigns gone), then the open campaign."""
    async with open_clients(settings) as opened:
        await opened.pool.execute("TRUNCATE campaigns, coupons CASCADE")
        await opened.redis.flushall()
        ops = CampaignOps(CampaignStore(opened.pool), opened.redis, SystemClock())
        campaign = await published(ops, id=FUZZ_CAMPAIGN, stock=1_000_000,
                                   perUserLimit=1_000_000, **open_now())  # fmt: skip
    return campaign.id
