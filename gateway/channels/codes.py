"""Redeem codes: how they look, how they are made, how they are stored.

A code is 12 random characters and a check character, shown in groups of four
(``K7QM-2XRT-P9HA-C``). The alphabet has 30 characters without look-alikes (no 0/O,
1/I/L, U/V), so 12 of them carry about 59 bits: a guesser allowed a few tries per lockout
finds nothing. The check character is Luhn mod 30 (python-stdnum; Luhn mod N needs an
even N): any single mistyped character and most swapped neighbours are caught before
anything is looked up, so a typo costs no lookup and counts as no failed attempt.

Only a keyed hash of a code is ever stored (HMAC-SHA256 with ``FLASHCLAIM_CODE_SECRET``,
truncated to 128 bits): a leaked database or Redis dump names no usable code, and without
the secret a hash cannot be tested against guesses offline. The plain codes exist once, in
the CSV handed to the operator when they are generated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator

from stdnum import luhn

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY_LENGTH = 12
LENGTH = BODY_LENGTH + 1
_ALLOWED = frozenset(ALPHABET)
_SEPARATORS = str.maketrans({"-": None, " ": None})
# Random bytes to characters without bias: bytes 0..239 map to ALPHABET[b % 30] (240 is
# 8 x 30), bytes 240..255 are dropped.
_USABLE = 240
_TO_CHAR = bytes(ord(ALPHABET[b % len(ALPHABET)]) if b < _USABLE else 0 for b in range(256))
_DROPPED = bytes(range(_USABLE, 256))


def _random_chars(count: int) -> str:
    """``count`` characters of ALPHABET, uniform, from the operating system's CSPRNG."""
    chars = b""
    while len(chars) < count:
        chars += secrets.token_bytes(count - len(chars) + 64).translate(_TO_CHAR, _DROPPED)
    return chars[:count].decode()


def generate(count: int) -> Iterator[str]:
    """``count`` distinct codes (body and check character)."""
    seen: set[str] = set()
    while len(seen) < count:
        chunk = min(count - len(seen), 100_000)
        chars = _random_chars(chunk * BODY_LENGTH)
        for i in range(0, len(chars), BODY_LENGTH):
            body = chars[i : i + BODY_LENGTH]
            if body not in seen:
                seen.add(body)
                yield body + luhn.calc_check_digit(body, ALPHABET)


def normalize(typed: str) -> str | None:
    """The code a person meant by ``typed`` (case, dashes and spaces ignored), or None when
    it cannot be one: wrong length, a character outside the alphabet, or a check character
    that does not match (a typo). None costs no lookup."""
    if len(typed) > 32:
        return None
    code = typed.upper().translate(_SEPARATORS)
    if len(code) != LENGTH or not _ALLOWED.issuperset(code):
        return None
    return code if luhn.is_valid(code, ALPHABET) else None


def pretty(code: str) -> str:
    """The code in groups of four, as printed for people."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


class CodeHasher:
    """Keyed hashes of codes: what Redis and PostgreSQL keep instead of the codes."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    @classmethod
    def for_settings(cls, code_secret: str, jwt_secret: str) -> CodeHasher:
        """The hasher of ``FLASHCLAIM_CODE_SECRET``, else one derived from the JWT secret
        (set the code secret in production: rotating the JWT key would orphan every code)."""
        if code_secret:
            return cls(code_secret)
        derived = hmac.digest(jwt_secret.encode(), b"flashclaim redeem codes", hashlib.sha256)
        return cls(derived.hex())

    def __call__(self, code: str) -> str:
        """The stored form of a normalized code: 32 hex characters."""
        return hmac.digest(self._key, code.encode(), hashlib.sha256)[:16].hex()
