"""Starting and stopping a consumer process cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvloop

from consumer.worker import ClaimConsumer, kafka_consumer
from gateway import db, kafka, logs
from gateway.metrics import serve_metrics
from gateway.settings import ConfigError, Settings

log = logging.getLogger(__name__)


async def consume(settings: Settings, stop: asyncio.Event) -> None:
    """Consume claims into PostgreSQL until ``stop`` is set."""
    await kafka.ensure_topics(settings)
    pool = await db.create_pool(settings.database_url)
    consumer = kafka_consumer(settings)
    dead_letters = kafka.producer(settings)
    try:
        await consumer.start()
        await dead_letters.start()
        await ClaimConsumer(consumer, dead_letters, pool, settings).run(stop)
    finally:
        for client in (consumer, dead_letters):
            # aiokafka awaits its own cancelled fetch tasks on stop; that is not ours to raise
            with contextlib.suppress(asyncio.CancelledError):
                await client.stop()
        await pool.close()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await consume(settings, stop)


def main(settings: Settings | None = None) -> int:
    """Entry point of ``python -m consumer`` and ``flashclaim consumer``."""
    try:
        settings = settings or Settings.from_env()
    except ConfigError as exc:
        print(f"consumer: configuration error: {exc}")
        return 2
    logs.configure(settings.log_level)
    serve_metrics(settings.metrics_port)
    uvloop.run(_main(settings))
    return 0
