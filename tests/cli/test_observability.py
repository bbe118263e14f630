"""What an operator's Prometheus scrapes, after real work: the names the dashboard and alerts query."""

import json
import re
from pathlib import Path

import aiohttp
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]


async def scrape(url):
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def value(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_both_services_export_the_contract_metrics_after_a_publish(pipeline, published_post):
    assert published_post[2] == 0, published_post[3]
    publish, auth = await scrape(pipeline.publish_url), await scrape(pipeline.auth_url)
    assert value(publish, "tiktok_posts_total", state="published") >= 1
    assert value(publish, "tiktok_posts_total", state="received") >= 1
    assert value(publish, "tiktok_upload_bytes_total") > 0
    assert value(publish, "tiktok_api_calls_total", endpoint="/v2/post/publish/video/init/", result="ok") >= 1
    assert value(publish, "tiktok_api_calls_total", endpoint="upload", result="201") >= 1
    assert value(publish, "tiktok_api_call_duration_seconds_count", endpoint="/v2/post/publish/status/fetch/")
    assert value(auth, "tiktok_api_calls_total", endpoint="/v2/oauth/token/", result="ok") >= 1
    assert value(auth, "tiktok_api_calls_total", endpoint="/v2/user/info/", result="ok") >= 1
    assert value(publish, "tiktok_outbox_backlog", service="publish") is not None
    assert value(auth, "tiktok_outbox_backlog", service="auth") is not None


async def test_every_metric_the_dashboard_and_alerts_query_is_exported(pipeline, published_post):
    exported = set()
    for text in (await scrape(pipeline.publish_url), await scrape(pipeline.auth_url)):
        exported |= {m.group(1) for m in re.finditer(r"^# TYPE (\w+) (\w+)", text, re.MULTILINE)}
        exported |= {m.group(1) for m in re.finditer(r"^(\w+)[{ ]", text, re.MULTILINE)}
    dashboard = json.loads((ROOT / "deploy/grafana/tiktok-pipeline.json").read_text())
    alerts = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    queried = set(re.findall(r"\b(tiktok_[a-z_]+)", json.dumps(dashboard) + alerts))
    # Histograms are queried by their series (_bucket, _count, _sum); families by their base name.
    missing = {
        q for q in queried if q not in exported and re.sub(r"_(bucket|count|sum)$", "", q) not in exported
    }
    # tiktok_consumer_lag appears once a consumer has handled a batch; both services export the family.
    assert not missing, f"queried by deploy/ but exported by no service: {sorted(missing)}"


# Labels Prometheus adds at scrape time (target labels), never exported by a service.
TARGET_LABELS = {"namespace", "job", "instance", "pod", "container", "service_name", "endpoint_target"}
# Series Prometheus itself makes for each target.
SCRAPE_SERIES = {"up"}
# Families labelled by TikTok's own error codes: no series until TikTok answers with an error, which
# a clean publish and a rejection by us never cause. For these the family must be declared (# TYPE).
OPEN_ENDED = {"tiktok_publish_api_errors_total"}
METRIC = re.compile(r"\b((?:tiktok|publish|auth|process|python)_[a-z_]+|up)\b(\{[^}]*\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _queries() -> list[tuple[str, str]]:
    """(where, expression) for every dashboard target and alert rule."""
    dashboard = json.loads((ROOT / "deploy/grafana/tiktok-pipeline.json").read_text())
    found = [
        (f"panel {panel.get('title')}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    found += [(f"alert {r['alert']}", r["expr"]) for group in rules["groups"] for r in group["rules"]]
    return found


def _series(text: str) -> dict[str, list[set[str]]]:
    """Exported series: metric name -> the label-name set of each of its samples."""
    series: dict[str, list[set[str]]] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{([^}]*)\})? ", line)
        if match and not line.startswith("#"):
            labels = {m.group(1) for m in re.finditer(r'(\w+)="', match.group(2) or "")}
            series.setdefault(match.group(1), []).append(labels)
    return series


def _needs(expr: str) -> list[tuple[str, set[str]]]:
    """Each metric an expression queries, with the labels it matches on or groups by."""
    grouping = {label.strip() for g in GROUPING.finditer(expr) for label in g.group(1).split(",") if label}
    needs = []
    for match in METRIC.finditer(expr):
        name, selector = match.group(1), match.group(2) or ""
        if name in {"by", "without"}:
            continue
        labels = {m.group(1) for m in MATCHER.finditer(selector)} | grouping
        if name.endswith("_bucket"):
            labels.add("le")
        needs.append((name, labels - TARGET_LABELS))
    return needs


async def test_every_series_each_panel_and_alert_queries_is_exported_with_its_labels(
    pipeline, published_post, rejected_post
):
    """After a publish and a rejection, every metric a query names is exported by a service with
    every label the query matches on or groups by (Prometheus's own target labels aside)."""
    series: dict[str, list[set[str]]] = {}
    declared: set[str] = set()
    for text in (await scrape(pipeline.publish_url), await scrape(pipeline.auth_url)):
        for name, label_sets in _series(text).items():
            series.setdefault(name, []).extend(label_sets)
        declared |= {m.group(1) for m in re.finditer(r"^# TYPE (\w+) counter", text, re.MULTILINE)}
    problems = []
    for where, expr in _queries():
        for name, labels in _needs(expr):
            if name in SCRAPE_SERIES or (name in OPEN_ENDED and name in declared):
                continue
            if name not in series:
                problems.append(f"{where}: {name} is exported by no service")
            elif not any(labels <= exported for exported in series[name]):
                problems.append(f"{where}: no {name} series has the labels {sorted(labels)}")
    assert not problems, "\n".join(problems)
