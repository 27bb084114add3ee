"""Answers aiohttp gives before any middleware runs, made ours.

A request aiohttp's parser refuses (a header over 8 KiB, say a huge token; too many
headers; a garbled request line; bad chunking) is answered by the server's protocol
handler, not by the application: by default a plain-text 400 naming aiohttp's internals,
and a traceback at ERROR in the log for what is only a client's mistake. ``install``
replaces that answer with the gateway's JSON refusal (431 HEADERS_TOO_LARGE or 400
INVALID_REQUEST), counted under ``route="unparsed"`` as the client error it is, logged at
DEBUG. An ``Expect`` header other than ``100-continue`` would likewise get a plain-text
417 before any middleware runs; it is ignored instead (RFC 9110 lets a server do so) and
the request answered as usual. And the ``Server: Python/3.x aiohttp/3.x`` banner every
response carries becomes a name that tells an attacker no versions.

These are process-wide settings of aiohttp's server (it has no per-application hook for
them), applied once by ``create_app`` before it adds routes; ``tests/infra/
test_protocol.py`` and the fuzz suite notice if an aiohttp upgrade moves them.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web, web_protocol, web_response, web_urldispatcher
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest

from gateway.infra import logs, metrics
from gateway.infra.http import REQUEST_ID_HEADER, refusal
from gateway.reasons import Reason

log = logging.getLogger(__name__)

SERVER_NAME = "flashclaim"
_MAX_DETAIL = 200


def install() -> None:
    """Answer unparsable requests with JSON, ignore unknown expectations, drop the version
    banner (idempotent; before routes are added: each route keeps its expect handler)."""
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
    web_urldispatcher._default_expect_handler = _expect


async def _expect(request: web.Request) -> None:
    """``Expect: 100-continue`` as aiohttp answers it; any other expectation ignored."""
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11 and expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started


def _handle_error(
    self: web_protocol.RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """aiohttp's ``RequestHandler.handle_error``, answering with a JSON refusal."""
    if request.writer.output_size > 0:  # as aiohttp: an answer is half sent, cut it off
        raise ConnectionError("Response is sent already, cannot send another response")
    reason = _reason(status, exc)
    if reason is Reason.INTERNAL:
        log.error("unexpected error in the HTTP server", exc_info=exc)
        response = refusal(reason)
    else:
        log.debug("unparsable request from %s: %s", request.remote, exc)
        detail = str(getattr(exc, "message", "") or message or "")
        detail = re.split(r": (?:b'|bytearray\()", detail)[0][:_MAX_DETAIL]  # no token echoed
        if reason is Reason.HEADERS_TOO_LARGE:
            status = reason.status
        response = refusal(reason, f"{reason.message} {detail}".strip(), status=status)
    response.headers[REQUEST_ID_HEADER] = logs.start_request(None)
    response.force_close()
    metrics.child(metrics.REQUEST_SECONDS, "other", "unparsed", response.status).observe(0.0)
    return response


def _reason(status: int, exc: BaseException | None) -> Reason:
    if isinstance(exc, LineTooLong) or (
        isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message
    ):
        return Reason.HEADERS_TOO_LARGE
    if 400 <= status < 500:
        return Reason.INVALID_REQUEST
    return Reason.INTERNAL
