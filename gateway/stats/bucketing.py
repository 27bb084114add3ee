"""Which variant of an experiment a user sees: a pure function of (experiment, user).

The hash is SHA-256 of the UTF-8 bytes ``"<experiment id>\\n<user id>"`` (a newline
cannot occur in either id, so no two pairs share an input); its first 8 bytes, read
big-endian, are a number h uniform on [0, 2^64). With integer weights w1..wk summing to W,
the user's position is ``h * W >> 64`` (uniform on [0, W) without modulo bias), and the
variant is the first whose running sum of weights exceeds it.

So the same user gets the same variant in every process, after every restart and in every
language that has SHA-256 (no seed, no salt, no process-local hash); a different
experiment id reshuffles users independently. Changing the weights of a running experiment
moves some users between variants: promote a winner instead (everyone to one variant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def position(experiment_id: str, user_id: str, total_weight: int) -> int:
    """The user's point on [0, total_weight) for this experiment."""
    digest = hashlib.sha256(f"{experiment_id}\n{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") * total_weight) >> 64


def pick(experiment_id: str, user_id: str, weights: Sequence[int]) -> int:
    """The index of the user's variant, given the variants' weights (all > 0)."""
    point = position(experiment_id, user_id, sum(weights))
    running = 0
    for index, weight in enumerate(weights):
        running += weight
        if point < running:
            return index
    raise ValueError("weights must be positive")
