"""How long-running commands (relay, consumer, reconciler, event triggers, sweeper) stop."""

from __future__ import annotations

import asyncio
import signal


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM (Kubernetes, ``flashclaim up``) or SIGINT (Ctrl-C) sets: the
    command finishes the round it is in and leaves, instead of dying mid-batch. Call it
    inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
