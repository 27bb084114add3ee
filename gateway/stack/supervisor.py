"""Several gateway worker processes on one port, kept alive by a small supervisor.

Each worker is its own process running one uvloop event loop, bound to the same port
with ``SO_REUSEPORT`` so the kernel spreads connections over them. The supervisor
prepares prometheus-client's multiprocess directory before any worker starts, restarts
a worker that dies (marking its metrics dead), and on SIGTERM or SIGINT stops them all
and waits for each to finish its in-flight claims.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0


def run_worker(settings: Settings) -> None:
    """Serve claims in this process until SIGTERM/SIGINT (graceful: in-flight claims end)."""
    import uvloop
    from aiohttp import web

    from gateway.app import create_app

    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
        shutdown_timeout=10.0,
    )


def prepare_metrics_dir(settings: Settings) -> Path:
    """An empty directory for this run's multiprocess metrics."""
    path = Path(settings.metrics_dir or tempfile.mkdtemp(prefix="flashclaim-metrics-"))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Supervisor:
    """Starts ``workers`` worker processes and keeps them running until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._metrics_dir = prepare_metrics_dir(settings)
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def run(self, before_spawning: Callable[[], None] = lambda: None) -> int:
        """Run until SIGTERM/SIGINT; return the exit status. ``before_spawning`` runs once
        this supervisor's signal handlers are in place (``up`` raises there if it was told to
        stop while starting, so no signal falls between two handlers)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        before_spawning()
        for _ in range(self._settings.workers):
            self._spawn()
        log.info(
            "flashclaim gateway: %d workers on http://%s:%d",
            self._settings.workers,
            self._settings.host,
            self._settings.port,
        )
        while self._workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self._reap(pid, status)
        return 0

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self._metrics_dir),
            "FLASHCLAIM_METRICS_DIR": str(self._metrics_dir),
        }
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env)
        self._workers[process.pid] = process

    def _reap(self, pid: int, status: int) -> None:
        process = self._workers.pop(pid, None)
        if process is None:
            return
        process.returncode = os.waitstatus_to_exitcode(status)
        mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        if self._stopping:
            return
        log.warning("worker %d exited with %s; restarting", pid, process.returncode)
        time.sleep(RESTART_BACKOFF_S)
        if not self._stopping:
            self._spawn()

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True
        for pid in list(self._workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
