"""One typed settings object, read once from the environment.

Every knob of flashclaim lives here. ``Settings.from_env()`` is the only place in the
code base that reads ``os.environ``; everything else receives a ``Settings``. Bad
configuration fails at boot with one line per problem, each naming its variable, all of
them at once (an operator fixes the environment once, not once per run).

Secrets have no defaults, but only the commands that use them ask for them
(``require``): the gateway needs both, ``flashclaim token`` the JWT secret, ``flashclaim
migrate`` neither. Kubernetes' service-link variables (``FLASHCLAIM_GATEWAY_SERVICE_HOST``
and kin, given to every pod of a namespace holding a Service named ``flashclaim-…``) are
not settings and are skipped; any other unknown ``FLASHCLAIM_*`` variable is a mistake.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from gateway.identifiers import whole

ENV_PREFIX = "FLASHCLAIM_"
SECRETS = ("jwt_secret", "admin_token")

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Secret = Annotated[str, msgspec.Meta(min_length=32)]
_ORIGIN = r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?"
_Origins = Annotated[str, msgspec.Meta(pattern=rf"^(|\*|{_ORIGIN}(,{_ORIGIN})*)$")]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# What Kubernetes puts in a pod's environment for each Service of its namespace
# (``<SVC>_SERVICE_HOST``, ``<SVC>_SERVICE_PORT[_<NAME>]``, ``<SVC>_PORT_<n>_<PROTO>[_ADDR|
# _PORT|_PROTO]``), and ``<SVC>_PORT`` whose value is ``tcp://host:port``.
_SERVICE_LINK_NAME = re.compile(
    r"^(\w+_)?(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_ADDR|_PORT|_PROTO)?)$"
)
_SERVICE_LINK_VALUE = re.compile(r"^(tcp|udp|sctp)://")


class ConfigError(ValueError):
    """The environment does not describe a runnable flashclaim; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything flashclaim can be told. Field ``x`` is variable ``FLASHCLAIM_X``."""

    # Where things are.
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://127.0.0.1:5432/flashclaim"
    host: str = "127.0.0.1"
    port: _Port = 8080
    workers: _Positive = 2

    # Who may call. Secrets have no defaults: a gateway never runs on a guessable one.
    jwt_secret: _Secret = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    token_cache_size: _NonNegative = 65536
    admin_token: _Secret = ""

    # Browsers: the front-end origins allowed to call the API ("" none, "*" any).
    cors_origins: _Origins = ""
    cors_max_age_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 7200
    cors_credentials: bool = False

    # The claim path.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 4096
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 128
    campaign_cache_ms: _NonNegative = 1000
    sold_out_cache_ms: _NonNegative = 1000
    sold_out_memory_max: _NonNegative = 100_000  # winners' requestIds kept per campaign
    outbox_max_len: _Positive = 1_000_000
    replay_ttl_s: _Positive = 86_400
    redis_timeout_ms: _Positive = 1000
    redis_pool_size: _Positive = 64
    claim_lean_redis: bool = True  # the claim path's own hiredis connection (not via redis-py)
    allow_volatile_redis: bool = False  # serve claims from a Redis that keeps nothing on disk
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster (README)
    redis_wait_replicas: _NonNegative = 0  # an accepted batch waits for this many replicas
    redis_wait_timeout_ms: _Positive = 100  # ...at most this long (then answered, counted)

    # Request rates, per worker process, per second (0 switches a limit off).
    user_rate: _NonNegative = 10
    user_burst: _Positive = 20
    device_rate: _NonNegative = 10
    device_burst: _Positive = 20
    ip_rate: _NonNegative = 500
    ip_burst: _Positive = 1000
    trust_forwarded_for: bool = False

    # Audience attributes from the company's user-profile service (gateway/rules/profiles.py):
    # its base URL ("" none), how long to wait and remember, and what a failed lookup means
    # ("token": judge on the token's attrs; "refuse": answer UNAVAILABLE, retry shortly).
    profile_url: Annotated[
        str, msgspec.Meta(pattern=whole(r"(https?://[^?#\s]+)?"), max_length=200)
    ] = ""
    profile_timeout_ms: _Positive = 50
    profile_cache_s: _NonNegative = 60
    profile_fallback: Literal["token", "refuse"] = "token"

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
    consumer_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5000
    # Partitions of coupon.claims when flashclaim creates it: the most consumer processes
    # that can share the load (key = user id, so one user's claims stay in order).
    claims_partitions: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 12
    # Static group membership: a stable name per consumer process (a StatefulSet's pod
    # name); a process restarted under the same name takes its partitions back at once.
    consumer_instance_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    # How long the group waits for a silent member before handing its partitions on.
    consumer_session_timeout_ms: Annotated[int, msgspec.Meta(ge=1000, le=300_000)] = 6_000

    # The H5 claim page: where users reach the gateway, for partner links and QR codes
    # ("" = http://host:port, right for a local run).
    public_base_url: Annotated[
        str, msgspec.Meta(pattern=whole(r"(https?://[^/?#\s]+(/[^?#\s]*)?)?"), max_length=200)
    ] = ""

    # Channels: redeem codes, bind jobs, sky-drop and event triggers (gateway/channels/).
    code_secret: Annotated[str, msgspec.Meta(pattern=r"^(|.{32,})$")] = ""  # "": from jwt_secret
    code_max_failures: _Positive = 5  # wrong codes per user and per device in the window
    code_ip_max_failures: _Positive = 50
    code_failure_window_s: _Positive = 600
    code_lockout_s: _Positive = 900
    events_token: Annotated[str, msgspec.Meta(pattern=r"^(|.{32,})$")] = ""  # "": /api/events off
    events_topic: str = "coupon.events"
    events_group: str = "flashclaim-events"
    skydrop_max_grants: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    trigger_cache_ms: _NonNegative = 5000
    # Using a coupon (gateway/redemption/): how long a lock holds coupons for an unpaid
    # order; how often each gateway worker's sweeper records lock and coupon expiries (0:
    # none in the workers; run `flashclaim redemption sweep --every S` instead).
    coupon_lock_ttl_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 900
    sweep_every_s: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 5
    reminders_topic: str = "coupon.reminders"  # `flashclaim expiring --publish`
    lock_user_per_min: _NonNegative = 60  # locks per user per minute, per worker (0: off)
    lock_ip_per_min: _NonNegative = 600  # locks per client IP per minute, per worker
    failed_lock_user_per_hour: _NonNegative = 30  # refused locks per user per hour
    # Statistics (gateway/stats/): views per exposure batch; how long a batchId is kept.
    exposure_batch_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    exposure_batch_ttl_s: _Positive = 86_400
    experiment_cache_ms: _NonNegative = 1000  # how long a worker trusts its experiments
    abuse_flush_ms: _Positive = 5000  # how often a worker adds its abuse tally to Redis
    # Shopping credit (gateway/credit/): the payment provider's callback secret (HMAC-SHA256
    # of the body; "" refuses every callback) and how long before a bonus expires its
    # reminder goes out. An order's credit is held exactly as long as its coupons' lock.
    credit_payment_secret: Annotated[str, msgspec.Meta(pattern=r"^(|[\s\S]{32,})$")] = ""
    credit_reminder_hours: Annotated[int, msgspec.Meta(ge=1, le=8760)] = 72

    # Operations.
    metrics_dir: str = ""
    metrics_port: _Port = 0  # relay, consumer, reconcile --every: /metrics and /livez; 0: off
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text"] = "json"

    def __post_init__(self) -> None:
        if self.cors_credentials and self.cors_origins == "*":
            raise ValueError(
                "FLASHCLAIM_CORS_CREDENTIALS=true needs explicit FLASHCLAIM_CORS_ORIGINS,"
                " not '*' (browsers refuse credentials with a wildcard origin)"
            )

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The allowed origins, one by one (``("*",)`` for any)."""
        return tuple(origin for origin in self.cors_origins.split(",") if origin)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        require: Iterable[str] = (),
        **overrides: object,
    ) -> Settings:
        """Build settings from ``FLASHCLAIM_*`` variables; ``overrides`` win over them.

        ``require`` names fields that must be set (the secrets a command uses). Raises
        ``ConfigError`` listing every problem found, not just the first.
        """
        source = os.environ if environ is None else environ
        raw, problems = _read(source)
        raw.update(overrides)
        problems += [problem for name, value in raw.items() if (problem := _check(name, value))]
        problems += [f"{_var(name)} must be set" for name in require if not raw.get(name)]
        if problems:
            raise ConfigError(problems)
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:  # cross-field rules of __post_init__
            raise ConfigError([str(exc)]) from None


_FIELDS = {field.name: field for field in msgspec.structs.fields(Settings)}


def _var(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def _read(source: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The settings named in ``source``, and its unknown ``FLASHCLAIM_*`` variables."""
    raw: dict[str, Any] = {}
    problems = []
    for key, value in source.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in _FIELDS:
            raw[name] = value.upper() if name == "log_level" else value
        elif not is_service_link(key, value):
            problems.append(f"{key} is not a flashclaim setting")
    return raw, problems


def is_service_link(key: str, value: str) -> bool:
    """Whether ``key=value`` is a variable Kubernetes made for a Service, not a setting."""
    name = key[len(ENV_PREFIX) :]
    if _SERVICE_LINK_NAME.match(name):
        return True
    return name.endswith("_PORT") and bool(_SERVICE_LINK_VALUE.match(value))


def _check(name: str, value: object) -> str:
    """What is wrong with one setting's value ("" if nothing)."""
    field = _FIELDS.get(name)
    if field is None:
        return f"{_var(name)} is not a flashclaim setting"
    try:
        msgspec.convert(value, field.type, strict=False)
    except msgspec.ValidationError as exc:
        if get_origin(field.type) is Literal:
            return f"{_var(name)} must be one of {', '.join(get_args(field.type))}, not {value!r}"
        hint = ""
        if isinstance(value, str) and _SERVICE_LINK_VALUE.match(value):
            hint = " (a Kubernetes service link? set enableServiceLinks: false in the pod spec)"
        return f"{_var(name)}: {exc}{hint}"
    return ""


def to_env(settings: Settings) -> dict[str, str]:
    """The ``FLASHCLAIM_*`` variables that recreate ``settings`` in a child process."""
    return {
        _var(name): str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in msgspec.structs.asdict(settings).items()
        if not (name in SECRETS and not value)  # unset secrets stay unset
    }
