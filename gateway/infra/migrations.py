"""PostgreSQL's schema: the numbered migrations and the runner that applies them.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order, each
in its own transaction, under an advisory lock so that several processes starting at
once apply each file exactly once. A plain runner rather than a migration tool: the
schema is SQL, the runner is twenty lines, and it needs no binary beside asyncpg.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent.parent
_LOCK_ID = 0x666C617368  # "flash": one advisory lock for schema changes


def migrations_dir() -> Path:
    """Packaged in the ``gateway`` package in a wheel, else the checkout's ``migrations/``."""
    packaged = _HERE / "migrations"
    return packaged if packaged.is_dir() else _HERE.parent / "migrations"


async def ensure_database(database_url: str) -> None:
    """Create the database named in ``database_url`` if the server lacks it."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        url = urlsplit(database_url)  # the host may sit in the query (a Unix socket)
        name = url.path.lstrip("/")
        admin = await asyncpg.connect(url._replace(path="/postgres").geturl())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not applied yet; return the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(migrations_dir().glob("[0-9][0-9][0-9][0-9]_*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            log.info("applied migration %s", path.name)
            applied_now.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


async def migrate_database(database_url: str) -> list[str]:
    """Create the database if needed and apply pending migrations; the names applied."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
