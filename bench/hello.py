"""The baseline: an aiohttp + uvloop server that reads a JSON POST and answers JSON.

It does what every claim must do at the least (parse HTTP, read the body, write a small
JSON answer) and nothing else, so claims/s divided by its requests/s says how much the
claim logic itself costs.
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    """Read the body, answer a fixed JSON document."""
    await request.read()
    return web.Response(
        body=orjson.dumps({"code": 0, "reason": "HELLO"}), content_type="application/json"
    )


def main() -> None:
    """Serve on the port given as the only argument."""
    app = web.Application()
    app.add_routes([web.post("/api/coupon/issue", hello)])
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
