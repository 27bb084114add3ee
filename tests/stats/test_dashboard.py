"""The second Grafana dashboard: it asks for its datasource, and every series it plots is
one the gateway exports (the exposure counter included, seen on a real /metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from tests.helpers import published

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "flashclaim-stats.json"


def test_the_dashboard_plots_only_series_the_gateway_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exported = {metric.name for metric in REGISTRY.collect()}
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(flashclaim_[a-z_]+)", expr)}
    assert used, exprs
    for name in used:
        assert name.removesuffix("_total") in exported, name
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


async def test_exposures_are_counted_on_metrics(client, ops):
    campaign = await published(ops)
    body = {"viewerId": "dev-m", "views": [{"campaignId": campaign.id}] * 3}
    assert (await client.post("/api/exposures", json=body)).status == 200
    text = await (await client.get("/metrics")).text()
    assert f'flashclaim_exposures_total{{campaign="{campaign.id}"}} 3.0' in text
