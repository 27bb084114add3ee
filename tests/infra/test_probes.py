"""/livez of the relay, the consumer and the reconciler tells whether their event loop
still turns (so Kubernetes restarts a stuck one), beside their /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest

from gateway.infra.probes import Heartbeat, serve
from gateway.stack.servers import free_port


def status_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def probes():
    heartbeat = Heartbeat(stale_s=0.3, beat_s=0.02)
    port = free_port()
    server = serve(port, heartbeat, host="127.0.0.1")
    yield heartbeat, f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


async def test_livez_turns_503_when_the_loop_is_stuck(probes):
    heartbeat, base = probes
    beating = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0.05)
    assert (await asyncio.to_thread(status_of, f"{base}/livez"))[0] == 200
    seen: list[int] = []

    def probe_later() -> None:
        time.sleep(0.5)
        seen.append(status_of(f"{base}/livez")[0])

    probe = threading.Thread(target=probe_later)
    probe.start()
    time.sleep(0.8)  # noqa: ASYNC251 - a blocking call stalling the event loop is the test
    probe.join()
    assert seen == [503]
    await asyncio.sleep(0.05)  # the loop turns again
    assert (await asyncio.to_thread(status_of, f"{base}/livez"))[0] == 200
    beating.cancel()


async def test_metrics_beside_it_and_json_elsewhere(probes):
    _, base = probes
    status, body = await asyncio.to_thread(status_of, f"{base}/metrics")
    assert status == 200
    assert b"# HELP" in body
    status, body = await asyncio.to_thread(status_of, f"{base}/nowhere")
    assert (status, b'"NOT_FOUND"' in body) == (404, True)
