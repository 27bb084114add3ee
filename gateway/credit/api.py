"""The user's shopping credit over HTTP, and the payment provider's callback.

``GET /api/credit`` (balance), ``GET /api/credit/entries`` (statement, newest first,
paged by ``before``), ``POST /api/credit/topups`` (a top-up order; the same requestId
again answers the same order), ``GET /api/credit/topups/{topup_id}``, and
``POST /api/credit/payments``: the provider's callback, authenticated by the HMAC of its
body (``X-Flashclaim-Signature``) rather than a user token. Who the user is comes from
the verified token only. Every refusal is a reason; storage trouble is 503 UNAVAILABLE.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
import msgspec
from aiohttp import web

from gateway.credit.journal import CreditError
from gateway.credit.ledger import Balance, Ledger, Statement
from gateway.credit.topups import Topup, Topups, signed
from gateway.identifiers import RequestId, whole
from gateway.infra.auth import Claimant, TokenError
from gateway.infra.http import CLIENT_GONE, SETTINGS, TOKENS, json_body, json_response, refusal
from gateway.infra.openapi import Operation
from gateway.reasons import Reason

LEDGER = web.AppKey("credit_ledger", Ledger)
TOPUPS = web.AppKey("credit_topups", Topups)

SIGNATURE_HEADER = "X-Flashclaim-Signature"

#: PostgreSQL down, restarting or cut off mid-query (asyncpg reports a connection it could
#: not reset on release as an InternalClientError): 503 UNAVAILABLE, the caller retries.
STORAGE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
PlanRef = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"))]
_TOPUP_ID_PATTERN = whole(r"[0-9a-f-]{36}")
_TOPUP_ID = re.compile(_TOPUP_ID_PATTERN)
TopupId = Annotated[str, msgspec.Meta(pattern=_TOPUP_ID_PATTERN)]
PaymentId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_.:-]{1,128}"))]
Cents = Annotated[int, msgspec.Meta(ge=1, le=100_000_000_000)]


class TopupRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /api/credit/topups``."""

    plan_id: PlanRef
    pay_cents: Cents
    request_id: RequestId


class PaymentCallback(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /api/credit/payments``, signed by the payment provider."""

    topup_id: TopupId
    payment_id: PaymentId
    amount_cents: Cents


Before = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]


class Page(msgspec.Struct):
    """The statement's query: ``before`` an entry id, ``limit`` entries (1-100)."""

    before: Before = 2**62  # no bound: the newest entries
    limit: Limit = 20


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _guarded(handler: Handler) -> Handler:
    """Refusals for credit errors, bad input and storage outages: never a 5xx for input."""

    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except TokenError as exc:
            return refusal(Reason.UNAUTHORIZED, str(exc))
        except CreditError as exc:
            return refusal(exc.reason, str(exc))
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
            return refusal(Reason.INVALID_REQUEST, f"invalid request: {exc}", status=422)
        except CLIENT_GONE:
            raise
        except STORAGE_ERRORS as exc:
            return refusal(Reason.UNAVAILABLE, f"credit unavailable: {type(exc).__name__}")

    return guarded


def _user(request: web.Request) -> Claimant:
    return request.app[TOKENS].verify(request.headers.get("Authorization"))


async def balance(request: web.Request) -> web.Response:
    """The user's credit now."""
    user = _user(request)
    return json_response(msgspec.to_builtins(await request.app[LEDGER].balance(user.user_id)))


async def entries(request: web.Request) -> web.Response:
    """The user's statement, newest first."""
    user = _user(request)
    if len(request.query) != len(set(request.query)):
        return refusal(Reason.INVALID_REQUEST, "a query parameter is repeated", status=400)
    try:
        page = msgspec.convert(dict(request.query), Page, strict=False)
    except msgspec.ValidationError as exc:
        return refusal(Reason.INVALID_REQUEST, f"invalid query: {exc}", status=400)
    statement = await request.app[LEDGER].statement(user.user_id, page.before, page.limit)
    return json_response(msgspec.to_builtins(statement))


async def create_topup(request: web.Request) -> web.Response:
    """A top-up order, to pay with the payment provider."""
    user = _user(request)
    body = msgspec.json.decode(await json_body(request), type=TopupRequest)
    topup = await request.app[TOPUPS].create(user, body.plan_id, body.pay_cents, body.request_id)
    return json_response(msgspec.to_builtins(topup), 201)


async def show_topup(request: web.Request) -> web.Response:
    """One of the user's top-ups (paid yet?)."""
    user = _user(request)
    topup_id = request.match_info["topup_id"]
    if not _TOPUP_ID.match(topup_id):
        return refusal(Reason.UNKNOWN_TOPUP)
    topup = await request.app[TOPUPS].get(topup_id, user.user_id)
    return json_response(msgspec.to_builtins(topup))


async def payment(request: web.Request) -> web.Response:
    """The payment provider's callback: the top-up is paid (once per payment id)."""
    body = await request.read()
    secret = request.app[SETTINGS].credit_payment_secret
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not given.isascii() or not signed(secret, body, given):
        return refusal(Reason.UNAUTHORIZED, f"a valid {SIGNATURE_HEADER} is required")
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="Content-Type must be application/json")
    paid = msgspec.json.decode(body, type=PaymentCallback)
    topup = await request.app[TOPUPS].pay(paid.topup_id, paid.payment_id, paid.amount_cents)
    return json_response(msgspec.to_builtins(topup))


def routes() -> list[web.RouteDef]:
    """The credit routes of the user API."""
    return [
        web.get("/api/credit", _guarded(balance)),
        web.get("/api/credit/entries", _guarded(entries)),
        web.post("/api/credit/topups", _guarded(create_topup)),
        web.get("/api/credit/topups/{topup_id}", _guarded(show_topup)),
        web.post("/api/credit/payments", _guarded(payment)),
    ]


_STORED = [Reason.UNAVAILABLE]
OPERATIONS = [
    Operation("GET", "/api/credit", "The user's shopping credit: principal, bonus, held",
              "credit", ok=Balance, auth="user", refusals=_STORED),
    Operation("GET", "/api/credit/entries", "The user's credit statement, newest first",
              "credit", ok=Statement, auth="user", query={"before": Before, "limit": Limit},
              refusals=[(Reason.INVALID_REQUEST, 400), *_STORED]),
    Operation("POST", "/api/credit/topups", "Create a top-up order (counted once paid)",
              "credit", ok=Topup, ok_status=201, body=TopupRequest, auth="user",
              refusals=[Reason.UNKNOWN_CREDIT_PLAN, Reason.CREDIT_PLAN_INACTIVE,
                        Reason.TOPUP_OUT_OF_RANGE, Reason.REQUEST_MISMATCH, *_STORED]),
    Operation("GET", "/api/credit/topups/{topup_id}", "One of the user's top-ups", "credit",
              ok=Topup, auth="user", params={"topup_id": TopupId},
              refusals=[Reason.UNKNOWN_TOPUP, *_STORED]),
    Operation("POST", "/api/credit/payments",
              "Payment callback (HMAC-SHA256 of the body in X-Flashclaim-Signature)",
              "credit", ok=Topup, body=PaymentCallback,
              refusals=[Reason.UNAUTHORIZED, Reason.UNKNOWN_TOPUP, Reason.PAYMENT_MISMATCH,
                        *_STORED],
              description="Idempotent per payment id: the same callback again answers the"
              " same top-up; another payment for a paid top-up is PAYMENT_MISMATCH."),
]  # fmt: skip
