"""After the whole corpus (these tests run last): both services and the sandbox are healthy, still
running, and logged no ERROR, no traceback; the corpus is as large and varied as it claims."""

from __future__ import annotations

import json

import aiohttp

from tests.reliability.hostile.harness import KAFKA_CASE_IDS, MARKS, Run
from tests.reliability.hostile.http_cases import HTTP_CASES, PAGE_CASES
from tests.reliability.hostile.kafka_cases import CASES

pytestmark = MARKS


async def test_services_are_healthy_and_logged_no_crash(run: Run, http: aiohttp.ClientSession) -> None:
    p = run.pipeline
    for base in (p.auth_url, p.publish_url, p.sandbox_url):
        path = "/_sandbox/health" if base == p.sandbox_url else "/healthz"
        async with http.get(base + path) as r:
            assert r.status == 200
    for service in ("auth_service", "publish_service"):
        assert p.service(service).process.returncode is None, f"{service} exited"
    crashes = []
    for log in sorted(p.work.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"line": line}
            level = str(entry.get("level", "")).lower() if isinstance(entry, dict) else ""
            if level in ("error", "critical") or "Traceback" in line or '"exception"' in line:
                crashes.append(f"{log.name}: {line[:400]}")
    assert not crashes, "\n".join(crashes[:20])


async def test_corpus_is_large_and_varied() -> None:
    ids = KAFKA_CASE_IDS + [c.id for c in HTTP_CASES] + [c.id for c in PAGE_CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 50
    assert len({c.category for c in CASES}) >= 10
