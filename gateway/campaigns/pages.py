"""The ``pages`` field of a campaign spec: the H5 claim page's copy, per channel (渠道合作).

An operator sets a default copy and, per partner channel, copy that overrides it field by
field: a partner may change only the header image and keep the rest. Text is shown with
``textContent`` (never parsed as HTML), so the checks here keep it printable and short, and
the header image https-only and of bounded length (the page's Content-Security-Policy
allows images from https URLs only).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from gateway.identifiers import LABEL_PATTERN

MAX_IMAGE_URL = 512
MAX_CHANNEL_PAGES = 200

#: Characters an image URL may hold as written: RFC 3986's, nothing else (no spaces, "quotes",
#: angle brackets, backslashes or raw non-ASCII; percent-encode those).
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_CHANNEL = re.compile(LABEL_PATTERN)
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class PageCopy(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """What the page says and shows; an empty field falls back to the default copy, then to
    the page's own (the campaign's name as title, 立即领取 / Claim on the button)."""

    title: Annotated[str, msgspec.Meta(max_length=60)] = ""
    subtitle: Annotated[str, msgspec.Meta(max_length=200)] = ""
    button_text: Annotated[str, msgspec.Meta(max_length=20)] = ""
    header_image_url: Annotated[str, msgspec.Meta(max_length=MAX_IMAGE_URL)] = ""

    def __post_init__(self) -> None:
        for name, text in (
            ("title", self.title),
            ("subtitle", self.subtitle),
            ("buttonText", self.button_text),
        ):
            if not printable(text):
                raise ValueError(f"{name}: must be printable text (no control characters)")
        if self.header_image_url and not https_url(self.header_image_url):
            raise ValueError("headerImageUrl: must be an https URL (host, optional path)")


class PageSetup(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``pages`` in a campaign spec: the default copy and each partner channel's."""

    default: PageCopy = msgspec.field(default_factory=PageCopy)
    channels: Annotated[dict[str, PageCopy], msgspec.Meta(max_length=MAX_CHANNEL_PAGES)] = (
        msgspec.field(default_factory=dict)
    )

    def __post_init__(self) -> None:
        for channel in self.channels:  # checked here, so the error names the field
            if _CHANNEL.fullmatch(channel) is None:
                raise ValueError(f"channels: {channel!r} is not a channel (1-32 of [a-z0-9_-])")

    def copy_for(self, channel: str) -> PageCopy:
        """The copy a page opened for ``channel`` shows: the channel's fields over the
        default's (empty strings where neither says anything)."""
        own = self.channels.get(channel)
        if own is None:
            return self.default
        base = self.default
        return PageCopy(
            title=own.title or base.title,
            subtitle=own.subtitle or base.subtitle,
            button_text=own.button_text or base.button_text,
            header_image_url=own.header_image_url or base.header_image_url,
        )

    def titled_copy_for(self, channel: str, name: str) -> PageCopy:
        """``copy_for``, with the campaign's name as the title where the copy gives none,
        as one line of copy (a name may hold what copy may not: a tab, a newline)."""
        page = self.copy_for(channel)
        if page.title:
            return page
        return msgspec.structs.replace(page, title="".join(c for c in name if printable(c)))


def printable(text: str) -> bool:
    """One line of copy: no control characters (NUL, newlines…), no line or paragraph
    separators, no bidirectional overrides (they make text read other than it is stored)."""
    return not any(
        unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS for char in text
    )


def https_url(url: str) -> bool:
    """An absolute https URL with a host and no credentials, in plain RFC 3986 characters."""
    if not _URL_CHARS.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a bad port or bracketed host
        return False
    return parts.scheme == "https" and bool(parts.hostname) and "@" not in parts.netloc and port_ok
