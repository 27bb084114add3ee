"""Deploy files: the Dockerfile lints clean, alerts pass their rule tests and lead to
runbooks that exist, the dashboard and alerts use series the services export, the
Kubernetes manifests would start (no service links, probes, images from kustomize), and a
real Prometheus scrapes every series from a gateway of several workers, a consumer and the
reconciler."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.infra import clients, metrics
from gateway.infra.clock import SystemClock
from gateway.ops.reconcile import CampaignReport, Figures
from gateway.stack.servers import free_port, wait_for_port
from tests.helpers import auth, body, child_env, open_now, published

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMQL_WORDS = {"sum", "rate", "max", "by", "le", "histogram_quantile", "deriv", "and", "or"}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: `make tools` installs it (apt-get install prometheus)"
    return found


def expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "flashclaim.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return exprs + [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]


def series_names(expr: str) -> set[str]:
    """Metric names an expression reads (words followed by { or [ or a space, not functions)."""
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*[\{\[)]|\s*[<>/]|\s*$)", expr))
    return {w for w in words if w.startswith(("flashclaim_", "http_server_"))} - PROMQL_WORDS


def exported_names() -> set[str]:
    figures = Figures()
    figures.update([CampaignReport("c", 1, 1, 0, 1)], lag=0, at=1.0)
    names = {family.name for family in figures.collect()}
    for collector in vars(metrics).values():
        describe = getattr(collector, "describe", None)
        if describe is None or not hasattr(collector, "_name"):
            continue
        for family in describe():
            for suffix in ("", "_total", "_bucket", "_count", "_sum"):
                names.add(family.name + suffix)
    return names


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_prometheus_config_and_alert_rules_check_and_pass_their_tests():
    promtool = tool("promtool")
    checks = [
        ["check", "config", "prometheus.yml"],  # the compose scrape config, with the rules
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ]
    for args in checks:
        result = subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus",
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_series_in_dashboard_and_alerts_is_exported():
    used = set().union(*(series_names(expr) for expr in expressions()))
    assert "flashclaim_claims_total" in used
    assert used <= exported_names(), used - exported_names()


def test_compose_runs_the_whole_system():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "kafka", "postgres", "gateway", "relay", "consumer", "reconciler",
            "events", "migrate", "prometheus", "grafana"} <= set(services)  # fmt: skip
    assert services["reconciler"]["command"][:2] == ["reconcile", "--every"]
    assert services["events"]["command"] == ["events"]
    for name in ("relay", "consumer", "reconciler", "events"):
        assert "/livez" in str(services[name]["healthcheck"]), name
    assert "--appendonly" in services["redis"]["command"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "/readyz" in str(services["gateway"]["healthcheck"])
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def kubernetes_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in KUBERNETES.glob("*.yaml")
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    ]


def workload(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in kubernetes_docs() if (d["kind"], d["metadata"]["name"]) == (kind, name))


def pod_specs() -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]["spec"]
        for d in kubernetes_docs()
        if d["kind"] in ("Deployment", "Job")
    ]


def test_kubernetes_gateway_is_ready_on_readyz_with_pdb_and_hpa():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in kubernetes_docs()}
    assert ("PodDisruptionBudget", "flashclaim-gateway") in kinds
    assert ("HorizontalPodAutoscaler", "flashclaim-gateway") in kinds
    container = workload("Deployment", "flashclaim-gateway")["spec"]["template"]["spec"]
    container = container["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"} == set(
        kustomization["resources"]
    )


def test_every_pod_starts_without_service_links_on_the_kustomized_image():
    """Service links would hand every pod FLASHCLAIM_GATEWAY_SERVICE_HOST and kin
    (Settings skip them too: tests/infra/test_settings.py)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    images = {image["name"] for image in kustomization["images"]}
    specs = pod_specs()
    assert len(specs) == 6  # gateway, relay, consumer, reconciler, events, migrate
    for spec in specs:
        assert spec["enableServiceLinks"] is False
        for container in spec["containers"]:
            assert container["image"] in images, container["image"]  # the tag: kustomize's


def test_relay_consumer_reconciler_and_events_are_live_on_livez():
    for name in ("relay", "consumer", "reconciler", "events"):
        spec = workload("Deployment", f"flashclaim-{name}")["spec"]["template"]["spec"]
        probe = spec["containers"][0]["livenessProbe"]["httpGet"]
        assert probe == {"path": "/livez", "port": "metrics"}, name


def test_migrations_run_as_a_job_and_reconciliation_as_a_service():
    job = workload("Job", "flashclaim-migrate")["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    reconciler = workload("Deployment", "flashclaim-reconciler")["spec"]["template"]["spec"]
    assert reconciler["containers"][0]["args"][:2] == ["reconcile", "--every"]
    events = workload("Deployment", "flashclaim-events")["spec"]["template"]["spec"]
    assert events["containers"][0]["args"] == ["events"]


def test_kubernetes_scrape_config_names_jobs_by_app():
    config = yaml.safe_load((DEPLOY / "prometheus" / "kubernetes.yml").read_text())
    relabels = config["scrape_configs"][0]["relabel_configs"]
    targets = {r.get("target_label"): r.get("source_labels") for r in relabels}
    assert targets["job"] == ["__meta_kubernetes_pod_label_app"]
    assert targets["pod"] == ["__meta_kubernetes_pod_name"]


def readme_anchors() -> set[str]:
    """GitHub's anchors of the README's headings."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_selects_its_job_and_has_a_runbook_in_the_readme():
    anchors = readme_anchors()
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for rule in (rule for group in alerts["groups"] for rule in group["rules"]):
        assert 'job="flashclaim-' in rule["expr"] or 'job=~"flashclaim-' in rule["expr"], rule
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "README.md"
        assert anchor in anchors, f"{rule['alert']}: README has no section #{anchor}"


def test_dashboard_asks_for_its_datasource_and_filters_by_job_and_pod():
    dashboard = json.loads((DEPLOY / "grafana" / "flashclaim.json").read_text())
    assert dashboard["__inputs"][0]["type"] == "datasource"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert {"job", "pod", "campaign"} <= set(variables)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'job=~"$job",pod=~"$pod"' in target["expr"], target["expr"]


@pytest.fixture
def pipeline_of_two(kafka_settings, redis, pool, tmp_path):
    """A 2-worker gateway with its relays and a consumer, as child processes: their ports.

    Asks for ``redis`` and ``pool`` first: they empty Redis and the coupons table, so the
    relays start with no outbox entries left by earlier tests."""
    gateway_port, consumer_port, reconciler_port = free_port(), free_port(), free_port()
    metrics_dir = str(tmp_path / "metrics")
    gateway_env = child_env(
        kafka_settings, port=gateway_port, workers=2, metrics_dir=metrics_dir,
        relay_in_gateway=True,
    )  # fmt: skip
    consumer_env = child_env(kafka_settings, metrics_port=consumer_port)
    reconciler_env = child_env(kafka_settings, metrics_port=reconciler_port)
    asyncio.run(clients.ensure_topics(kafka_settings))
    cli = [sys.executable, "-m", "gateway.cli"]
    processes = [
        subprocess.Popen([*cli, "serve"], env=gateway_env),
        subprocess.Popen([*cli, "consumer"], env=consumer_env),
        subprocess.Popen([*cli, "reconcile", "--every", "1", "--no-kafka"], env=reconciler_env),
    ]
    try:
        for port in (gateway_port, consumer_port, reconciler_port):
            wait_for_port(port, timeout=20)
        yield gateway_port, consumer_port, reconciler_port
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def prometheus(pipeline_of_two, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    targets = [f"127.0.0.1:{target}" for target in pipeline_of_two]
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "flashclaim", "static_configs": [{"targets": targets}]}],
    }))  # fmt: skip
    process = subprocess.Popen(
        [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_prometheus_scrapes_every_series_the_dashboard_and_alerts_use(
    pipeline_of_two, prometheus, redis, pool
):
    ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
    campaign = await published(ops, stock=1000, **open_now())
    base = f"http://127.0.0.1:{pipeline_of_two[0]}"
    async with aiohttp.ClientSession() as session:
        for i in range(40):  # new connections: the kernel spreads them over both workers
            async with session.post(
                f"{base}/api/coupon/issue",
                json=body(campaign.id),
                headers={**auth(f"prom-{i}"), "Connection": "close"},
            ) as r:
                assert r.status == 200
        # Claims summed over both workers, and every one persisted by the consumer.
        for query in ('sum(flashclaim_claims_total{reason="ACCEPTED"})',
                      "sum(flashclaim_persisted_total)"):  # fmt: skip
            await until_value(session, prometheus, query, 40)
        await until_value(
            session, prometheus, f'flashclaim_reconcile_rows{{campaign="{campaign.id}"}}', 40
        )
        for port in pipeline_of_two[1:]:  # consumer and reconciler: alive
            async with session.get(f"http://127.0.0.1:{port}/livez") as r:
                assert r.status == 200
        async with session.get(f"{prometheus}/api/v1/label/__name__/values") as r:
            names = set((await r.json())["data"])
    used = set().union(*(series_names(expr) for expr in expressions()))
    assert used <= names, used - names


async def until_value(session, prometheus: str, query: str, value: float) -> None:
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{prometheus}/api/v1/query", params={"query": query}) as r:
            result = (await r.json())["data"]["result"]
        if result and float(result[0]["value"][1]) == value:
            return
        assert time.monotonic() < deadline, f"Prometheus never saw {query} == {value}: {result}"
        await asyncio.sleep(0.5)
