"""The credit part of the operators' API (``/admin/credit``): plans, grants, withdrawals,
and the reconciliation figures.

Plans are refused field by field like campaign specs (422 with ``errors``, rendered by the
admin app's error middleware). A withdrawal names the plan whose rules allow it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from aiohttp import web

from gateway.campaigns.admin_api import InvalidFields
from gateway.campaigns.spec import InvalidSpec
from gateway.credit.api import LEDGER, Handler, PlanRef
from gateway.credit.api import _guarded as _user_guarded
from gateway.credit.journal import WithdrawalNotAllowed
from gateway.credit.plan import CreditPlan, decode_plan
from gateway.credit.reconcile import CreditReport, reconcile
from gateway.credit.store import PlanExists, PlanStore
from gateway.identifiers import CAMPAIGN_ID_PATTERN, UserId
from gateway.infra.http import json_body, json_response, refusal
from gateway.infra.openapi import Operation
from gateway.reasons import Reason

PLANS = web.AppKey("credit_plans", PlanStore)
_PLAN_ID = re.compile(CAMPAIGN_ID_PATTERN)
Key = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
Cents = Annotated[int, msgspec.Meta(ge=1, le=100_000_000_000)]


class Grant(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/credit/grants``: bonus credit for a user (once per key)."""

    user_id: UserId
    bonus_cents: Cents
    valid_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    key: Key


class Granted(msgspec.Struct, rename="camel"):
    """The grant's journal entry."""

    entry_id: int


class Withdrawal(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /admin/credit/withdrawals``: pay principal back out (once per key)."""

    user_id: UserId
    plan_id: PlanRef
    amount_cents: Cents
    key: Key


class Withdrawn(msgspec.Struct, rename="camel"):
    """Principal paid out, and the matching bonus forfeited."""

    withdrawn_cents: int
    forfeited_cents: int


class PlanList(msgspec.Struct):
    """Every credit plan, newest first."""

    plans: list[CreditPlan]


def _guarded(handler: Handler) -> Handler:
    """The user API's refusals, plus a taken plan id (409); invalid specs pass through to
    the admin app's middleware, which lists their fields."""
    inner = _user_guarded(handler)

    async def guarded(request: web.Request) -> web.Response:
        try:
            return await inner(request)
        except PlanExists as exc:
            return refusal(Reason.INVALID_REQUEST, f"credit plan {exc} exists", status=409)

    return guarded


def _plan_id(request: web.Request) -> str | None:
    value = request.match_info["id"]
    return value if _PLAN_ID.match(value) else None


async def list_plans(request: web.Request) -> web.Response:
    """Every plan."""
    plans = await request.config_dict[PLANS].all()
    return json_response({"plans": [msgspec.to_builtins(p) for p in plans]})


async def create_plan(request: web.Request) -> web.Response:
    """Store a new plan."""
    plan = await request.config_dict[PLANS].create(decode_plan(await json_body(request)))
    return json_response(msgspec.to_builtins(plan), 201)


async def show_plan(request: web.Request) -> web.Response:
    """One plan."""
    plan_id = _plan_id(request)
    if plan_id is None:
        return refusal(Reason.UNKNOWN_CREDIT_PLAN)
    return json_response(msgspec.to_builtins(await request.config_dict[PLANS].get(plan_id)))


async def update_plan(request: web.Request) -> web.Response:
    """Change fields of a plan (top-ups already ordered keep their deal)."""
    plan_id = _plan_id(request)
    if plan_id is None:
        return refusal(Reason.UNKNOWN_CREDIT_PLAN)
    try:
        changes = msgspec.json.decode(await json_body(request), type=dict[str, Any])
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidSpec([]) from exc
    plan = await request.config_dict[PLANS].update(plan_id, changes)
    return json_response(msgspec.to_builtins(plan))


async def grant(request: web.Request) -> web.Response:
    """Give a user bonus credit."""
    body = msgspec.json.decode(await json_body(request), type=Grant)
    ledger = request.config_dict[LEDGER]
    entry_id = await ledger.grant(body.user_id, body.bonus_cents, body.valid_days, body.key)
    return json_response({"entryId": entry_id})


async def withdraw(request: web.Request) -> web.Response:
    """Pay a user's principal back out, forfeiting the matching bonus."""
    body = msgspec.json.decode(await json_body(request), type=Withdrawal)
    plan = await request.config_dict[PLANS].get(body.plan_id)
    if not plan.withdrawals:
        raise WithdrawalNotAllowed(f"credit plan {plan.id} does not allow withdrawals")
    done = await request.config_dict[LEDGER].withdraw(body.user_id, body.amount_cents, body.key)
    return json_response({"withdrawnCents": done[0], "forfeitedCents": done[1]})


async def show_reconcile(request: web.Request) -> web.Response:
    """Balances against the journal, now."""
    report = await reconcile(request.config_dict[LEDGER].pool)
    return json_response({**msgspec.to_builtins(report), "ok": report.ok,
                          "differenceCents": report.difference_cents})  # fmt: skip


def routes() -> list[web.RouteDef]:
    """The credit routes of the admin API (mounted under ``/admin/``)."""
    return [
        web.get("/credit/plans", _guarded(list_plans)),
        web.post("/credit/plans", _guarded(create_plan)),
        web.get("/credit/plans/{id}", _guarded(show_plan)),
        web.patch("/credit/plans/{id}", _guarded(update_plan)),
        web.post("/credit/grants", _guarded(grant)),
        web.post("/credit/withdrawals", _guarded(withdraw)),
        web.get("/credit/reconcile", _guarded(show_reconcile)),
    ]


class Reconciled(CreditReport, kw_only=True):
    """The ledger's figures; ``ok`` when balances and journal agree to the cent."""

    ok: bool
    difference_cents: int


_PLAN = {"id": PlanRef}
_INVALID = {422: InvalidFields}
_UNAVAILABLE = [Reason.UNAVAILABLE]


def _admin(method: str, path: str, summary: str, **details: Any) -> Operation:
    details.setdefault("refusals", _UNAVAILABLE)
    return Operation(method, f"/admin{path}", summary, "admin", auth="admin", **details)


PlanChanges = msgspec.defstruct(
    "PlanChanges",
    [
        (f.name, f.type | msgspec.UnsetType, msgspec.UNSET)
        for f in msgspec.structs.fields(CreditPlan)
        if f.name != "id"
    ],
    rename="camel",
    forbid_unknown_fields=True,
    kw_only=True,
    namespace={"__doc__": "Fields of a credit plan to change; the rest stay as they are."},
)

OPERATIONS = [
    _admin("GET", "/credit/plans", "List credit plans", ok=PlanList),
    _admin("POST", "/credit/plans", "Create a credit plan", ok=CreditPlan, ok_status=201,
           body=CreditPlan, refusal_bodies=_INVALID,
           refusals=[(Reason.INVALID_REQUEST, 409), *_UNAVAILABLE]),
    _admin("GET", "/credit/plans/{id}", "Show a credit plan", ok=CreditPlan, params=_PLAN,
           refusals=[Reason.UNKNOWN_CREDIT_PLAN, *_UNAVAILABLE]),
    _admin("PATCH", "/credit/plans/{id}", "Change fields of a credit plan", ok=CreditPlan,
           params=_PLAN, body=PlanChanges, refusal_bodies=_INVALID,
           refusals=[Reason.UNKNOWN_CREDIT_PLAN, *_UNAVAILABLE]),
    _admin("POST", "/credit/grants", "Grant bonus credit to a user (once per key)",
           ok=Granted, body=Grant, refusals=[Reason.REQUEST_MISMATCH, *_UNAVAILABLE]),
    _admin("POST", "/credit/withdrawals", "Withdraw principal, forfeiting the matching bonus",
           ok=Withdrawn, body=Withdrawal,
           refusals=[Reason.UNKNOWN_CREDIT_PLAN, Reason.WITHDRAWAL_NOT_ALLOWED,
                     Reason.INSUFFICIENT_CREDIT, Reason.REQUEST_MISMATCH, *_UNAVAILABLE]),
    _admin("GET", "/credit/reconcile", "Credit balances against the journal, to the cent",
           ok=Reconciled),
]  # fmt: skip
