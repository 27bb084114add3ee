"""Lua scripts: read once from ``lua/`` and registered with redis-py.

Scripts are files (package data in a wheel, ``lua/`` in a checkout), read once and
registered as redis-py ``AsyncScript`` objects: EVALSHA, and on ``NOSCRIPT`` (after a
Redis restart, failover or ``SCRIPT FLUSH``) redis-py loads the script and retries.
Each script's call contract (its KEYS, ARGV and reply) lives in one typed module beside
the capability that runs it, e.g. ``gateway/claim/script.py`` for ``claim.lua``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

_PACKAGE = Path(__file__).resolve().parent.parent


def lua_dir() -> Path:
    """Where the scripts are: packaged in the ``gateway`` package, else the checkout's."""
    packaged = _PACKAGE / "lua"
    return packaged if packaged.is_dir() else _PACKAGE.parent / "lua"


@cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")


def for_redis(text: str, major_version: int) -> str:
    """The script as a Redis of this major version accepts it.

    The ``#!lua`` line makes Redis 7 refuse a writing script up front when memory is full
    (instead of failing on its first write, after the checks); Redis 6 does not know the
    line, so it is dropped there and the local stack runs Redis 6 with no memory limit.
    """
    if major_version >= 7 or not text.startswith("#!"):
        return text
    return text.split("\n", 1)[1]


def register(redis: Redis, name: str, major_version: int = 7) -> AsyncScript:
    """``lua/<name>.lua`` registered on ``redis`` for a server of ``major_version``."""
    return redis.register_script(for_redis(source(name), major_version))
