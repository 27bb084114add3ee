"""The credit endpoints through a real gateway: plans by the admin API, a top-up paid by
a signed callback, the balance and the statement, and refusals with stable reasons."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient

from gateway.credit.topups import signature
from tests.conftest import ClientFactory
from tests.credit.conftest import PLAN
from tests.helpers import ADMIN_TOKEN, auth

SECRET = "test-payment-secret-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def callback(client: TestClient[Any, Any], body: dict[str, Any], secret: str = SECRET):
    raw = orjson.dumps(body)
    headers = {"Content-Type": "application/json",
               "X-Flashclaim-Signature": signature(secret, raw)}  # fmt: skip
    return await client.post("/api/credit/payments", data=raw, headers=headers)


async def test_top_up_pay_and_read_the_statement(
    make_client: ClientFactory, credit_pool: asyncpg.Pool
) -> None:
    client = await make_client(credit_payment_secret=SECRET)
    created = await client.post("/admin/credit/plans", json=PLAN, headers=ADMIN)
    assert created.status == 201, await created.text()
    order = {"planId": "double11", "payCents": 50_000, "requestId": "topup-0001"}
    response = await client.post("/api/credit/topups", json=order, headers=auth("ann"))
    assert response.status == 201
    topup = await response.json()
    assert topup["bonusCents"] == 5_000
    paid = {"topupId": topup["topupId"], "paymentId": "wx-001", "amountCents": 50_000}
    forged = await callback(client, paid, secret="x" * 40)
    assert forged.status == 401
    assert (await (await client.get("/api/credit", headers=auth("ann"))).json())[
        "availableCents"] == 0  # fmt: skip
    for _ in range(2):  # the provider calls back twice: counted once
        answer = await callback(client, paid)
        assert answer.status == 200
        assert (await answer.json())["status"] == "paid"
    balance = await (await client.get("/api/credit", headers=auth("ann"))).json()
    assert balance["principalCents"] == 50_000
    assert balance["bonusCents"] == 5_000
    grant = {"userId": "ann", "bonusCents": 100, "validDays": 7, "key": "welcome-ann"}
    assert (await client.post("/admin/credit/grants", json=grant, headers=ADMIN)).status == 200
    first = await (await client.get("/api/credit/entries?limit=1", headers=auth("ann"))).json()
    assert [e["kind"] for e in first["entries"]] == ["grant"]
    rest = await client.get(f"/api/credit/entries?before={first['nextBefore']}",
                            headers=auth("ann"))  # fmt: skip
    assert [e["kind"] for e in (await rest.json())["entries"]] == ["topup"]
    report = await (await client.get("/admin/credit/reconcile", headers=ADMIN)).json()
    assert report["ok"]
    assert report["principalCents"] == 50_000


async def test_refusals_have_reasons(make_client: ClientFactory, credit_pool: asyncpg.Pool) -> None:
    client = await make_client(credit_payment_secret=SECRET)
    bad_plan = {**PLAN, "tiers": [{"payCents": 100, "bonusCents": 200}]}
    refused = await client.post("/admin/credit/plans", json=bad_plan, headers=ADMIN)
    assert refused.status == 422
    assert (await refused.json())["errors"][0]["field"] == "tiers[0].bonusCents"
    await client.post("/admin/credit/plans", json=PLAN, headers=ADMIN)
    again = await client.post("/admin/credit/plans", json=PLAN, headers=ADMIN)
    assert again.status == 409
    cases = [
        ({"planId": "nope", "payCents": 100, "requestId": "topup-0002"}, 404,
         "UNKNOWN_CREDIT_PLAN"),
        ({"planId": "double11", "payCents": 99, "requestId": "topup-0003"}, 409,
         "TOPUP_OUT_OF_RANGE"),
        ({"planId": "double11", "payCents": 1.5, "requestId": "topup-0004"}, 422,
         "INVALID_REQUEST"),
    ]  # fmt: skip
    for body, status, reason in cases:
        response = await client.post("/api/credit/topups", json=body, headers=auth("bob"))
        assert (response.status, (await response.json())["reason"]) == (status, reason)
    assert (await client.get("/api/credit")).status == 401
    bad_page = await client.get("/api/credit/entries?limit=0", headers=auth("bob"))
    assert bad_page.status == 400
    unknown = {"topupId": "0" * 36, "paymentId": "wx-9", "amountCents": 1}
    assert (await (await callback(client, unknown)).json())["reason"] == "UNKNOWN_TOPUP"
    withdrawal = {"userId": "bob", "planId": "double11", "amountCents": 1, "key": "w-bob"}
    poor = await client.post("/admin/credit/withdrawals", json=withdrawal, headers=ADMIN)
    assert (await poor.json())["reason"] == "INSUFFICIENT_CREDIT"
    closed = await client.patch("/admin/credit/plans/double11", json={"withdrawals": False},
                                headers=ADMIN)  # fmt: skip
    assert closed.status == 200
    denied = await client.post("/admin/credit/withdrawals", json=withdrawal, headers=ADMIN)
    assert (await denied.json())["reason"] == "WITHDRAWAL_NOT_ALLOWED"
