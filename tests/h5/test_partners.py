"""Page set-up for partners: the copy in the spec (checked field by field), the link and QR
code from the admin API and the CLI."""

from __future__ import annotations

import functools
import json

import msgspec
import pytest

from gateway.campaigns.pages import PageCopy, PageSetup
from gateway.campaigns.spec import Campaign, decode_spec
from gateway.h5.partners import base_url, page_link, qr_code
from gateway.infra.settings import ConfigError, Settings
from tests.helpers import ADMIN_TOKEN, child_env, flashclaim, published, spec

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAGES = {
    "default": {"title": "双11 抢券", "subtitle": "每人限领1张"},
    "channels": {
        "partner-a": {
            "title": "A 银行专享",
            "buttonText": "立即抢",
            "headerImageUrl": "https://cdn.partner-a.example/banner.png?v=2",
        }
    },
}


def test_a_channel_copy_overrides_the_default_field_by_field():
    setup = PageSetup(
        default=PageCopy(title="T", subtitle="S", header_image_url="https://x.example/d.png"),
        channels={"p": PageCopy(button_text="Go", header_image_url="https://x.example/p.png")},
    )
    assert setup.copy_for("p") == PageCopy(
        title="T", subtitle="S", button_text="Go", header_image_url="https://x.example/p.png"
    )
    assert setup.copy_for("elsewhere") == setup.default


BAD_PAGES = [
    pytest.param({"default": {"headerImageUrl": "http://cdn.example/a.png"}}, id="http"),
    pytest.param({"default": {"headerImageUrl": "javascript:alert(1)"}}, id="javascript"),
    pytest.param({"default": {"headerImageUrl": "https://"}}, id="no-host"),
    pytest.param({"default": {"headerImageUrl": "https://u:p@cdn.example/a"}}, id="credentials"),
    pytest.param({"default": {"headerImageUrl": "https://cdn.example/a b.png"}}, id="space"),
    pytest.param({"default": {"headerImageUrl": 'https://cdn.example/"onerror'}}, id="quote"),
    pytest.param({"default": {"headerImageUrl": "https://cdn.example:99999/a"}}, id="bad-port"),
    pytest.param({"default": {"headerImageUrl": "https://a.example/" + "x" * 500}}, id="long-url"),
    pytest.param({"default": {"title": "x" * 61}}, id="long-title"),
    pytest.param({"default": {"title": "two\nlines"}}, id="newline"),
    pytest.param({"default": {"subtitle": "nul\x00"}}, id="nul"),
    pytest.param({"default": {"buttonText": "\u202eevil"}}, id="bidi-override"),
    pytest.param({"default": {"colour": "red"}}, id="unknown-field"),
    pytest.param({"channels": {"Partner A": {}}}, id="channel-name"),
    pytest.param({"channels": {f"c{n}": {} for n in range(201)}}, id="too-many-channels"),
    pytest.param({"default": "just a title"}, id="not-an-object"),
]


@pytest.mark.parametrize("pages", BAD_PAGES)
async def test_bad_page_copy_is_refused_naming_the_field(client, pages):
    response = await client.post("/admin/campaigns", json=spec(pages=pages), headers=ADMIN)
    body = await response.json()
    assert response.status == 422, body
    assert [e["field"].split(".")[0].split("[")[0] for e in body["errors"]] == ["pages"], body


async def test_page_copy_is_stored_and_changed_like_any_field(client):
    created = await client.post(
        "/admin/campaigns", json=spec(id="pc-1", pages=PAGES), headers=ADMIN
    )
    assert created.status == 201, await created.text()
    assert (await created.json())["pages"]["channels"]["partner-a"]["buttonText"] == "立即抢"
    changed = await client.patch(
        "/admin/campaigns/pc-1", json={"pages": {"default": {"title": "新标题"}}}, headers=ADMIN
    )
    assert (await changed.json())["pages"] == {
        "default": {"title": "新标题", "subtitle": "", "buttonText": "", "headerImageUrl": ""},
        "channels": {},
    }


@pytest.fixture
async def partner_campaign(ops):
    return await published(ops, id="pc-2", name="双11", pages=PAGES, channels=["partner-a", "h5"])


async def test_admin_hands_back_the_link_copy_and_qr_codes(make_client, partner_campaign):
    client = await make_client(public_base_url="https://m.shop.example/")
    response = await client.get("/admin/campaigns/pc-2/page?channel=partner-a", headers=ADMIN)
    link = await response.json()
    url = "https://m.shop.example/h5/pc-2?channel=partner-a"
    assert link == {
        "campaignId": "pc-2",
        "channel": "partner-a",
        "url": url,
        "page": {
            "title": "A 银行专享",
            "subtitle": "每人限领1张",
            "buttonText": "立即抢",
            "headerImageUrl": "https://cdn.partner-a.example/banner.png?v=2",
        },
        "qr": {
            "svg": "/admin/campaigns/pc-2/page/qr.svg?channel=partner-a",
            "png": "/admin/campaigns/pc-2/page/qr.png?channel=partner-a",
        },
    }
    svg = await client.get(link["qr"]["svg"], headers=ADMIN)
    assert svg.content_type == "image/svg+xml"
    assert await svg.read() == qr_code(url, "svg")
    png = await client.get(link["qr"]["png"], headers=ADMIN)
    assert png.content_type == "image/png"
    assert (await png.read()).startswith(b"\x89PNG\r\n\x1a\n")
    default = await (await client.get("/admin/campaigns/pc-2/page", headers=ADMIN)).json()
    assert (default["url"], default["page"]["title"]) == (
        "https://m.shop.example/h5/pc-2?channel=h5",
        "双11 抢券",  # the default copy's
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/campaigns/pc-2/page?channel=seckill", 422),  # not one of the campaign's
        ("/admin/campaigns/pc-2/page?channel=Bad%20Name", 422),
        ("/admin/campaigns/pc-2/page?channel=%00", 422),
        ("/admin/campaigns/nope/page", 404),
        ("/admin/campaigns/%00/page", 404),
        ("/admin/campaigns/%FF%FE/page/qr.png", 404),
        ("/admin/campaigns/pc-2/page/qr.gif", 404),
    ],
)
async def test_admin_refuses_what_it_cannot_link(client, partner_campaign, path, status):
    response = await client.get(path, headers=ADMIN)
    assert response.status == status, await response.text()
    assert (await client.get(path)).status == 401  # and only for operators


def test_cli_prints_the_link_and_writes_the_qr_code(settings, pool, redis, tmp_path):
    env = child_env(settings, public_base_url="https://m.shop.example")
    run = functools.partial(flashclaim, env)
    created = run("campaign", "create", "-", stdin=json.dumps(spec(id="cli-p", pages=PAGES)))
    assert created.returncode == 0, created.stderr
    poster = tmp_path / "poster.svg"
    printed = run("campaign", "page", "cli-p", "--channel", "partner-a", "--qr", str(poster))
    assert printed.returncode == 0, printed.stderr
    link = json.loads(printed.stdout)
    assert link["url"] == "https://m.shop.example/h5/cli-p?channel=partner-a"
    assert link["page"]["title"] == "A 银行专享"
    assert poster.read_bytes() == qr_code(link["url"], "svg")
    out = tmp_path / "poster.png"
    assert run("campaign", "page", "cli-p", "--qr", str(out)).returncode == 0
    assert out.read_bytes() == qr_code("https://m.shop.example/h5/cli-p?channel=h5", "png")
    wrong = run("campaign", "page", "cli-p", "--qr", str(tmp_path / "poster.gif"))
    assert (wrong.returncode, wrong.stderr.strip()) == (
        1,
        "flashclaim campaign: invalid: qr: the file name must end in .svg or .png",
    )
    missing = run("campaign", "page", "no-such", "--channel", "partner-a")
    assert (missing.returncode, missing.stderr) == (1, "flashclaim campaign: no campaign no-such\n")


@pytest.mark.parametrize(
    "base", ["ftp://m.shop.example", "m.shop.example", "https://x/?a=1", "https:// x"]
)
def test_the_public_base_url_is_an_http_origin_and_path(base):
    with pytest.raises(ConfigError, match="FLASHCLAIM_PUBLIC_BASE_URL"):
        Settings.from_env({}, jwt_secret="j" * 32, admin_token="a" * 32, public_base_url=base)
    fine = Settings.from_env(
        {}, jwt_secret="j" * 32, admin_token="a" * 32, public_base_url="https://m.example/shop/"
    )
    assert base_url(fine) == "https://m.example/shop"


async def test_a_name_with_control_characters_titles_the_page_and_the_public_view(client, ops):
    """A campaign name may hold a tab or a newline, page copy may not: the title (the name,
    when no copy gives one) drops them, on the admin link and on the public view alike."""
    await published(ops, id="pc-ctl", name="双11\t抢券\n\u202e", channels=["h5"])
    link = await client.get("/admin/campaigns/pc-ctl/page", headers=ADMIN)
    assert link.status == 200
    assert (await link.json())["page"]["title"] == "双11抢券"
    public = await client.get("/api/campaigns/pc-ctl/public")
    assert public.status == 200
    assert (await public.json())["page"]["title"] == "双11抢券"


def test_a_campaign_name_with_control_characters_makes_a_one_line_title():
    """Found by the fuzz suite: the page falls back to the campaign's name as its title."""
    campaign = msgspec.convert(msgspec.to_builtins(decode_spec(spec(name="Double\n11\x01"))),
                               Campaign)  # fmt: skip
    link = page_link(campaign, "app", "https://x.example")
    assert link.page.title == "Double11"
