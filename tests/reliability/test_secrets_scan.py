"""No secret in plain text anywhere a full run leaves traces: process logs, Kafka, HTTP responses.

One pipeline (the sandbox and both services as real processes) does real work: two OAuth connects
(PKCE), a replayed callback, a video published through ``POST /v1/posts``, access tokens that live
10 s (so auth_service refreshes them, once through a TikTok 5xx), a live token-status check and a
disconnect (revoke). Then every line of every process log, every record on every topic of the run's
prefix (key, value, headers), every response our HTTP clients got from the services (status,
headers, body) and every row of both services' schemas (before and after the disconnect) is
searched for every secret the sandbox issued or was sent (access and refresh tokens, authorization
codes, PKCE verifiers, client secrets, upload tokens, the signatures of the presigned URLs it pulled
from: ``GET /_sandbox/secrets``), for the OAuth ``state`` values and browser nonces of the connects,
and for the configured client secret, API key, key rings, S3 secret and database password (as
``user:password@``, the form a leaked DSN takes, and bare when it is long enough to be told from
ordinary words; the shared dev stack's is not): raw, URL-encoded, JSON-escaped and base64. A state
and a nonce have one legitimate place, the ``/v1/connect`` answer that hands them to the browser;
that answer is kept as its own source and only those two kinds may appear there.

``tests/auth/test_no_secrets.py`` does the same for auth_service alone, in process; this one covers
the whole system as deployed, including publish_service and the sandbox's own log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urljoin, urlsplit

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from common.settings import EnvReader
from tests.waiting import wait_for
from tiktok_pipeline.local import CLIENT_KEY, CREATOR, LocalPipeline

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]

ACCESS_TTL_S = 10


# ---------------------------------------------------------------------------------------- the scanner


@dataclass(frozen=True)
class Leak:
    kind: str
    where: str
    context: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}: …{self.context}…"


def spellings(secret: str) -> set[str]:
    """The forms a secret takes in text: as is, URL-encoded (path and form), JSON-escaped, base64."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    return {f for f in forms if len(f) >= 8}


DELIVERY = "http /v1/connect answers"
"""Where the state (Location) and the nonce (Set-Cookie) are handed to the browser, as they must be."""
DELIVERED_THERE = frozenset({"oauth_state", "browser_nonce"})


def find_leaks(secrets: dict[str, str], sources: dict[str, str]) -> list[Leak]:
    """Every place a secret (value -> kind) appears in a source (name -> text), with some context."""
    leaks = []
    for secret, kind in secrets.items():
        for form in spellings(secret):
            for where, text in sources.items():
                if where == DELIVERY and kind in DELIVERED_THERE:
                    continue
                at = text.find(form)
                if at >= 0:
                    context = text[max(0, at - 60) : at + 12].replace("\n", " ")
                    leaks.append(Leak(kind, where, context))
    return leaks


def database_passwords(database_url: str) -> list[str]:
    """What to look for of the database password: ``user:password@`` always, bare when ≥ 12 chars."""
    parts = urlsplit(database_url)
    assert parts.password, "the run's DATABASE_URL carries a password"
    found = [f"{parts.username}:{parts.password}@"]
    if len(parts.password) >= 12:
        found.append(parts.password)
    return found


# ---------------------------------------------------------------------------------------- recording


@dataclass
class Recorder:
    """Every response our clients got from the services: status line, headers and body bytes."""

    origins: tuple[str, ...]
    texts: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    """The /v1/connect answers (they carry the state and nonce to the browser by design)."""

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def on_end(_s: Any, _c: Any, params: aiohttp.TraceRequestEndParams) -> None:
            self._headers(params.url, params.response)

        async def on_redirect(_s: Any, _c: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
            self._headers(params.url, params.response)

        async def on_chunk(_s: Any, _c: Any, params: aiohttp.TraceResponseChunkReceivedParams) -> None:
            if str(params.url).startswith(self.origins):
                self._into(params.url).append(params.chunk.decode("utf-8", "replace"))

        config.on_request_end.append(on_end)
        config.on_request_redirect.append(on_redirect)
        config.on_response_chunk_received.append(on_chunk)
        return config

    def _headers(self, url: Any, response: aiohttp.ClientResponse) -> None:
        if str(url).startswith(self.origins):
            lines = [f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in response.raw_headers]
            self._into(url).append(f"HTTP {response.status} {response.reason}\n" + "\n".join(lines))

    def _into(self, url: Any) -> list[str]:
        return self.deliveries if urlsplit(str(url)).path == "/v1/connect" else self.texts

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trace_configs=[self.trace()], **kwargs)


async def browser_connect(p: LocalPipeline, recorder: Recorder, seen: dict[str, str]) -> tuple[str, str]:
    """Walk the OAuth chain as a browser (recorded); return the account id and the callback URL.
    The state and the browser nonce it was given go into ``seen`` (value -> kind)."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with recorder.session(cookie_jar=jar) as browser:
        async with browser.get(f"{p.auth_url}/v1/connect", allow_redirects=False) as r:
            authorize = r.headers["Location"]
            seen[parse_qs(urlsplit(authorize).query)["state"][0]] = "oauth_state"
            seen[r.cookies["tt_connect"].value] = "browser_nonce"
        async with browser.get(authorize, allow_redirects=False) as r:
            page = await r.text()
        request_id = re.search(r'name="request_id" value="([^"]+)"', page)
        assert request_id is not None, page[:300]
        scopes = re.findall(r'name="scope" value="([^"]+)" checked', page)
        form = aiohttp.FormData(
            [("request_id", request_id.group(1)), ("creator", CREATOR), ("decision", "authorize")]
            + [("scope", s) for s in scopes]
        )
        async with browser.post(
            urljoin(authorize, "/v2/auth/authorize/"), data=form, allow_redirects=False
        ) as r:
            callback = r.headers["Location"]
        async with browser.get(callback, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            account = r.headers["Location"].split("account_id=")[1].split("&")[0]
        async with browser.get(callback, allow_redirects=False) as r:  # replayed: refused, logged
            assert r.status == 400
            await r.read()
    return account, callback


# ---------------------------------------------------------------------------------------- the run


@dataclass
class Run:
    pipeline: LocalPipeline
    secrets: dict[str, str]
    issued: dict[str, list[str]]
    seen: dict[str, str]
    sources: dict[str, str]
    counts: dict[str, int]


async def _all_records(p: LocalPipeline) -> list[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=p.kafka)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(p.prefix))
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=p.kafka,
        group_id=f"secrets-scan-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        idle = 0
        while idle < 3:  # three quiet polls after the last record: the topics are read out
            batch = await consumer.getmany(timeout_ms=1000)
            got = [r for rs in batch.values() for r in rs]
            records += got
            idle = 0 if got else idle + 1
    finally:
        await consumer.stop()
    return records


async def _all_rows(database_url: str) -> dict[str, str]:
    """Every row of every table of both services' schemas, as text (tokens must be encrypted at rest)."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('auth', 'publish') AND table_type = 'BASE TABLE'"
        )
        dumped = {}
        for t in tables:
            name = f"{t['table_schema']}.{t['table_name']}"
            rows = await conn.fetch(f'SELECT * FROM "{t["table_schema"]}"."{t["table_name"]}"')
            dumped[name] = "\n".join(
                " ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in r.values())
                for r in rows
            )
        return dumped
    finally:
        await conn.close()


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, **kwargs) as r:
        body = await r.json()
        assert r.status < 300, (r.status, body)
        return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(stack, tmp_path_factory) -> Any:
    work = tmp_path_factory.mktemp("secrets")
    p = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}),
        work,
        sandbox_overrides={
            "access_token_ttl_s": ACCESS_TTL_S,
            "pull_allow_http": True,
            "allow_ip_prefixes": True,
        },
        extra_env={"LOG_LEVEL": "DEBUG"},
    )
    recorder = Recorder((p.auth_url, p.publish_url))
    seen: dict[str, str] = {}
    try:
        await p.start()
        s3 = stack.env()["S3_ENDPOINT_URL"]
        async with aiohttp.ClientSession() as control:  # TikTok may pull from the local S3 (presigned)
            prefixes = {"verified_url_prefixes": [f"{s3}/{p.bucket}/"]}
            async with control.patch(f"{p.sandbox_url}/_sandbox/apps/{CLIENT_KEY}", json=prefixes) as r:
                assert r.status == 200, await r.text()
        account, _ = await browser_connect(p, recorder, seen)
        again, _ = await browser_connect(p, recorder, seen)  # a reconnect: a second code and verifier
        assert again == account
        auth = {"Authorization": f"Bearer {p.api_key}"}
        async with recorder.session() as http:
            # A video, published through the HTTP API while the tokens refresh underneath.
            clip = work / "clip.mp4"
            process = await asyncio.create_subprocess_exec(
                "ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi",
                "-i", "testsrc=size=360x640:rate=15:duration=2", "-pix_fmt", "yuv420p", str(clip),
            )  # fmt: skip
            assert await process.wait() == 0
            key = f"secrets/{uuid.uuid4().hex}.mp4"
            async with p.object_store() as store:
                await store.put_bytes(p.bucket, key, clip.read_bytes())
            post_id = f"secrets-{uuid.uuid4().hex[:8]}"
            body = {
                "post_id": post_id,
                "account_id": account,
                "kind": "video",
                "mode": "direct",
                "privacy_level": "SELF_ONLY",
                "video": {"uri": f"s3://{p.bucket}/{key}"},
                "caption": "nothing to see",
            }
            await _json(http, "POST", f"{p.publish_url}/v1/posts", json=body, headers=auth)

            async def published() -> bool:
                async with http.get(f"{p.publish_url}/v1/posts/{post_id}", headers=auth) as r:
                    post = await r.json()
                if r.status == 404:  # not through intake yet
                    return False
                assert post["state"] not in ("failed", "rejected"), post
                return bool(post["state"] == "published")

            await wait_for(published, timeout=120, interval=1.0, description="the post published")
            # A draft TikTok pulls from a presigned URL: its signature is a credential for the media.
            pulled = {**body, "post_id": f"{post_id}-pull", "mode": "draft", "transfer": "pull_from_url"}
            del pulled["privacy_level"]
            await _json(http, "POST", f"{p.publish_url}/v1/posts", json=pulled, headers=auth)

            async def delivered() -> bool:
                async with http.get(f"{p.publish_url}/v1/posts/{pulled['post_id']}", headers=auth) as r:
                    post = await r.json()
                if r.status == 404:
                    return False
                assert post["state"] not in ("failed", "rejected"), post
                return bool(post["state"] == "inbox_delivered")

            await wait_for(delivered, timeout=120, interval=1.0, description="the pulled draft delivered")
            # One refresh fails at TikTok (5xx), later ones succeed.
            fault = {"endpoint": "/v2/oauth/token/", "count": 1, "status": 500, "error_code": "server_error"}
            await _json(http, "POST", f"{p.sandbox_url}/_sandbox/faults", json=fault)

            async def refreshed_twice() -> bool:
                acc = await _json(http, "GET", f"{p.auth_url}/v1/accounts/{account}", headers=auth)
                return bool(acc["token_version"] >= 4)

            await wait_for(refreshed_twice, timeout=60, interval=1.0, description="two refreshes")
            status = await _json(
                http, "GET", f"{p.auth_url}/v1/accounts/{account}/token-status", headers=auth
            )
            assert status["live"]["valid"] is True, status
            await _json(http, "GET", f"{p.auth_url}/v1/accounts", headers=auth)
            for base in (p.auth_url, p.publish_url):
                await _json(http, "GET", f"{base}/readyz")
                async with http.get(f"{base}/metrics") as r:
                    await r.read()
            rows_connected = await _all_rows(p.database_url)  # the vault still holds the tokens
            gone = await _json(http, "DELETE", f"{p.auth_url}/v1/accounts/{account}", headers=auth)
            assert gone["revoked"] is True, gone
            async with aiohttp.ClientSession() as control:
                issued = await _json(control, "GET", f"{p.sandbox_url}/_sandbox/secrets")

        async def disconnect_announced() -> list[Any]:
            records = await _all_records(p)
            return records if any(b"tiktok.account.disconnected" in (r.value or b"") for r in records) else []

        records = await wait_for(disconnect_announced, timeout=30, description="the disconnect on Kafka")
        rows = await _all_rows(p.database_url)
    finally:
        await p.stop()  # the logs are complete only once the processes have exited

    secrets = {value: kind.removesuffix("s") for kind, values in issued.items() for value in values}
    env = p.service_env()
    secrets[p.client_secret] = "configured client secret"
    secrets[p.api_key] = "API key"
    secrets[env["S3_SECRET_ACCESS_KEY"]] = "S3 secret access key"
    for password in database_passwords(p.admin_database_url):
        secrets[password] = "database password"
    secrets.update(seen)
    for ring in (p.token_keys, p.transport_keys):
        secrets[ring.split(":", 1)[1]] = "encryption key"
    sources: dict[str, str] = {}
    for log in sorted(work.glob("*.log")):
        sources[f"log {log.name}"] = log.read_text(errors="replace")
    for i, r in enumerate(records):
        text = f"{r.key!r} {(r.value or b'').decode('utf-8', 'replace')} {r.headers!r}"
        sources[f"kafka {r.topic}[{r.partition}]@{r.offset} #{i}"] = text
    sources["http responses"] = "\n".join(recorder.texts)
    sources[DELIVERY] = "\n".join(recorder.deliveries)
    for when, dump in (("connected", rows_connected), ("end", rows)):
        for table, text in dump.items():
            sources[f"database {table} ({when})"] = text
    counts = {
        "log lines": sum(s.count("\n") for k, s in sources.items() if k.startswith("log ")),
        "kafka records": len(records),
        "http response parts": len(recorder.texts),
        "database tables": len(rows),
    }
    return Run(p, secrets, issued, seen, sources, counts)


# ---------------------------------------------------------------------------------------- the tests


async def test_the_run_did_real_work_and_the_scan_covers_it(run: Run) -> None:
    issued = run.issued
    assert len(issued["access_tokens"]) >= 4, "expected a connect, a reconnect and refreshes"
    assert len(issued["refresh_tokens"]) >= 3 and len(issued["authorization_codes"]) >= 2
    assert len(issued["code_verifiers"]) >= 2 and issued["client_secrets"] == [run.pipeline.client_secret]
    assert len(issued["upload_tokens"]) >= 1 and len(issued["presigned_signatures"]) >= 1, issued
    kinds = sorted(run.seen.values())
    assert kinds.count("oauth_state") >= 2 and kinds.count("browser_nonce") >= 2, kinds
    assert "database password" in run.secrets.values()
    assert run.counts["log lines"] > 40 and run.counts["kafka records"] > 10, run.counts
    assert run.counts["http response parts"] > 20 and run.counts["database tables"] >= 8, run.counts
    logs = "\n".join(t for k, t in run.sources.items() if k.startswith("log "))
    for event in ("token_refreshed", "refresh_failed_will_retry", "connect_refused", "post_published"):
        assert event in logs, f"the run logged no {event}"
    kafka = "\n".join(t for k, t in run.sources.items() if k.startswith("kafka "))
    assert "tiktok.account.refreshed" in kafka and "tiktok.access_token.issued" in kafka


def _upload_url_row(leak: Leak) -> bool:
    return leak.kind == "upload_token" and leak.where.startswith("database publish.posts")


async def test_no_secret_appears_in_logs_kafka_or_http_responses(run: Run) -> None:
    leaks = [leak for leak in find_leaks(run.secrets, run.sources) if not _upload_url_row(leak)]
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(str(leak) for leak in leaks[:20])


async def test_no_upload_token_is_readable_in_database_rows(run: Run) -> None:
    leaks = [leak for leak in find_leaks(run.secrets, run.sources) if _upload_url_row(leak)]
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(str(leak) for leak in leaks[:20])


async def test_the_scanner_catches_a_planted_leak(run: Run) -> None:
    """The scan is strict enough to catch a real leak: a token in a log line, a code URL-encoded in
    a header, a refresh token JSON-escaped on Kafka, a verifier base64-encoded."""
    access = run.issued["access_tokens"][0]
    code = run.issued["authorization_codes"][0]
    refresh = run.issued["refresh_tokens"][0]
    verifier = run.issued["code_verifiers"][0]
    assert re.search(r"[*!]", code), "codes carry * and !, so URL-encoding changes them"
    planted = {
        "log auth_service.log": json.dumps({"event": "oops", "level": "info", "token_hint": access}),
        "http responses": f"HTTP 302 Found\nLocation: /v1/done?next=%2Fcb%3Fcode%3D{quote(code, safe='')}",
        "kafka planted": json.dumps({"data": {"note": f"rt={refresh}"}}),
        "log planted.log": "verifier " + base64.b64encode(verifier.encode()).decode(),
    }
    found = {(leak.kind, leak.where) for leak in find_leaks(run.secrets, planted)}
    assert ("access_token", "log auth_service.log") in found
    assert ("authorization_code", "http responses") in found
    assert ("refresh_token", "kafka planted") in found
    assert ("code_verifier", "log planted.log") in found
    # #12.20: the kinds added to the scan are caught too, in each kind of source.
    state = next(v for v, k in run.seen.items() if k == "oauth_state")
    nonce = next(v for v, k in run.seen.items() if k == "browser_nonce")
    more = {
        "log planted-state.log": json.dumps({"event": "callback", "query": f"state={state}"}),
        "kafka planted-nonce": json.dumps({"data": {"cookie": nonce}}),
        "database auth.planted": f"acc_1 {database_passwords(run.pipeline.admin_database_url)[0]}",
        "http responses": f'{{"upload_url": "https://up/video/?upload_token={run.issued["upload_tokens"][0]}"}}',
        "log planted-sig.log": f"GET /m.mp4?X-Amz-Signature={run.issued['presigned_signatures'][0]}",
        DELIVERY: f"Location: /elsewhere?leaked={quote(run.pipeline.api_key)}",  # only state/nonce belong
    }
    found = {(leak.kind, leak.where) for leak in find_leaks(run.secrets, more)}
    assert found == {
        ("oauth_state", "log planted-state.log"),
        ("browser_nonce", "kafka planted-nonce"),
        ("database password", "database auth.planted"),
        ("upload_token", "http responses"),
        ("presigned_signature", "log planted-sig.log"),
        ("API key", DELIVERY),
    }, found
    # And the real sources plus one planted line: caught among everything else.
    sources = dict(run.sources)
    sources["log publish_service.log"] += "\n" + json.dumps(
        {"event": "debug_headers", "auth": f"Bearer {access}"}
    )
    assert [leak for leak in find_leaks(run.secrets, sources) if leak.where == "log publish_service.log"]
