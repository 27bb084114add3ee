"""The operators' API: field-level validation, lifecycle, top-ups, live counters."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN_TOKEN, T0_MS, claim, spec

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def admin(client, method, path, json=None, headers=ADMIN):
    response = await client.request(method, f"/admin{path}", json=json, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}]
)
async def test_admin_needs_its_token(client, headers):
    status, data = await admin(client, "GET", "/campaigns", headers=headers)
    assert (status, data["reason"]) == (401, "UNAUTHORIZED")


async def test_user_token_is_not_an_admin_token(client):
    from tests.helpers import auth

    status, _ = await admin(client, "GET", "/campaigns", headers=auth("u1"))
    assert status == 401


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"stock": 0}, {"stock"}),
        ({"stock": "ten"}, {"stock"}),
        ({"faceValueCents": 10.5}, {"faceValueCents"}),
        ({"thresholdCents": 5000}, {"thresholdCents"}),
        ({"kind": "percent_off", "percentOff": 120}, {"percentOff"}),
        ({"kind": "percent_off", "percentOff": 20}, {"maxDiscountCents"}),
        ({"endsAt": "2026-11-10T00:00:00+08:00"}, {"endsAt"}),
        ({"startsAt": "2026-11-11T00:00:00"}, {"startsAt"}),
        ({"timeZone": "Mars/Olympus"}, {"timeZone"}),
        ({"dailyStock": 500}, {"dailyStock"}),
        ({"budgetCents": 100}, {"budgetCents"}),
        ({"perUserLimit": 1, "perUserDailyLimit": 2}, {"perUserDailyLimit"}),
        ({"validity": {"mode": "forever"}}, {"validity"}),
        ({"validity": {"mode": "days_after_claim"}}, {"validity"}),
        ({"id": "has space"}, {"id"}),
        ({"surprise": 1}, {"surprise"}),
        ({"thresholdCents": 5000, "timeZone": "Nowhere/Zone"}, {"thresholdCents", "timeZone"}),
    ],
)
async def test_invalid_campaign_is_refused_field_by_field(client, changes, fields):
    status, data = await admin(client, "POST", "/campaigns", spec(**changes))
    assert status == 422, data
    assert data["reason"] == "INVALID_REQUEST"
    assert {e["field"].split(".")[0] for e in data["errors"]} == fields, data
    assert all(e["message"] for e in data["errors"])
    status, listing = await admin(client, "GET", "/campaigns")
    assert listing["campaigns"] == []


async def test_campaign_lifecycle(client, clock):
    status, created = await admin(client, "POST", "/campaigns", spec(id="d11", stock=2))
    assert (status, created["status"]) == (201, "draft")
    assert (await admin(client, "POST", "/campaigns", spec(id="d11")))[0] == 409
    clock.set(T0_MS + 1000)
    assert (await claim(client, "u1", "d11"))[1]["reason"] == "UNKNOWN_CAMPAIGN"

    status, published = await admin(client, "POST", "/campaigns/d11/publish")
    assert (status, published["status"]) == (200, "active")
    assert (await claim(client, "u1", "d11"))[0] == 200
    assert (await claim(client, "u2", "d11"))[0] == 200
    assert (await claim(client, "u3", "d11"))[1]["reason"] == "SOLD_OUT"

    status, shown = await admin(client, "GET", "/campaigns/d11")
    assert shown["live"]["issued"] == 2
    assert shown["live"]["stockRemaining"] == 0
    assert shown["live"]["outboxLength"] == 2
    assert shown["live"]["spentCents"] == 20_000

    status, topped = await admin(client, "POST", "/campaigns/d11/topup", {"stock": 1})
    assert (status, topped["stock"]) == (200, 3)
    assert (await claim(client, "u3", "d11"))[0] == 200

    assert (await admin(client, "POST", "/campaigns/d11/pause"))[1]["status"] == "paused"
    assert (await claim(client, "u4", "d11"))[1]["reason"] == "PAUSED"
    assert (await admin(client, "POST", "/campaigns/d11/resume"))[1]["status"] == "active"
    assert (await claim(client, "u4", "d11"))[1]["reason"] == "SOLD_OUT"

    status, changed = await admin(client, "PATCH", "/campaigns/d11", {"perUserLimit": 2})
    assert (status, changed["perUserLimit"], changed["version"]) == (200, 2, 6)
    status, _blocked = await admin(client, "POST", "/campaigns/d11/blocklist", {"users": ["u9"]})
    assert status == 200
    await admin(client, "POST", "/campaigns/d11/topup", {"stock": 5})
    assert (await claim(client, "u9", "d11"))[1]["reason"] == "BLOCKED"
    assert (await claim(client, "u1", "d11"))[0] == 200  # limit now 2


async def test_admin_errors_are_clear(client):
    assert (await admin(client, "GET", "/campaigns/nope"))[1]["reason"] == "UNKNOWN_CAMPAIGN"
    await admin(client, "POST", "/campaigns", spec(id="draft-1"))
    status, data = await admin(client, "POST", "/campaigns/draft-1/pause")
    assert status == 409
    assert "draft" in data["message"]
    status, data = await admin(client, "POST", "/campaigns/draft-1/topup", {"stock": -1})
    assert status == 422
    status, data = await admin(client, "PATCH", "/campaigns/draft-1", {"stock": -5})
    assert status == 422
    assert data["errors"][0]["field"] == "stock"
    response = await client.post(
        "/admin/campaigns", data=b"{", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status == 422


async def test_exclusion_group_cannot_move_once_published(client):
    await admin(client, "POST", "/campaigns", spec(id="grp-1", exclusionGroup="g1"))
    await admin(client, "POST", "/campaigns/grp-1/publish")
    status, data = await admin(client, "PATCH", "/campaigns/grp-1", {"exclusionGroup": "g2"})
    assert status == 422
    assert data["errors"][0]["field"] == "exclusionGroup"


async def test_admin_bodies_may_be_larger_than_a_claims_once_authorized(client):
    """A spec with many partners' page copy is over the claim's 4 KiB; the admin API takes
    up to 1 MiB, and only from a caller holding the admin token."""
    copy = {"title": "A 银行专享", "subtitle": "x" * 150, "buttonText": "立即领取"}
    pages = {"channels": {f"partner-{i}": copy for i in range(30)}}
    big = spec(id="many-partners", channels=["h5"], pages=pages)
    status, data = await admin(client, "POST", "/campaigns", big)
    assert status == 201, data
    status, data = await admin(client, "POST", "/campaigns", big, headers={})
    assert (status, data["reason"]) == (401, "UNAUTHORIZED")
