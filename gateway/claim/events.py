"""The accepted-claim event: what the outbox holds, Kafka carries and the consumer stores.

``claim.lua`` writes an outbox entry with short field names; the relay turns it into a
``ClaimEvent`` (JSON, camelCase) keyed by user id; the consumer decodes it back. Amounts
are integer cents, times epoch milliseconds.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.identifiers import CampaignId, Label


class ClaimEvent(
    msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One accepted claim. ``code`` is the keyed hash of the redeem code it used ("" for
    none, and then left out of the JSON): the coupon row keeps it, so ``flashclaim recover``
    can mark the code used again after Redis lost the mark."""

    coupon_id: Annotated[str, msgspec.Meta(min_length=32, max_length=36)]
    campaign_id: CampaignId
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    channel: Label
    value_cents: Annotated[int, msgspec.Meta(ge=0)]
    claimed_at_ms: int
    expires_at_ms: int
    code: Annotated[str, msgspec.Meta(max_length=64)] = ""
    # The claimant's layer as the token stated it at claim time (statistics per layer);
    # None / [] on events written before claims carried them.
    new_user: bool | None = None
    level: int | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_outbox(cls, fields: dict[str, str]) -> ClaimEvent:
        """The event of an outbox entry written by ``claim.lua``."""
        return cls(
            coupon_id=fields["coupon"],
            campaign_id=fields["campaign"],
            user_id=fields["user"],
            device_id=fields["device"],
            request_id=fields["request"],
            channel=fields["channel"],
            value_cents=int(fields["value"]),
            claimed_at_ms=int(fields["at"]),
            expires_at_ms=int(fields["expires"]),
            code=fields.get("code", ""),  # entries written before the field have none
            new_user=fields["new"] == "1" if "new" in fields else None,
            level=int(fields["level"]) if fields.get("level") else None,
            tags=tuple(t for t in fields.get("tags", "").split(",") if t),
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ClaimEvent)


def encode(event: ClaimEvent) -> bytes:
    """JSON bytes of an event."""
    return _encoder.encode(event)


def decode(data: bytes) -> ClaimEvent:
    """An event from JSON bytes; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _decoder.decode(data)
