"""What command-line tools say to the person running them.

Results go to stdout (tables, or JSON with ``--json``) so they can be piped; progress and
errors go to stderr, one line each. ``failure`` turns the errors an operator can cause or
meet (a service down, a file missing, a refused value) into one line naming the service
and its address (passwords masked), instead of a traceback.
"""

from __future__ import annotations

import sys
from types import TracebackType
from urllib.parse import urlsplit

from gateway.infra.settings import Settings

#: Exceptions raised inside these libraries are about the service each one talks to.
_SERVICES = {
    "redis": ("Redis", "redis_url"),
    "asyncpg": ("PostgreSQL", "database_url"),
    "aiokafka": ("Kafka", "kafka_bootstrap"),
}


def progress(message: str) -> None:
    """One line of progress on stderr (stdout stays clean for the result)."""
    print(f"flashclaim: {message}", file=sys.stderr, flush=True)


def masked(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def failure(exc: BaseException, settings: Settings) -> str:
    """A one-line account of ``exc``, naming the service it came from when known."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    service = _service_of(exc)
    if service is None:
        return f"{type(exc).__name__}: {detail}"
    name, setting = _SERVICES[service]
    address = masked(str(getattr(settings, setting)))
    return f"{name} at {address}: {detail} (is it running? FLASHCLAIM_{setting.upper()})"


def _service_of(exc: BaseException) -> str | None:
    """The library the exception was raised in (its own class, else its traceback's frames)."""
    module = type(exc).__module__.split(".")[0]
    if module in _SERVICES:
        return module
    traceback: TracebackType | None = exc.__traceback__
    found = None
    while traceback is not None:
        frame_module = str(traceback.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        if frame_module in _SERVICES:
            found = frame_module  # the innermost library frame wins
        traceback = traceback.tb_next
    return found
