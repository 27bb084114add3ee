"""The coupon-use API: wallet, quote, lock (use), confirm, cancel, refund.

Every route is behind a user's token (the user is the token's ``sub``, never the body),
decodes its body with the structs of ``cart.py`` and answers with ``{"code": 0,
"reason": <outcome>, ...}`` or a refusal with a stable reason (codes 30-49, or
INVALID_REQUEST for what a client sent wrong). Nothing a client sends is answered 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from aiohttp import web
from redis.asyncio import Redis

from gateway.campaigns.rule_text import RuleText, rule_text
from gateway.campaigns.spec import Kind
from gateway.campaigns.usage import UsageRules
from gateway.claim.events import ClaimEvent
from gateway.credit.journal import CreditError
from gateway.credit.ledger import Ledger
from gateway.credit.quote import CreditQuote, quote_credit, user_scope
from gateway.infra import metrics
from gateway.infra.auth import Claimant, TokenError
from gateway.infra.clock import Clock
from gateway.infra.http import TOKENS, client_ip, json_response, refusal
from gateway.infra.openapi import Answer, Operation
from gateway.infra.settings import Settings
from gateway.reasons import Reason
from gateway.redemption import orders
from gateway.redemption.abuse import UseCaps
from gateway.redemption.cart import (
    Cart,
    OrderId,
    RefundRequest,
    UseRequest,
    cart_problem,
    use_problem,
)
from gateway.redemption.quote import quote
from gateway.redemption.recent import recent_claims
from gateway.redemption.wallet import list_coupons, usable_coupons
from gateway.stats import failures


class Redemption:
    """What the routes share: the database, the clock, the settings."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, clock: Clock, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis  # the users' recent claims (gateway/redemption/recent.py)
        self.clock = clock
        self.settings = settings
        self.caps = UseCaps(settings)
        self.ledger = Ledger(pool, clock)  # the user's credit balance, for quotes

    async def recent(self, user_id: str) -> list[ClaimEvent]:
        """The user's claims not necessarily stored yet."""
        return await recent_claims(self.redis, user_id, self.settings.redis_timeout_ms / 1000)


REDEMPTION = web.AppKey("redemption", Redemption)

#: The largest checkout body: 200 cart lines of the longest ids fit with room to spare.
CHECKOUT_MAX_BODY_BYTES = 128 * 1024

# --- answers -------------------------------------------------------------------------


class WalletCoupon(msgspec.Struct, rename="camel"):
    """A coupon in the wallet, with its rules spelled out."""

    coupon_id: str
    campaign_id: str
    name: str
    kind: Kind
    value_cents: int
    face_value_cents: int
    threshold_cents: int
    percent_off: int
    max_discount_cents: int
    usage: UsageRules
    status: str
    claimed_at_ms: int
    expires_at_ms: int
    order_id: str | None
    discount_cents: int
    rule_text: RuleText


class Wallet(msgspec.Struct, rename="camel"):
    """A page of the user's coupons, newest first; ``next`` fetches the page after."""

    code: int
    coupons: list[WalletCoupon]
    next: str | None


class QuotedCoupon(msgspec.Struct, rename="camel"):
    """One coupon on this cart: its discount alone, or why it does not apply."""

    coupon_id: str
    campaign_id: str
    discount_cents: int
    applies: bool
    expires_at_ms: int
    reason: Reason | None = None
    message: str = ""


class Best(msgspec.Struct, rename="camel"):
    """The best combination: its coupons, discount, what is left to pay, per-item shares."""

    coupon_ids: list[str]
    discount_cents: int
    pay_cents: int
    discounts: dict[str, int]
    allocation: dict[str, list[int]]  # coupon id -> cents per cart line, in cart order


class QuoteAnswer(msgspec.Struct, rename="camel"):
    """Every coupon judged on the cart, the best combination, and the shopping credit that
    would pay after it (``credit.payableCents``: what is left to pay by other means)."""

    code: int
    coupons: list[QuotedCoupon]
    best: Best
    credit: CreditQuote


Outcome = Literal["LOCKED", "CONFIRMED", "CANCELLED", "EXPIRED", "REFUNDED", "PARTIALLY_REFUNDED"]


class OrderAnswer(msgspec.Struct, rename="camel"):
    """An order's coupons after a transition (the same again for a repeated request)."""

    code: int
    reason: Outcome
    order_id: str
    status: str
    coupon_ids: list[str]
    amount_cents: int
    discount_cents: int
    pay_cents: int
    refunded_cents: int
    locked_until_ms: int
    discounts: dict[str, int]
    allocation: dict[str, list[int]]
    credit_cents: int  # shopping credit held (locked) or spent (confirmed) for the order
    credit_principal_cents: int
    credit_bonus_cents: int
    refunded_credit_cents: int
    credit_allocation: list[int]  # cents of credit per cart line, in cart order
    due_cents: int  # what the order's payment collects: payCents less its credit


# --- routes --------------------------------------------------------------------------

_Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]
_Status = Literal["unused", "locked", "used", "expired", "refunded", "voided"]
_Cursor = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{1,13}~[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?!\n)$"
    ),
]  # claimedAtMs~couponId of the last coupon seen
_use_decoder = msgspec.json.Decoder(UseRequest)
_cart_decoder = msgspec.json.Decoder(Cart)
_refund_decoder = msgspec.json.Decoder(RefundRequest)
_order_id = msgspec.json.Decoder(OrderId)


def routes() -> list[web.RouteDef]:
    """The coupon-use routes."""
    return [
        web.get("/api/coupons", wallet_page),
        web.post("/api/checkout/quote", checkout_quote),
        web.post("/api/coupon/use", use),
        web.post("/api/coupon/use/{order_id}/confirm", confirm),
        web.post("/api/coupon/use/{order_id}/cancel", cancel),
        web.post("/api/coupon/use/{order_id}/refund", refund),
    ]


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _user(request: web.Request) -> Claimant:
    return request.app[TOKENS].verify(request.headers.get("Authorization"))


async def _body(request: web.Request, decoder: msgspec.json.Decoder[Any]) -> Any:
    data = await request.read()
    if not data and decoder is _refund_decoder:
        return RefundRequest()  # no body: refund what is left
    if request.content_type != "application/json":
        raise _Invalid("Content-Type must be application/json", 415)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _Invalid(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _Invalid(f"body is not valid JSON: {exc}", 400) from None


Handler = Callable[[web.Request, Claimant, Redemption], Awaitable[web.Response]]


def _guarded(operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def guarded(request: web.Request) -> web.Response:
        try:
            who = _user(request)
        except TokenError as exc:
            return refusal(Reason.UNAUTHORIZED, str(exc))
        # A cart of 200 lines is larger than a claim: the bigger limit only once the token
        # checked out (as the admin API does), so strangers still meet the small one.
        request = request.clone(client_max_size=CHECKOUT_MAX_BODY_BYTES)
        try:
            try:
                response = await handler(request, who, request.app[REDEMPTION])
            except asyncpg.DeadlockDetectedError:  # a safety net: rows are locked in order
                response = await handler(request, who, request.app[REDEMPTION])
        except _Invalid as exc:
            metrics.COUPON_USES.labels(operation, Reason.INVALID_REQUEST.value).inc()
            return refusal(Reason.INVALID_REQUEST, str(exc), status=exc.status)
        except orders.Refused as exc:
            metrics.COUPON_USES.labels(operation, exc.reason.value).inc()
            if exc.campaign_id is not None:
                r = request.app[REDEMPTION]
                await failures.record(r.pool, exc.campaign_id, exc.reason.value, r.clock.now_ms())
            return refusal(exc.reason, exc.message)
        except CreditError as exc:  # a safety net: orders turn the ones it expects to Refused
            metrics.COUPON_USES.labels(operation, exc.reason.value).inc()
            return refusal(exc.reason, str(exc))
        except asyncpg.DataError as exc:  # a value our checks let through: still the caller's
            return refusal(Reason.INVALID_REQUEST, f"a value was refused: {exc}", status=400)
        except (
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.OperatorInterventionError,  # the server shutting down, say
            asyncpg.DeadlockDetectedError,
            asyncpg.InternalClientError,  # a connection cut off mid-query fails its reset
            OSError,
        ) as exc:
            return refusal(Reason.UNAVAILABLE, f"the coupon store is unavailable: {exc}",
                           retry_after_s=1.0)  # fmt: skip
        return response

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def _order_answer(operation: str, state: orders.OrderState) -> web.Response:
    if state.refusal is not None:
        metrics.COUPON_USES.labels(operation, state.refusal.value).inc()
        return refusal(state.refusal)
    outcome = {
        "locked": "LOCKED",
        "confirmed": "CONFIRMED",
        "cancelled": "CANCELLED",
        "expired": "EXPIRED",
        "refunded": "REFUNDED",
    }[state.status]
    if state.status == "confirmed" and state.refunded_cents:
        outcome = "PARTIALLY_REFUNDED"
    metrics.COUPON_USES.labels(operation, outcome).inc()
    if operation == "confirm" and not state.replayed:
        metrics.DISCOUNT_CENTS.inc(state.discount_cents)
    answer = OrderAnswer(
        code=0,
        reason=outcome,  # type: ignore[arg-type]
        order_id=state.order_id,
        status=state.status,
        coupon_ids=state.coupon_ids,
        amount_cents=state.amount_cents,
        discount_cents=state.discount_cents,
        pay_cents=state.pay_cents,
        refunded_cents=state.refunded_cents,
        locked_until_ms=state.locked_until_ms,
        discounts=state.discounts,
        allocation=state.allocation,
        credit_cents=state.credit_cents,
        credit_principal_cents=state.credit_principal_cents,
        credit_bonus_cents=state.credit_bonus_cents,
        refunded_credit_cents=state.refunded_credit_cents,
        credit_allocation=state.credit_allocation,
        due_cents=state.pay_cents - state.credit_cents,
    )
    response = web.Response(body=msgspec.json.encode(answer), content_type="application/json")
    if state.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def _wallet_page(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """The token's user's coupons, newest first: ``?status=&limit=&before=``."""
    query = request.query
    try:
        status = msgspec.convert(query.get("status"), _Status | None)
        limit = msgspec.convert(int(query.get("limit", "20")), _Limit)
        before_text = msgspec.convert(query.get("before"), _Cursor | None)
    except (msgspec.ValidationError, ValueError) as exc:
        raise _Invalid(f"bad query: {exc}", 400) from None
    before = None
    if before_text:
        at_ms, coupon = before_text.split("~")
        before = (int(at_ms), coupon)
    unstored = await r.recent(who.user_id)
    rows = await list_coupons(
        r.pool,
        who.user_id,
        r.clock.now_ms(),
        status=status,
        limit=limit,
        before=before,
        unstored=unstored,
    )
    coupons = [
        WalletCoupon(
            coupon_id=row.held.coupon_id,
            campaign_id=row.held.campaign.id,
            name=row.held.campaign.name,
            kind=row.held.campaign.kind,
            value_cents=row.held.campaign.value_cents,
            face_value_cents=row.held.campaign.face_value_cents,
            threshold_cents=row.held.campaign.threshold_cents,
            percent_off=row.held.campaign.percent_off,
            max_discount_cents=row.held.campaign.max_discount_cents,
            usage=row.held.campaign.usage,
            status=row.held.status,
            claimed_at_ms=row.held.claimed_at_ms,
            expires_at_ms=row.held.expires_at_ms,
            order_id=row.held.order_id if row.held.status in ("locked", "used") else None,
            discount_cents=row.discount_cents,
            rule_text=rule_text(row.held.campaign, row.held.expires_at_ms),
        )
        for row in rows
    ]
    last = rows[-1].held if len(rows) == limit else None
    cursor = f"{last.claimed_at_ms}~{last.coupon_id}" if last else None
    return json_response(msgspec.to_builtins(Wallet(0, coupons, cursor)))


async def _checkout_quote(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """Every coupon on this cart, and the best combination."""
    cart: Cart = await _body(request, _cart_decoder)
    if (problem := cart_problem(cart)) is not None:
        raise _Invalid(problem)
    started = time.perf_counter()
    now_ms = r.clock.now_ms()
    held = await usable_coupons(r.pool, who.user_id, now_ms, await r.recent(who.user_id))
    result = quote(held, cart, now_ms, new_user=who.new_user, device=who.device)
    best = result.best
    answer = QuoteAnswer(
        code=0,
        coupons=[
            QuotedCoupon(
                coupon_id=v.coupon.coupon_id,
                campaign_id=v.coupon.campaign.id,
                discount_cents=d,
                applies=v.refusal is None and d > 0,
                expires_at_ms=v.coupon.expires_at_ms,
                reason=v.refusal,
                message=v.message,
            )
            for v, d in result.alone
        ],
        best=Best(
            coupon_ids=[c.coupon_id for c in best.coupons],
            discount_cents=best.discount_cents,
            pay_cents=cart.amount_cents - best.discount_cents,
            discounts=best.discounts,
            allocation=best.allocation,
        ),
        credit=await _credit_quote(r, who.user_id, cart, best.allocation),
    )
    metrics.QUOTE_SECONDS.observe(time.perf_counter() - started)
    return json_response(msgspec.to_builtins(answer))


async def _credit_quote(
    r: Redemption, user: str, cart: Cart, allocation: dict[str, list[int]]
) -> CreditQuote:
    """What the user's credit pays after the best coupons (``cart.creditCents``: at most)."""
    if cart.credit_cents == 0:  # the client asked for none: no credit read
        return CreditQuote(0, 0, 0, cart.amount_cents - sum(map(sum, allocation.values())), 0)
    items = orders.after_coupons(cart.items, allocation)
    balance = await r.ledger.balance(user)
    scope = await user_scope(r.pool, user)
    return quote_credit(balance, scope, items, cart.credit_cents)


async def _use(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """Lock the coupons to the order, all or none."""
    now_s = r.clock.now_ms() / 1000
    wait = r.caps.wait_s(who.user_id, client_ip(request, r.settings), now_s)
    if wait > 0:
        metrics.COUPON_USES.labels("lock", Reason.RATE_LIMITED.value).inc()
        return refusal(Reason.RATE_LIMITED, retry_after_s=wait)
    body: UseRequest = await _body(request, _use_decoder)
    if (problem := use_problem(body)) is not None:
        r.caps.failed_lock(who.user_id, now_s)
        raise _Invalid(problem)
    unstored = await r.recent(who.user_id)
    async with r.pool.acquire() as conn:
        state = await orders.lock(
            conn,
            who.user_id,
            body,
            now_ms=r.clock.now_ms(),
            ttl_ms=r.settings.coupon_lock_ttl_s * 1000,
            new_user=who.new_user,
            device=who.device,
            unstored=unstored,
        )
    return _order_answer("lock", state)


async def _counted_use(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """A lock; a refused one counts against the user's failed-lock cap."""
    try:
        response = await _use(request, who, r)
    except orders.Refused:
        r.caps.failed_lock(who.user_id, r.clock.now_ms() / 1000)
        raise
    if response.status in (404, 409):  # LOCK_EXPIRED on a replay, say
        r.caps.failed_lock(who.user_id, r.clock.now_ms() / 1000)
    return response


def _path_order(request: web.Request) -> str:
    text = request.match_info["order_id"]
    try:
        return str(msgspec.convert(text, OrderId))
    except msgspec.ValidationError as exc:
        raise _Invalid(f"orderId: {exc}", 400) from None


async def _confirm(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """The order was paid: its coupons are used."""
    order = _path_order(request)
    async with r.pool.acquire() as conn:
        state = await orders.confirm(conn, who.user_id, order, r.clock.now_ms())
    return _order_answer("confirm", state)


async def _cancel(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """The order will not be paid: its coupons are released."""
    order = _path_order(request)
    async with r.pool.acquire() as conn:
        state = await orders.cancel(conn, who.user_id, order, r.clock.now_ms())
    return _order_answer("cancel", state)


async def _refund(request: web.Request, who: Claimant, r: Redemption) -> web.Response:
    """The order was refunded, wholly or ``amountCents`` of it (with a ``refundId``)."""
    order = _path_order(request)
    body: RefundRequest = await _body(request, _refund_decoder)
    async with r.pool.acquire() as conn:
        state = await orders.refund(conn, who.user_id, order, body, r.clock.now_ms())
    return _order_answer("refund", state)


wallet_page = _guarded("wallet", _wallet_page)
checkout_quote = _guarded("quote", _checkout_quote)
use = _guarded("lock", _counted_use)
confirm = _guarded("confirm", _confirm)
cancel = _guarded("cancel", _cancel)
refund = _guarded("refund", _refund)

# --- the API document ----------------------------------------------------------------

_COUPON_REFUSALS: list[Answer] = [
    Reason.COUPON_NOT_FOUND,
    Reason.COUPON_LOCKED,
    Reason.COUPON_USED,
    Reason.COUPON_EXPIRED,
    Reason.COUPON_VOIDED,
    Reason.NOT_APPLICABLE,
    Reason.NOT_STACKABLE,
    Reason.DEVICE_NOT_VERIFIED,
    Reason.ORDER_MISMATCH,
    Reason.LOCK_EXPIRED,
    Reason.INSUFFICIENT_CREDIT,
    Reason.CREDIT_NOT_APPLICABLE,
    Reason.RATE_LIMITED,
    Reason.UNAVAILABLE,
]
_ORDER = {"order_id": OrderId}
_ORDER_REFUSALS: list[Answer] = [
    Reason.ORDER_NOT_FOUND,
    Reason.ORDER_STATE,
    Reason.LOCK_EXPIRED,
    Reason.UNAVAILABLE,
    (Reason.INVALID_REQUEST, 400),
]

OPERATIONS = [
    Operation("GET", "/api/coupons", "The token's user's coupons (wallet), newest first",
              "coupons", ok=Wallet, auth="user",
              query={"status": _Status, "limit": _Limit, "before": _Cursor},
              refusals=[(Reason.INVALID_REQUEST, 400), Reason.UNAVAILABLE]),
    Operation("POST", "/api/checkout/quote",
              "Each coupon's discount on a cart, and the best combination", "coupons",
              ok=QuoteAnswer, body=Cart, auth="user", refusals=[Reason.UNAVAILABLE],
              description="Coupons first, then shopping credit on what they leave (within"
              " the credit's spend scope, at most `creditCents` when given, 0 for none)."),
    Operation("POST", "/api/coupon/use", "Lock coupons to an order, all or none", "coupons",
              ok=OrderAnswer, body=UseRequest, auth="user", refusals=_COUPON_REFUSALS,
              description="The same request again answers the same (header"
              " `Idempotent-Replayed: true`); the same orderId with other coupons or another"
              " amount is refused with ORDER_MISMATCH. The lock lasts"
              " FLASHCLAIM_COUPON_LOCK_TTL_S (at most until a coupon's expiry)."
              " `creditCents` holds that much shopping credit in the same transaction,"
              " until the same time: the order holds its coupons and credit, or neither."),
    Operation("POST", "/api/coupon/use/{order_id}/confirm", "The order was paid: coupons used",
              "coupons", ok=OrderAnswer, auth="user", params=_ORDER,
              refusals=_ORDER_REFUSALS),
    Operation("POST", "/api/coupon/use/{order_id}/cancel",
              "The order will not be paid: coupons unused again (or expired)", "coupons",
              ok=OrderAnswer, auth="user", params=_ORDER, refusals=_ORDER_REFUSALS),
    Operation("POST", "/api/coupon/use/{order_id}/refund",
              "A paid order was refunded, wholly or in part", "coupons", ok=OrderAnswer,
              body=RefundRequest, auth="user", params=_ORDER,
              refusals=[*_ORDER_REFUSALS, Reason.REFUND_TOO_LARGE, Reason.REFUND_MISMATCH]),
]  # fmt: skip
