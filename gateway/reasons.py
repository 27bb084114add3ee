"""Why a claim was answered the way it was: the public contract with front-end pages.

Every answer of the claim endpoint carries ``{"code", "reason", "message"}``. The code is
what ``lua/claim.lua`` returns (or what the gateway decides before Redis); ``Reason``
names it; ``Reason.status`` is its HTTP status. Codes and names never change meaning;
new ones are only added.
"""

from __future__ import annotations

import enum
from http import HTTPStatus

import orjson


class Reason(enum.StrEnum):
    """Outcome of a claim. The member value is the stable name pages switch on."""

    ACCEPTED = "ACCEPTED"
    SOLD_OUT = "SOLD_OUT"
    DAILY_SOLD_OUT = "DAILY_SOLD_OUT"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    USER_LIMIT = "USER_LIMIT"
    USER_DAILY_LIMIT = "USER_DAILY_LIMIT"
    DEVICE_LIMIT = "DEVICE_LIMIT"
    NOT_STARTED = "NOT_STARTED"
    ENDED = "ENDED"
    PAUSED = "PAUSED"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    EXCLUSIVE_CONFLICT = "EXCLUSIVE_CONFLICT"
    BLOCKED = "BLOCKED"
    UNKNOWN_CAMPAIGN = "UNKNOWN_CAMPAIGN"
    REQUEST_MISMATCH = "REQUEST_MISMATCH"
    OVERLOADED = "OVERLOADED"
    UNAVAILABLE = "UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_REQUEST = "INVALID_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    CLIENT_CLOSED = "CLIENT_CLOSED"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    # Using a coupon (gateway/redemption/, codes 30-49).
    COUPON_NOT_FOUND = "COUPON_NOT_FOUND"
    COUPON_LOCKED = "COUPON_LOCKED"
    COUPON_USED = "COUPON_USED"
    COUPON_EXPIRED = "COUPON_EXPIRED"
    COUPON_VOIDED = "COUPON_VOIDED"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    NOT_STACKABLE = "NOT_STACKABLE"
    ORDER_MISMATCH = "ORDER_MISMATCH"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ORDER_STATE = "ORDER_STATE"
    LOCK_EXPIRED = "LOCK_EXPIRED"
    REFUND_TOO_LARGE = "REFUND_TOO_LARGE"
    REFUND_MISMATCH = "REFUND_MISMATCH"
    DEVICE_NOT_VERIFIED = "DEVICE_NOT_VERIFIED"
    # Claim rules (gateway/rules/, codes 55-59)
    CHANNEL_SOLD_OUT = "CHANNEL_SOLD_OUT"
    DAILY_BUDGET_EXHAUSTED = "DAILY_BUDGET_EXHAUSTED"
    USER_MONEY_LIMIT = "USER_MONEY_LIMIT"
    INTERNAL = "INTERNAL"
    # Redeem codes (gateway/channels/): 17 is claim.lua's, 50-54 the gateway's.
    CODE_INVALID = "CODE_INVALID"
    CODE_MISTYPED = "CODE_MISTYPED"
    CODE_LOCKED = "CODE_LOCKED"
    # Shopping credit (gateway/credit/), codes 60-69.
    INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"
    UNKNOWN_CREDIT_PLAN = "UNKNOWN_CREDIT_PLAN"
    UNKNOWN_TOPUP = "UNKNOWN_TOPUP"
    PAYMENT_MISMATCH = "PAYMENT_MISMATCH"
    UNKNOWN_CREDIT_HOLD = "UNKNOWN_CREDIT_HOLD"
    CREDIT_HOLD_CLOSED = "CREDIT_HOLD_CLOSED"
    WITHDRAWAL_NOT_ALLOWED = "WITHDRAWAL_NOT_ALLOWED"
    TOPUP_OUT_OF_RANGE = "TOPUP_OUT_OF_RANGE"
    CREDIT_PLAN_INACTIVE = "CREDIT_PLAN_INACTIVE"
    CREDIT_NOT_APPLICABLE = "CREDIT_NOT_APPLICABLE"

    @property
    def code(self) -> int:
        """The numeric code (the one ``claim.lua`` returns for the reasons it decides)."""
        return _CODES[self]

    @property
    def status(self) -> int:
        """The HTTP status this reason is answered with."""
        return _STATUS[self]

    @property
    def message(self) -> str:
        """A sentence a page may show, or log, when it has nothing better."""
        return _MESSAGES[self]

    @classmethod
    def from_code(cls, code: int) -> Reason:
        """The reason behind a numeric code; unknown codes raise ``KeyError``."""
        return _BY_CODE[code]


_TABLE: list[tuple[Reason, int, int, str]] = [
    (Reason.ACCEPTED, 0, HTTPStatus.OK, "Coupon claimed."),
    (Reason.SOLD_OUT, 1, HTTPStatus.CONFLICT, "All coupons of this campaign are gone."),
    (Reason.DAILY_SOLD_OUT, 2, HTTPStatus.CONFLICT, "Today's coupons are gone; try tomorrow."),
    (Reason.BUDGET_EXHAUSTED, 3, HTTPStatus.CONFLICT, "The campaign's budget is spent."),
    (Reason.USER_LIMIT, 4, HTTPStatus.CONFLICT, "You already hold the most coupons allowed."),
    (Reason.USER_DAILY_LIMIT, 5, HTTPStatus.CONFLICT, "You reached today's limit."),
    (Reason.DEVICE_LIMIT, 6, HTTPStatus.CONFLICT, "This device reached its limit."),
    (Reason.NOT_STARTED, 7, HTTPStatus.CONFLICT, "The campaign has not started yet."),
    (Reason.ENDED, 8, HTTPStatus.GONE, "The campaign has ended."),
    (Reason.PAUSED, 9, HTTPStatus.CONFLICT, "The campaign is paused."),
    (Reason.NOT_ELIGIBLE, 10, HTTPStatus.FORBIDDEN, "This campaign is not open to you."),
    (
        Reason.EXCLUSIVE_CONFLICT,
        11,
        HTTPStatus.CONFLICT,
        "You hold a coupon that excludes this one.",
    ),
    (Reason.BLOCKED, 12, HTTPStatus.FORBIDDEN, "Claims from this account or device are blocked."),
    (Reason.UNKNOWN_CAMPAIGN, 13, HTTPStatus.NOT_FOUND, "No such campaign."),
    (
        Reason.REQUEST_MISMATCH,
        14,
        HTTPStatus.CONFLICT,
        "This requestId was already used for a different claim.",
    ),
    (
        Reason.OVERLOADED,
        15,
        HTTPStatus.SERVICE_UNAVAILABLE,
        "Too many claims right now; retry shortly.",
    ),
    (
        Reason.UNAVAILABLE,
        16,
        HTTPStatus.SERVICE_UNAVAILABLE,
        "Claims are unavailable right now; retry shortly.",
    ),
    (Reason.RATE_LIMITED, 20, HTTPStatus.TOO_MANY_REQUESTS, "Too many requests; slow down."),
    (Reason.INVALID_REQUEST, 21, HTTPStatus.BAD_REQUEST, "The request is not valid."),
    (Reason.UNAUTHORIZED, 22, HTTPStatus.UNAUTHORIZED, "A valid bearer token is required."),
    (Reason.NOT_FOUND, 23, HTTPStatus.NOT_FOUND, "No such endpoint."),
    (Reason.METHOD_NOT_ALLOWED, 24, HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed here."),
    (
        Reason.HEADERS_TOO_LARGE,
        25,
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
        "The request line or a header is too large.",
    ),
    # Never sent: the client hung up before its request was whole. Counted with status 499
    # (nginx's "client closed request"), a client error, so it never trips a 5xx alert.
    (Reason.CLIENT_CLOSED, 26, 499, "The client closed the connection mid-request."),
    (Reason.ORIGIN_NOT_ALLOWED, 27, HTTPStatus.FORBIDDEN, "This origin may not call the API."),
    # Using a coupon (gateway/redemption/): codes 30-49.
    (Reason.COUPON_NOT_FOUND, 30, HTTPStatus.NOT_FOUND, "You hold no such coupon."),
    (Reason.COUPON_LOCKED, 31, HTTPStatus.CONFLICT, "The coupon is held by another order."),
    (Reason.COUPON_USED, 32, HTTPStatus.CONFLICT, "The coupon was already used."),
    (Reason.COUPON_EXPIRED, 33, HTTPStatus.CONFLICT, "The coupon has expired."),
    (Reason.COUPON_VOIDED, 34, HTTPStatus.CONFLICT, "The coupon was voided."),
    (Reason.NOT_APPLICABLE, 35, HTTPStatus.CONFLICT, "The coupon does not apply to this order."),
    (Reason.NOT_STACKABLE, 36, HTTPStatus.CONFLICT, "These coupons cannot be used together."),
    (
        Reason.ORDER_MISMATCH,
        37,
        HTTPStatus.CONFLICT,
        "This orderId was already used with other coupons or another amount.",
    ),
    (Reason.ORDER_NOT_FOUND, 38, HTTPStatus.NOT_FOUND, "No coupon is locked to this order."),
    (Reason.ORDER_STATE, 39, HTTPStatus.CONFLICT, "The order's state does not allow this."),
    (Reason.LOCK_EXPIRED, 40, HTTPStatus.CONFLICT, "The order's lock expired; lock again."),
    (
        Reason.REFUND_TOO_LARGE,
        41,
        HTTPStatus.CONFLICT,
        "The refund is more than what was paid and not yet refunded.",
    ),
    (
        Reason.REFUND_MISMATCH,
        42,
        HTTPStatus.CONFLICT,
        "This refundId was already used with another amount.",
    ),
    (
        Reason.DEVICE_NOT_VERIFIED,
        43,
        HTTPStatus.FORBIDDEN,
        "This coupon is usable only on the verified device it was claimed on.",
    ),
    # Claim rules (gateway/rules/): decided by claim.lua in the same call as stock.
    (
        Reason.CHANNEL_SOLD_OUT,
        55,
        HTTPStatus.CONFLICT,
        "This channel's share of the coupons is gone.",
    ),
    (
        Reason.DAILY_BUDGET_EXHAUSTED,
        56,
        HTTPStatus.CONFLICT,
        "Today's budget is spent; try tomorrow.",
    ),
    (
        Reason.USER_MONEY_LIMIT,
        57,
        HTTPStatus.CONFLICT,
        "You reached the most coupon value allowed.",
    ),
    # Shopping credit (gateway/credit/).
    (Reason.INSUFFICIENT_CREDIT, 60, HTTPStatus.CONFLICT, "Not enough shopping credit."),
    (Reason.UNKNOWN_CREDIT_PLAN, 61, HTTPStatus.NOT_FOUND, "No such credit plan."),
    (Reason.UNKNOWN_TOPUP, 62, HTTPStatus.NOT_FOUND, "No such top-up."),
    (
        Reason.PAYMENT_MISMATCH,
        63,
        HTTPStatus.CONFLICT,
        "This payment does not match its top-up (amount, or already paid by another).",
    ),
    (Reason.UNKNOWN_CREDIT_HOLD, 64, HTTPStatus.NOT_FOUND, "No credit is held for this order."),
    (
        Reason.CREDIT_HOLD_CLOSED,
        65,
        HTTPStatus.CONFLICT,
        "The credit of this order was already released, confirmed or refunded.",
    ),
    (
        Reason.WITHDRAWAL_NOT_ALLOWED,
        66,
        HTTPStatus.FORBIDDEN,
        "This credit plan does not allow withdrawals.",
    ),
    (
        Reason.TOPUP_OUT_OF_RANGE,
        67,
        HTTPStatus.CONFLICT,
        "The amount is outside what this credit plan takes.",
    ),
    (Reason.CREDIT_PLAN_INACTIVE, 68, HTTPStatus.CONFLICT, "This credit plan is closed."),
    (
        Reason.CREDIT_NOT_APPLICABLE,
        69,
        HTTPStatus.CONFLICT,
        "Shopping credit cannot pay that much of this order (after coupons, in its scope).",
    ),
    (Reason.INTERNAL, 99, HTTPStatus.INTERNAL_SERVER_ERROR, "Something went wrong on our side."),
    # Redeem codes. A wrong code and a used one answer alike: a guesser learns nothing.
    (Reason.CODE_INVALID, 17, HTTPStatus.CONFLICT, "This code is not valid or was already used."),
    (
        Reason.CODE_MISTYPED,
        50,
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "This is not a code: check it for a typo.",
    ),
    (
        Reason.CODE_LOCKED,
        51,
        HTTPStatus.TOO_MANY_REQUESTS,
        "Too many wrong codes; try again later.",
    ),
]

_CODES = {reason: code for reason, code, _, _ in _TABLE}
_STATUS = {reason: int(status) for reason, _, status, _ in _TABLE}
_MESSAGES = {reason: message for reason, _, _, message in _TABLE}
_BY_CODE = {code: reason for reason, code, _, _ in _TABLE}


def refusal_body(
    reason: Reason, message: str | None = None, *, retry_after_ms: int | None = None
) -> bytes:
    """The JSON body of a refused claim (or any error) of ``reason``.

    ``retryAfterMs`` tells a page exactly when to try again (NOT_STARTED, RATE_LIMITED):
    the ``Retry-After`` header has whole seconds only, too coarse for a countdown to T0.
    """
    body: dict[str, object] = {
        "code": reason.code,
        "reason": reason.value,
        "message": message or reason.message,
    }
    if retry_after_ms is not None:
        body["retryAfterMs"] = retry_after_ms
    return orjson.dumps(body)


#: Refusals after which a campaign is answered from memory for a while: nothing but a
#: top-up or a new day changes them.
EXHAUSTED = frozenset(
    {
        Reason.SOLD_OUT,
        Reason.DAILY_SOLD_OUT,
        Reason.BUDGET_EXHAUSTED,
        Reason.ENDED,
        Reason.DAILY_BUDGET_EXHAUSTED,  # every coupon of a campaign costs the same
    }
)

#: Exhausted until the campaign's midnight, not longer: a new day brings them back.
EXHAUSTED_TODAY = frozenset({Reason.DAILY_SOLD_OUT, Reason.DAILY_BUDGET_EXHAUSTED})

#: Refusals that are the gateway doing its job (a load test counts them as successes):
#: the campaign's rules, limits and protections, not a fault and not a bad request.
BUSINESS_REFUSALS = EXHAUSTED | frozenset(
    {
        Reason.USER_LIMIT,
        Reason.USER_DAILY_LIMIT,
        Reason.DEVICE_LIMIT,
        Reason.NOT_STARTED,
        Reason.PAUSED,
        Reason.NOT_ELIGIBLE,
        Reason.EXCLUSIVE_CONFLICT,
        Reason.BLOCKED,
        Reason.RATE_LIMITED,
        Reason.OVERLOADED,
        Reason.CHANNEL_SOLD_OUT,  # one channel's quota: others may still claim
        Reason.USER_MONEY_LIMIT,
    }
)

#: Refusals that are the gateway's (or its storage's) trouble, answered 5xx: logged.
SERVER_SIDE = frozenset(reason for reason in Reason if reason.status >= 500)

#: Pre-rendered bodies for the refusals a herd hammers; built once, sent as bytes.
REFUSAL_BODIES = {reason: refusal_body(reason) for reason in Reason}
