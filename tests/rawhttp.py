"""Raw HTTP/1.1 over a real TCP socket: the bytes a client can send that an HTTP client
library would never let through (non-UTF-8 headers, lies in Content-Length, hang-ups)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class RawResponse:
    """One answer, as read off the socket."""

    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def exchange(
    port: int, data: bytes, *, hang_up: bool = False, wait_s: float = 5.0, pause: float = 0.05
) -> RawResponse | None:
    """Send ``data`` and read one response (None if the server closed without one, or
    is still waiting for bytes ``data`` promised after ``wait_s`` seconds).

    ``hang_up``: close our side ``pause`` seconds after sending (the server is reading the
    rest of the body by then), as a client that gives up mid-request.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if hang_up:
            await asyncio.sleep(pause)
            return None
        head = data.startswith(b"HEAD ")
        return await asyncio.wait_for(_read_response(reader, head), wait_s)
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader, head: bool) -> RawResponse | None:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head or status in (100, 204, 304):  # answers without a body
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
    return RawResponse(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            return body
        body += await reader.readexactly(size)
        await reader.readline()


def request(
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, bytes | str] | None = None,
    body: bytes = b"",
    *,
    content_length: int | None = None,
) -> bytes:
    """The bytes of one request (``content_length`` may lie about ``body``)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: test"]
    for name, value in (headers or {}).items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    length = len(body) if content_length is None else content_length
    if body or content_length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
