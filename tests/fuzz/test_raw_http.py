"""Hypothesis over raw bytes on a real TCP socket: methods, paths, headers, bodies and
framing no HTTP client library would send (non-UTF-8, NUL, lies in Content-Length, bad
chunking, huge lines), requests cut short and clients hanging up.

Whatever arrives, an answer is never a 5xx, and an error answer is always the gateway's
JSON ``{"code", "reason", "message"}`` with a reason of the table. Afterwards /metrics
has counted no 5xx and the log holds no error and no traceback.
"""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.reasons import Reason
from tests.fuzz.conftest import FUZZ_CAMPAIGN
from tests.helpers import ADMIN_TOKEN, body, open_now, spec, token
from tests.rawhttp import exchange

MAX_EXAMPLES = 1000  # per test
REASONS = {reason.value for reason in Reason}
USER = f"Bearer {token('raw-fuzzer')}".encode()
ADMIN = f"Bearer {ADMIN_TOKEN}".encode()
JSON = b"application/json"
CAMPAIGN_PATH = f"/admin/campaigns/{FUZZ_CAMPAIGN}"

#: Requests the gateway accepts, to start from: mutations then reach past the first check.
TEMPLATES: list[tuple[bytes, str, dict[bytes, bytes], bytes]] = [
    (b"POST", "/api/coupon/issue", {b"Authorization": USER, b"Content-Type": JSON},
     orjson.dumps(body(FUZZ_CAMPAIGN, request_id="raw-fuzz-0001"))),
    (b"POST", "/admin/campaigns", {b"Authorization": ADMIN, b"Content-Type": JSON},
     orjson.dumps(spec(id="raw-fuzz", **open_now()))),
    (b"PATCH", CAMPAIGN_PATH, {b"Authorization": ADMIN, b"Content-Type": JSON},
     b'{"name": "renamed", "perUserLimit": 1000000}'),
    (b"POST", f"{CAMPAIGN_PATH}/topup", {b"Authorization": ADMIN, b"Content-Type": JSON},
     b'{"stock": 1, "budgetCents": 0}'),
    (b"POST", f"{CAMPAIGN_PATH}/blocklist", {b"Authorization": ADMIN, b"Content-Type": JSON},
     b'{"users": ["blocked-1"], "devices": []}'),
    (b"GET", CAMPAIGN_PATH, {b"Authorization": ADMIN}, b""),
    (b"GET", "/readyz", {}, b""),
    (b"GET", f"/api/campaigns/{FUZZ_CAMPAIGN}/public?channel=h5", {}, b""),
    (b"GET", f"{CAMPAIGN_PATH}/page?channel=h5", {b"Authorization": ADMIN}, b""),
    (b"OPTIONS", "/api/coupon/issue",
     {b"Origin": b"https://m.shop.example", b"Access-Control-Request-Method": b"POST"}, b""),
]  # fmt: skip
PATHS = ["/api/coupon/issue", "/admin/campaigns", "/admin/campaigns/{id}", "/livez",
         "/admin/campaigns/{id}/publish", "/metrics", "/docs", "/", "/admin/",
         "/api/campaigns/{id}/public", "/h5/{id}", "/h5/static/{id}",
         "/admin/campaigns/{id}/page"]  # fmt: skip
NASTY = [b"\xff", b"\x00", b"\\u0000", b'"', b"\\", b"{", b"\xc3", b"\xed\xa0\x80",
         b"\r\n", b"\\ud800", b"9" * 30, b"-1", b"null", b"[]"]  # fmt: skip

#: Bytes a header value may carry that are not UTF-8 (aiohttp keeps them as surrogates).
NOT_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xfe\xff", b"\xe2\x98", b"\xe9"]

junk = st.one_of(st.binary(max_size=48), st.sampled_from(NASTY))
token_chars = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD", "TRACE"]),
    token_chars.map(str.upper),
).map(str.encode)
segments = st.one_of(
    st.sampled_from([FUZZ_CAMPAIGN, "%00", "%ff%fe", "%E2%98%83", "..", "%2e%2e%2f", "a" * 300]),
    st.text(max_size=20),
)
paths = st.one_of(
    st.builds(lambda path, cid: path.replace("{id}", cid), st.sampled_from(PATHS), segments).map(
        lambda path: path.encode("utf-8", "surrogatepass")
    ),
    junk.map(lambda raw: b"/" + raw),
)
names = st.one_of(
    st.sampled_from([b"Authorization", b"Content-Type", b"Content-Length", b"Transfer-Encoding",
                     b"X-Request-Id", b"Origin", b"X-Forwarded-For", b"Connection", b"Expect",
                     b"Content-Encoding"]),
    token_chars.map(str.encode),
    junk,
)  # fmt: skip
values = st.one_of(
    st.sampled_from([USER, ADMIN, JSON, b"chunked", b"gzip", b"100-continue", b"a" * 9000]),
    junk,
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
)


#: Mutations that keep a request parsable, so it reaches the handlers (bodies, header
#: values, declared lengths), and those that break its framing, which aiohttp's parser
#: meets first (method, path, header names, chunking, cut short).
CONTENT = ["value", "header", "body", "body", "cut_body", "length"]
FRAMING = ["method", "path", "header", "drop", "chunked", "cut", "value", "body"]


@st.composite
def requests(draw: st.DrawFn, mutations: list[str]) -> tuple[bytes, bool]:
    """A request the gateway accepts, mutated one to three times: its bytes, and whether
    the client hangs up after sending them."""
    method, path, template_headers, data = draw(st.sampled_from([TEMPLATES[0], *TEMPLATES]))
    target, headers = path.encode(), dict(template_headers)
    length: int | bool | None = True  # True: the body's true length; None: no header
    cut = False
    for mutation in draw(st.lists(st.sampled_from(mutations), min_size=1, max_size=3)):
        if mutation == "method":
            method = draw(methods)
        elif mutation == "path":
            target = draw(paths)
        elif mutation == "header":
            headers[draw(names)] = draw(values)
        elif mutation == "drop" and headers:
            headers.pop(draw(st.sampled_from(sorted(headers))))
        elif mutation == "value" and headers:  # bytes into a value (after "Bearer ", say)
            name = draw(st.sampled_from(sorted(headers)))
            at = draw(st.integers(0, len(headers[name])))
            inserted = draw(st.one_of(st.sampled_from(NOT_UTF8), junk))
            headers[name] = headers[name][:at] + inserted + headers[name][at:]
        elif mutation == "body":  # bytes into the body, where a string or a number sits
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.one_of(st.sampled_from(NOT_UTF8), junk)) + data[at:]
        elif mutation == "cut_body":
            data = draw(st.one_of(junk, st.just(data[: draw(st.integers(0, len(data)))])))
        elif mutation == "length":
            length = draw(st.one_of(st.none(), st.integers(-1, 1 << 40)))
        elif mutation == "cut":
            cut = True
        elif mutation == "chunked":  # chunked framing, whole or broken
            headers[b"Transfer-Encoding"] = b"chunked"
            length = None
            data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) + draw(junk)
    declared = len(data) if length is True else length
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: fuzz"]
    lines += [name + b": " + value for name, value in headers.items()]
    if declared is not None:
        lines.append(b"Content-Length: %d" % declared)
    message = b"\r\n".join(lines) + b"\r\n\r\n" + data
    if cut:
        return message[: draw(st.integers(0, len(message)))], True
    return message, declared is not None and declared > len(data)  # it would wait for more


def check(port: int, request: tuple[bytes, bool]) -> None:
    """Send one request; any answer is below 500 and, if an error, the gateway's JSON."""
    data, hang_up = request
    answer = asyncio.run(exchange(port, data, hang_up=hang_up, wait_s=2, pause=0.01))
    if answer is None or answer.status == 100:  # hung up, or only "100 Continue" so far
        return
    assert answer.status < 500, (data[:300], answer)
    page = answer.headers.get("content-type", "").startswith("text/html") and b" /h5/" in data
    if answer.status >= 400 and data[:4] != b"HEAD" and not page:  # pages 404 as pages
        assert answer.headers.get("content-type", "").startswith("application/json"), answer
        assert answer.body, (data[:300], answer)
        refusal = answer.json()
        assert set(refusal) >= {"code", "reason", "message"}, refusal
        assert refusal["reason"] in REASONS, refusal


FUZZING = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


@FUZZING
@given(request=requests(CONTENT))
def test_bodies_and_header_values_get_a_json_4xx_or_better(fuzzed, request):
    check(fuzzed.port, request)


@FUZZING
@given(request=requests(FRAMING))
def test_broken_framing_and_hang_ups_get_a_json_4xx_or_nothing(fuzzed, request):
    check(fuzzed.port, request)


def test_after_fuzzing_no_5xx_was_counted_and_no_error_logged(fuzzed):
    fuzzed.assert_healthy()
