"""``flashclaim up`` as a test fixture: the real local stack, on ports of the test's own.

It starts its own redis-server, tansu broker and (``--embedded-postgres``) PostgreSQL under a
temporary data dir, exactly as ``make run`` does on a fresh machine, and is stopped with
SIGINT, as a developer's Ctrl-C would.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from gateway.stack.servers import free_port
from tests.helpers import ADMIN_TOKEN, JWT_SECRET


class LocalStack:
    """A running ``flashclaim up``; ``env`` reaches its services, ``claim_command`` is printed."""

    def __init__(self, data_dir: Path, cluster_url: str = "") -> None:
        self.data_dir = data_dir
        self.cluster_url = cluster_url  # a Redis Cluster to adopt instead of a Redis of its own
        self.port, self.redis_port, self.kafka_port = free_port(), free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.output = data_dir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.claim_command = ""
        self.env: dict[str, str] = {}

    def launch_env(self) -> dict[str, str]:
        """The environment ``flashclaim up`` runs in: test secrets, no configured database."""
        env = {
            **os.environ,
            "FLASHCLAIM_JWT_SECRET": JWT_SECRET,
            "FLASHCLAIM_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLASHCLAIM_CREDIT_PAYMENT_SECRET": "local-test-credit-payment-secret-0123456789",
            "FLASHCLAIM_TRUST_FORWARDED_FOR": "true",  # load tests send client IPs
            "FLASHCLAIM_WORKERS": "2",
        }
        env.pop("FLASHCLAIM_DATABASE_URL", None)
        if self.cluster_url:
            env.update(FLASHCLAIM_REDIS_URL=self.cluster_url, FLASHCLAIM_REDIS_CLUSTER="true")
        return env

    def start(self, timeout_s: float = 90.0) -> LocalStack:
        env = self.launch_env()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.output.open("wb") as log:  # the child keeps its own descriptor
            self.process = self.spawn(env, log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.output.read_text(errors="replace").splitlines()
            commands = [line.strip() for line in lines if line.strip().startswith("curl ")]
            if commands:
                self.claim_command = commands[0]
                self.env = {**env, **_read_env(self.data_dir / "stack.env")}
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"flashclaim up exited:\n{self.output.read_text()}")
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"flashclaim up did not come up:\n{self.output.read_text()}")

    def spawn(self, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        redis = [] if self.cluster_url else ["--redis-port", str(self.redis_port)]
        return subprocess.Popen(
            [
                sys.executable, "-m", "gateway.cli", "up",
                "--port", str(self.port),
                *redis,
                "--kafka-port", str(self.kafka_port),
                "--data-dir", str(self.data_dir),
                "--embedded-postgres",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> int | None:
        """Ctrl-C, then wait for it to stop everything; its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: shlex.split(value)[0] for key, value in pairs}
