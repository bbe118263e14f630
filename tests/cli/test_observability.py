"""What an operator's Prometheus scrapes, after real work: the names the dashboard and alerts query."""

import json
import re
from pathlib import Path

import aiohttp
import pytest

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
