"""Logging as every flashclaim process sets it up: JSON lines an SRE can search.

One line per event on stderr, one JSON object per line: ``time`` (UTC, RFC 3339),
``level``, ``logger``, ``message``, ``process`` (the flashclaim command), and, inside an
HTTP request, ``requestId`` (the ``X-Request-Id`` the client sent or we made, echoed in
the response) plus what the handler bound: on the claim path ``user``, ``campaign`` and
``claimRequestId`` (the body's idempotency key). A traceback is one ``exc`` string.

python-json-logger rather than structlog: every module here and every library we use
(aiohttp, aiokafka, asyncpg) logs through the standard ``logging`` module, so one
formatter turns all of it into JSON without a second logging API at the call sites; the
request's fields come from a context variable through a filter.

Nothing on the claim path logs per request at INFO. Warnings that a herd could repeat
thousands of times a second go through ``Throttle``: one line per second per kind, with
the number held back.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from itertools import count
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

_CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("flashclaim_log_context", default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_ID_PREFIX = os.urandom(6).hex()  # one per process: ids stay unique across workers and pods
_ids = count(1)


def start_request(given: str | None) -> str:
    """Begin a request's log context; its id is ``given`` when sane, else a new one.

    A client's ``X-Request-Id`` is kept only if it is short and plain (no spaces, no
    control characters), so it can't forge log lines or blow up a line's size.
    """
    if given is not None and _REQUEST_ID.fullmatch(given):
        request_id = given
    else:
        request_id = f"{_ID_PREFIX}-{next(_ids):x}"
    _CONTEXT.set({"requestId": request_id})
    return request_id


def bind(**fields: str) -> None:
    """Add fields to every later log line of the current request (no-op outside one)."""
    context = _CONTEXT.get()
    if context is not None:
        context.update(fields)


def context() -> dict[str, str]:
    """The current request's log fields (empty outside a request)."""
    return dict(_CONTEXT.get() or {})


def _with_request_fields(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """A record factory that copies the current request's fields onto each record, so
    every handler (ours, a test's) sees them; it costs nothing until something logs."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        fields = _CONTEXT.get()
        if fields:
            record.__dict__.update(fields)
        return record

    make.flashclaim = True  # type: ignore[attr-defined]
    return make


if not getattr(logging.getLogRecordFactory(), "flashclaim", False):
    logging.setLogRecordFactory(_with_request_fields(logging.getLogRecordFactory()))


def configure(level: str, fmt: str = "json", process: str = "") -> None:
    """Log at ``level`` to stderr as JSON lines (``fmt="text"``: lines for humans).

    aiokafka narrates every coordinator lookup and rebalance step at INFO, which buries
    what an operator needs to see: it logs from WARNING up.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            OrjsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                timestamp="time",
                rename_fields={"levelname": "level", "name": "logger", "exc_info": "exc"},
                static_fields={"process": process or "flashclaim"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s %(context)s")
        )
        handler.addFilter(_TextContext())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


class _TextContext(logging.Filter):
    """For text lines: the request's fields as ``key=value`` at the end."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _CONTEXT.get() or {}
        record.context = " ".join(f"{key}={value}" for key, value in fields.items())
        return True


class Throttle:
    """At most one line per ``interval_s`` for each kind of event; counts the rest.

    When Redis goes away at T0, every claim would log the same warning; a line a second
    says as much, with ``suppressed`` saying how many were folded into it.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING unless a ``kind`` line went out just now."""
        now = time.monotonic()
        last, held = self._last.get(kind, (-self._interval_s, 0))
        if now - last < self._interval_s:
            self._last[kind] = (last, held + 1)
            return
        self._last[kind] = (now, 0)
        self._logger.warning(message, *args, extra={"suppressed": held} if held else None)
