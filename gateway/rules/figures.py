"""Figures by channel: what each channel of a campaign got, for dashboards and operators.

Channels are labels clients send, so only those a campaign lists or gives a quota are
metric labels; any other counts as ``other`` (a client cannot grow the label set).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.infra import metrics
from gateway.reasons import Reason


def count_by_channel(
    campaign: str, known: frozenset[str], channels: Sequence[str], reasons: Sequence[Reason]
) -> None:
    """Count each decision under its claim's channel (campaigns with ``known`` channels)."""
    if not known:
        return
    for channel, reason in zip(channels, reasons, strict=True):
        label = channel if channel in known else "other"
        metrics.child(metrics.CHANNEL_CLAIMS, campaign, label, reason.value).inc()


def channel_figures(counters: dict[str, str], quotas: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{channel: {"issued": n, "quota": q}}`` from a campaign's counters hash."""
    issued = {k[3:]: int(v) for k, v in counters.items() if k.startswith("ch:")}
    return {
        channel: {
            "issued": issued.get(channel, 0),
            **({"quota": quotas[channel]} if channel in quotas else {}),
        }
        for channel in sorted(issued.keys() | quotas.keys())
    }
