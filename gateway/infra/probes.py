"""``/metrics`` and ``/livez`` for processes without a web server of their own.

The relay, the consumer and ``flashclaim reconcile --every`` serve both on
``FLASHCLAIM_METRICS_PORT`` from a thread. ``/livez`` answers 200 while the process's
event loop turns: a heartbeat task stamps the time every second, and a loop stuck for
``STALE_S`` (a blocking call, a deadlock) makes it 503, so Kubernetes restarts the pod.
The probe runs in its own thread precisely so that it can see the loop stop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import REGISTRY, make_wsgi_app

STALE_S = 30.0
BEAT_S = 1.0
T = TypeVar("T")

StartResponse = Callable[..., Any]


class Heartbeat:
    """When the event loop last turned."""

    def __init__(self, stale_s: float = STALE_S, beat_s: float = BEAT_S) -> None:
        self._stale_s = stale_s
        self._beat_s = beat_s
        self._last = time.monotonic()

    @property
    def alive(self) -> bool:
        """The loop turned within ``stale_s``."""
        return time.monotonic() - self._last < self._stale_s

    async def run(self) -> None:
        """Stamp the time every ``beat_s`` until cancelled."""
        while True:
            self._last = time.monotonic()
            await asyncio.sleep(self._beat_s)


def probe_app(heartbeat: Heartbeat) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application: ``/livez``, ``/metrics``, JSON 404 for anything else."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        body: dict[str, object]
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/livez":
            status, body = (
                ("200 OK", {"status": "ok"})
                if heartbeat.alive
                else (
                    "503 Service Unavailable",
                    {"status": "event loop stalled"},
                )
            )
        else:
            status, body = "404 Not Found", {"code": 23, "reason": "NOT_FOUND",
                                             "message": "No such endpoint."}  # fmt: skip
        start_response(status, [("Content-Type", "application/json")])
        return [orjson.dumps(body)]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not news."""


def serve(port: int, heartbeat: Heartbeat, host: str = "0.0.0.0") -> WSGIServer:
    """Serve the probes on ``host:port`` from a daemon thread."""
    server = make_server(host, port, probe_app(heartbeat), _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server


async def with_probes(port: int, main: Awaitable[T]) -> T:
    """Run ``main`` with ``/metrics`` and ``/livez`` on ``port`` (none when 0)."""
    heartbeat = Heartbeat()
    server = serve(port, heartbeat) if port else None
    beating = asyncio.create_task(heartbeat.run())
    try:
        return await main
    finally:
        beating.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()
