"""Who is claiming: bearer tokens verified once, facts taken only from them.

The user id is the token's ``sub``; audience facts (``new_user``, ``level``, ``tags``)
are token claims too, never body fields. Only HS256 is accepted (no ``alg: none``, no
RS/HS confusion); ``iss`` and ``aud`` are checked when configured. Expiry and not-before
are checked against flashclaim's own clock, which is also why a verified token can be
cached: the signature is checked once, the time on every request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

import jwt
import msgspec

from gateway.identifiers import AttributeName, DeviceId, Label, UserId
from gateway.infra.clock import Clock
from gateway.infra.settings import Settings

ALGORITHMS = ["HS256"]
MAX_TOKEN_CHARS = 4096


class TokenError(Exception):
    """The request carries no valid token; the message says what is wrong."""


class TokenClaims(msgspec.Struct, frozen=True):
    """The claims flashclaim reads from a token; others are ignored."""

    sub: UserId
    exp: int
    nbf: int = 0
    new_user: bool = False
    level: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    tags: Annotated[list[Label], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)
    city: Label | None = None  # where the app's login service placed the user (trusted)
    device: DeviceId | None = None  # the device the login service verified (trusted)
    attrs: Annotated[dict[AttributeName, float], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=dict
    )  # numeric audience attributes (gateway/rules/)


@dataclass(frozen=True, slots=True)
class Claimant:
    """The verified user behind a claim, with the audience facts its token states."""

    user_id: str
    new_user: bool
    level: int
    tags: str  # ",a,b," (the form claim.lua searches), "" for none
    expires_s: int
    not_before_s: int
    city: str = ""
    attrs: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)
    device: str = ""  # the token's verified device, "" when it names none


class TokenVerifier:
    """Checks ``Authorization: Bearer`` headers; caches verified signatures."""

    def __init__(
        self,
        secret: str,
        clock: Clock,
        *,
        issuer: str = "",
        audience: str = "",
        cache_size: int = 65536,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._issuer = issuer or None
        self._audience = audience or None
        self._decode = functools.lru_cache(maxsize=cache_size)(self._decode_signed)

    def verify(self, authorization: str | None) -> Claimant:
        """The claimant named by a valid, current bearer token; else ``TokenError``."""
        if not authorization:
            raise TokenError("missing Authorization header")
        if not authorization.isascii():  # bytes that are not UTF-8 arrive as surrogates
            raise TokenError("Authorization must be ASCII")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenError("Authorization must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        claimant = self._decode(token.strip())
        now_s = self._clock.now_ms() // 1000
        if now_s >= claimant.expires_s:
            raise TokenError("token expired")
        if now_s < claimant.not_before_s:
            raise TokenError("token not yet valid")
        return claimant

    def _decode_signed(self, token: str) -> Claimant:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,  # checked against our clock in verify()
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._audience is not None,
                },
            )
            claims = msgspec.convert(payload, TokenClaims)
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        except msgspec.ValidationError as exc:
            raise TokenError(f"invalid token claims: {exc}") from None
        return Claimant(
            user_id=claims.sub,
            new_user=claims.new_user,
            level=claims.level,
            tags=f",{','.join(claims.tags)}," if claims.tags else "",
            expires_s=claims.exp,
            not_before_s=claims.nbf,
            city=claims.city or "",
            device=claims.device or "",
            attrs=claims.attrs,
        )


def mint(secret: str, user_id: str, *, expires_s: int, **claims: object) -> str:
    """A signed token for ``user_id`` (demo pages, load tests and tests use it)."""
    return jwt.encode({"sub": user_id, "exp": expires_s, **claims}, secret, algorithm="HS256")


class InvalidClaims(ValueError):
    """Claims a token must not carry: the gateway would refuse it."""


MAX_TTL_S = 10 * 365 * 86_400
_CLAIM_NAMES = {"sub": "user id", "level": "level", "tags": "tags", "exp": "ttl", "city": "city",
                "attrs": "attr", "device": "device"}  # fmt: skip


def user_token(
    settings: Settings,
    user_id: str,
    *,
    ttl_s: int,
    now_s: int,
    new_user: bool = False,
    level: int = 0,
    tags: Sequence[str] = (),
    city: str | None = None,
    attrs: Mapping[str, float] | None = None,
    device: str | None = None,
) -> str:
    """A token the gateway configured by ``settings`` accepts (``flashclaim token``).

    Raises ``InvalidClaims`` rather than mint one it would refuse: a malformed user id,
    a level outside 0-100, malformed or too many tags, an expiry not in the future.
    """
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidClaims(f"ttl must be between 1 and {MAX_TTL_S} seconds, not {ttl_s}")
    claims: dict[str, object] = {"new_user": new_user, "level": level, "tags": list(tags)}
    if city is not None:
        claims["city"] = city
    if attrs:
        claims["attrs"] = dict(attrs)
    if device is not None:
        claims["device"] = device
    try:
        msgspec.convert({"sub": user_id, "exp": now_s + ttl_s, **claims}, TokenClaims)
    except msgspec.ValidationError as exc:
        text, _, path = str(exc).rpartition(" - at `$.")
        name = path.rstrip("`").split("[")[0].split(".")[0]
        raise InvalidClaims(f"{_CLAIM_NAMES.get(name, name)}: {text or exc}") from None
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return mint(settings.jwt_secret, user_id, expires_s=now_s + ttl_s, **claims)
