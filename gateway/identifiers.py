"""The shapes of the identifiers clients and operators send, checked at the door.

Every id that reaches a Redis key, a log line or a metric label is one of these, so none
can carry a separator, a NUL or a megabyte. Each capability's request structs use the
annotated types; the patterns are here once.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


def whole(body: str) -> str:
    """A pattern matching ``body`` as the whole string.

    msgspec checks patterns with ``re.search``, where ``$`` also matches before a final
    newline: ``"abc\n"`` would pass ``^[a-z]+$``. ``(?!\n)`` closes that gap, and the
    pattern stays valid for JSON Schema (ECMA-262) readers of the API document.
    """
    return f"^{body}(?!\\n)$"


CAMPAIGN_ID_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LABEL_PATTERN = whole(r"[a-z0-9][a-z0-9_-]{0,31}")  # channels, tags, groups
USER_ID_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
DEVICE_ID_PATTERN = whole(r"[A-Za-z0-9_.:-]{1,128}")
REQUEST_ID_PATTERN = whole(r"[A-Za-z0-9_-]{8,64}")
ATTRIBUTE_PATTERN = whole(r"[a-z][A-Za-z0-9_]{0,31}")  # numeric user attributes (camelCase)

CampaignId = Annotated[str, msgspec.Meta(pattern=CAMPAIGN_ID_PATTERN)]
Label = Annotated[str, msgspec.Meta(pattern=LABEL_PATTERN)]
UserId = Annotated[str, msgspec.Meta(pattern=USER_ID_PATTERN)]
DeviceId = Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN)]
RequestId = Annotated[str, msgspec.Meta(pattern=REQUEST_ID_PATTERN)]
AttributeName = Annotated[str, msgspec.Meta(pattern=ATTRIBUTE_PATTERN)]
