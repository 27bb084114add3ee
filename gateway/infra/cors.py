"""CORS for the front-end origins an operator configured (``FLASHCLAIM_CORS_ORIGINS``).

A claim page served from ``https://m.shop.example`` calling the gateway on another origin
sends a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) before its JSON
``POST``. Preflights are answered here, without touching a handler, with a ``max_age``
(Chromium caps it at two hours) so a browser asks once, not before every claim at T0.

Only configured origins are answered with ``Access-Control-Allow-Origin`` (their own
name, never ``*`` when credentials are allowed; settings refuse that combination), with
``Vary: Origin`` so caches keep answers apart. Any other origin's preflight is refused
with 403 ORIGIN_NOT_ALLOWED. A few lines of middleware rather than aiohttp-cors: that
library registers every route one by one (sub-applications included) and adds OPTIONS
routes to the router; a policy applied at the edge covers every route, present and future.
"""

from __future__ import annotations

from aiohttp import web

from gateway.infra.http import refusal
from gateway.reasons import Reason

#: Request headers a page may send; responses' headers a page may read.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-Id")
EXPOSED_HEADERS = ("Retry-After", "X-Request-Id", "Idempotent-Replayed")


class CorsPolicy:
    """Which origins may call the API from a browser, and how answers say so."""

    def __init__(self, origins: tuple[str, ...], max_age_s: int, credentials: bool) -> None:
        self._any = "*" in origins
        if self._any and credentials:  # any page could act with the user's cookies
            raise ValueError("CORS credentials need explicit origins, not '*'")
        self._origins = frozenset(origins)
        self._max_age = str(max_age_s)
        self._credentials = credentials

    def allows(self, origin: str) -> bool:
        """Whether pages of ``origin`` may call the API."""
        return self._any or origin in self._origins

    @staticmethod
    def is_preflight(request: web.Request) -> bool:
        """A browser asking before the real request."""
        return (
            request.method == "OPTIONS"
            and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers
        )

    def preflight(self, request: web.Request) -> web.Response:
        """Answer a preflight: 204 with what is allowed, or 403 for other origins."""
        origin = request.headers["Origin"]
        if not self.allows(origin):
            return refusal(Reason.ORIGIN_NOT_ALLOWED)
        error = request.match_info.http_exception
        if isinstance(error, web.HTTPMethodNotAllowed):
            methods = sorted(error.allowed_methods)
        elif error is None:  # the path answers OPTIONS itself
            methods = ["OPTIONS"]
        else:
            return refusal(Reason.NOT_FOUND)
        response = web.Response(status=204)
        self._allow(origin, response)
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
        response.headers["Access-Control-Max-Age"] = self._max_age
        response.headers.add("Vary", "Access-Control-Request-Method")
        response.headers.add("Vary", "Access-Control-Request-Headers")
        return response

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Let an allowed origin's page read ``response`` (errors included)."""
        origin = request.headers.get("Origin")
        if origin is not None and self.allows(origin):
            self._allow(origin, response)
            response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)

    def _allow(self, origin: str, response: web.StreamResponse) -> None:
        if self._any:
            response.headers["Access-Control-Allow-Origin"] = "*"
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
        if self._credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"
