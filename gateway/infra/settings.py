"""One typed settings object, read once from the environment.

Every knob of flashclaim lives here. ``Settings.from_env()`` is the only place in the
code base that reads ``os.environ``; everything else receives a ``Settings``. Bad
configuration fails at boot with a message naming the variable, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from gateway.identifiers import whole

ENV_PREFIX = "FLASHCLAIM_"

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Secret = Annotated[str, msgspec.Meta(min_length=32)]


class ConfigError(ValueError):
    """The environment does not describe a runnable flashclaim."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything flashclaim can be told. Field ``x`` is variable ``FLASHCLAIM_X``."""

    # Where things are.
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://127.0.0.1:5432/flashclaim"
    host: str = "127.0.0.1"
    port: _Port = 8080
    workers: _Positive = 2

    # Who may call. Secrets have no defaults: a gateway never runs on a guessable one.
    jwt_secret: _Secret
    jwt_issuer: str = ""
    jwt_audience: str = ""
    token_cache_size: _NonNegative = 65536
    admin_token: _Secret

    # The claim path.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 4096
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 128
    campaign_cache_ms: _NonNegative = 1000
    sold_out_cache_ms: _NonNegative = 1000
    outbox_max_len: _Positive = 1_000_000
    replay_ttl_s: _Positive = 86_400
    redis_timeout_ms: _Positive = 1000
    redis_pool_size: _Positive = 64

    # Request rates, per worker process, per second (0 switches a limit off).
    user_rate: _NonNegative = 10
    user_burst: _Positive = 20
    device_rate: _NonNegative = 10
    device_burst: _Positive = 20
    ip_rate: _NonNegative = 500
    ip_burst: _Positive = 1000
    trust_forwarded_for: bool = False

    # The hand-off: outbox relay to Kafka, consumer into PostgreSQL.
    kafka_bootstrap: str = "127.0.0.1:9092"
    claims_topic: str = "coupon.claims"
    dlq_topic: str = "coupon.claims.dlq"
    kafka_idempotence: bool = False  # on for real Kafka; the local test broker lacks it
    kafka_compression: str = "gzip"
    kafka_linger_ms: _NonNegative = 5
    kafka_timeout_ms: _Positive = 10_000
    relay_in_gateway: bool = True
    relay_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    relay_idle_ms: _Positive = 20
    relay_reclaim_ms: _Positive = 10_000
    consumer_group: str = "flashclaim-persist"
    consumer_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000

    # The H5 claim page: where users reach the gateway, for partner links and QR codes
    # ("" = http://host:port, right for a local run).
    public_base_url: Annotated[
        str, msgspec.Meta(pattern=whole(r"(https?://[^/?#\s]+(/[^?#\s]*)?)?"), max_length=200)
    ] = ""

    # Operations.
    metrics_dir: str = ""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 0  # relay/consumer; 0: off
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``FLASHCLAIM_*`` variables; ``overrides`` win over them."""
        source = os.environ if environ is None else environ
        raw: dict[str, object] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in source.items()
            if key.startswith(ENV_PREFIX)
        }
        raw.update(overrides)
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(exc)) from None


def to_env(settings: Settings) -> dict[str, str]:
    """The ``FLASHCLAIM_*`` variables that recreate ``settings`` in a child process."""
    return {
        f"{ENV_PREFIX}{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in msgspec.structs.asdict(settings).items()
    }


def _explain(exc: msgspec.ValidationError) -> str:
    """Name the environment variable behind a msgspec validation message."""
    message = str(exc)
    if " - at `$." in message:
        text, _, path = message.rpartition(" - at `$.")
        field = path.rstrip("`").split(".")[0].split("[")[0]
        return f"{ENV_PREFIX}{field.upper()}: {text}"
    if "Object contains unknown field" in message:
        field = message.split("`")[1]
        return f"{ENV_PREFIX}{field.upper()} is not a flashclaim setting"
    if "Object missing required field" in message:
        field = message.split("`")[1]
        return f"{ENV_PREFIX}{field.upper()} must be set"
    return message
