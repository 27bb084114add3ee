"""Log lines an SRE can search: one JSON object per line, the request's fields on each,
and a herd's repeated warning folded into a line a second."""

from __future__ import annotations

import contextvars
import json
import logging
import subprocess
import sys

from gateway.infra import logs

SCRIPT = """
import logging
from gateway.infra import logs
logs.configure("info", "json", process="serve")
log = logging.getLogger("gateway.example")
log.info("outside any request")
logs.start_request("req-abc")
logs.bind(user="u1", campaign="d11", claimRequestId="click-0001")
log.warning("claim refused: %s", "OVERLOADED")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def test_lines_are_json_with_the_request_fields():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(lines) == 3, result.stderr
    outside, warning, error = lines
    assert "requestId" not in outside
    assert outside["process"] == "serve"
    assert {"time", "level", "logger", "message"} <= set(outside)
    assert warning["level"] == "WARNING"
    assert warning["message"] == "claim refused: OVERLOADED"
    fields = ("requestId", "user", "campaign", "claimRequestId")
    assert [warning[f] for f in fields] == ["req-abc", "u1", "d11", "click-0001"]
    assert "ZeroDivisionError" in error["exc"]  # the traceback inside the one line


def test_a_repeated_warning_is_throttled(caplog):
    throttle = logs.Throttle(logging.getLogger("gateway.example"), interval_s=60)
    with caplog.at_level(logging.WARNING):
        for n in range(1000):
            throttle.warning("redis", "Redis failed (%d)", n)
    assert [r.getMessage() for r in caplog.records] == ["Redis failed (0)"]


def test_a_client_request_id_is_kept_only_when_plain():
    def check() -> None:
        assert logs.start_request("abc-123") == "abc-123"
        for hostile in ("a b", "x\nlevel=ERROR", "ä", "", "y" * 129):
            assert logs.start_request(hostile) != hostile

    contextvars.copy_context().run(check)  # no request id left behind for other tests
