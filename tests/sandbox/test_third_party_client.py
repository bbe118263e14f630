"""A real third-party TikTok client from PyPI against the sandbox: OAuth, then an upload (issue 13, proof).

`tiktok-studio-mcp` (pinned below) is installed by this test into a throwaway venv with pip from
PyPI, and run unchanged. It hard-codes TikTok's hosts (`https://open.tiktokapis.com`,
`https://www.tiktok.com`), so it is pointed at the sandbox the way any unmodified HTTPS client can
be: through its standard proxy settings (`HTTPS_PROXY`) to a loopback proxy that terminates TLS with
a throwaway CA (`SSL_CERT_FILE`) and forwards to the sandbox. Nothing in the package is changed.

Its chunk plan follows TikTok's rules for files under 5 MiB (one whole chunk) and breaks them for
files between 5 and 64 MiB (chunk_size 64 MiB > video_size, total_chunk_count 1): the sandbox must
take the first, checked byte for byte, and refuse the second with TikTok's 400 ``invalid_params``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.waiting import wait_for
from tiktok_sandbox.config import AppSeed, CreatorSeed, SandboxConfig
from tiktok_sandbox.testing import RunningSandbox, run_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PACKAGE = "tiktok-studio-mcp==0.1.4"
PACKAGE_DEPS = ("mcp==1.30.0",)  # its one dependency, pinned so the test does not drift
CALLBACK_PORT = 8902  # fixed by the client (auth.PORT); its redirect URI is http://localhost:8902/
REDIRECT = f"http://localhost:{CALLBACK_PORT}/"
HOSTS = ("open.tiktokapis.com", "www.tiktok.com", "open-upload.tiktokapis.com")
CLIENT_KEY = "sbxthirdparty01"
CLIENT_SECRET = "third-party-client-secret-000001"


def _run(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, cwd=cwd, timeout=300)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for TikTok's hosts signed by it (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test CA"
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "host.key", "host.csr", "host.pem")
    )
    _run(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "1",
        "-subj",
        "/CN=sandbox test CA",
    )
    _run(
        openssl,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={HOSTS[0]}",
    )
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in HOSTS) + "\n")
    _run(
        openssl,
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class TlsProxy:
    """An HTTP CONNECT proxy on loopback that answers every tunnel as TikTok's host, from the sandbox."""

    def __init__(self, sandbox_port: int, context: ssl.SSLContext) -> None:
        self.sandbox_port = sandbox_port
        self.context = context
        self.tunnels: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host = target.rsplit(":", 1)[0]
        if method != "CONNECT" or host not in HOSTS:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        self.tunnels.append(host)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await writer.start_tls(self.context)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.sandbox_port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client, installed from PyPI into a venv of its own (never vendored, never edited)."""
    venv = tmp_path_factory.mktemp("third-party") / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    _run(str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", PACKAGE, *PACKAGE_DEPS)
    return python


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[RunningSandbox, dict[str, str], TlsProxy]]:
    config = SandboxConfig(
        data_dir=str(tmp_path / "sandbox-data"),
        public_base_url="https://open-upload.tiktokapis.com",  # upload_url goes through the proxy too
        auto_approve=True,
        auto_approve_creator="alice",
        apps=(
            AppSeed(
                client_key=CLIENT_KEY,
                client_secret=CLIENT_SECRET,
                app_type="desktop",
                redirect_uris=(REDIRECT,),
            ),
        ),
        creators=(CreatorSeed(username="alice"),),
    )
    ca, cert, key = await asyncio.to_thread(_certificates, tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with run_sandbox(config) as sb:
        port = int(sb.base_url.rsplit(":", 1)[1])
        proxy = TlsProxy(port, context)
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),  # the client's credentials file lands here
            "HTTPS_PROXY": proxy_url,
            "https_proxy": proxy_url,
            "NO_PROXY": "localhost,127.0.0.1",
            "no_proxy": "localhost,127.0.0.1",
            "SSL_CERT_FILE": str(ca),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            yield sb, env, proxy
        finally:
            server.close()


DRIVER = """
import asyncio, json, sys
from tiktok_mcp.server import build_app

async def main():
    try:
        result = await build_app().call_tool("post_video", {"file_path": sys.argv[1]})
    except Exception as exc:
        print(json.dumps({"exception": type(exc).__name__, "text": str(exc)}))
        return
    if isinstance(result, tuple):
        result = result[0]
    if isinstance(result, list):
        texts = [getattr(block, "text", "") for block in result]
    else:
        texts = [json.dumps(result)]
    print(json.dumps({"result": texts}))

asyncio.run(main())
"""


async def _authorize(python: Path, sb: RunningSandbox, env: dict[str, str]) -> None:
    """The client's own `auth` command; the test plays the browser (sandbox consent auto-approves)."""
    proc = await asyncio.create_subprocess_exec(
        str(python),
        "-m",
        "tiktok_mcp",
        "auth",
        "--client-key",
        CLIENT_KEY,
        "--client-secret",
        CLIENT_SECRET,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    url = ""
    async with asyncio.timeout(60):
        while not url:
            line = (await proc.stdout.readline()).decode()
            assert line, "the client exited before printing its authorize URL"
            if line.startswith("https://www.tiktok.com/v2/auth/authorize/?"):
                url = line.strip()
    assert re.search(r"code_challenge=[0-9a-f]{64}&code_challenge_method=S256", url), url  # hex PKCE
    browser_url = url.replace("https://www.tiktok.com", sb.base_url)
    async with aiohttp.ClientSession(trust_env=False) as browser:
        async with browser.get(browser_url, allow_redirects=False) as consent:
            assert consent.status == 302, await consent.text()
            callback = consent.headers["Location"]
        assert callback.startswith(REDIRECT + "?code=")
        async with browser.get(callback) as landed:
            assert landed.status == 200
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]


async def _post_video(python: Path, env: dict[str, str], video: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        DRIVER,
        str(video),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    answer: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return answer


async def test_third_party_client_connects_and_uploads_bytes_intact(client_venv, stack, tmp_path):
    sb, env, proxy = stack
    await _authorize(client_venv, sb, env)
    stored = json.loads(
        (tmp_path / "home" / ".config" / "tiktok-studio-mcp" / "credentials.json").read_text()
    )
    assert stored["refresh_token"] in sb.store.refresh_tokens  # the token the sandbox issued
    (grant,) = sb.store.grants.values()
    assert grant.username == "alice" and "video.upload" in grant.scopes

    video = tmp_path / "clip.mp4"
    data = os.urandom(3 * 1024 * 1024 + 12345)  # under 5 MiB: one whole chunk, TikTok's rule
    video.write_bytes(data)
    answer = await _post_video(client_venv, env, video)
    assert "result" in answer, answer
    result = json.loads(answer["result"][0])
    publish_id = result["publish_id"]
    assert re.fullmatch(r"v_inbox_file~v2\.\d{19}", publish_id) and result["chunks_sent"] == 1

    post = await sb.control.post(publish_id)
    assert post["size"] == len(data) and post["sha256"] == hashlib.sha256(data).hexdigest()
    assert post["upload"]["chunk_size"] == len(data) and post["upload"]["total_chunk_count"] == 1
    await sb.control.advance_time(10)
    await wait_for(lambda: sb.store.posts[publish_id].status == "SEND_TO_USER_INBOX", timeout=10)
    # Every call went to TikTok's hosts over TLS (through the proxy), none elsewhere.
    assert set(proxy.tunnels) == {"open.tiktokapis.com", "open-upload.tiktokapis.com"}
    calls = await sb.control.call_counts()
    assert json.dumps(calls).count("/v2/oauth/token/") >= 1


async def test_third_party_clients_rule_breaking_chunk_plan_is_refused_with_tiktoks_error(
    client_venv, stack, tmp_path
):
    sb, env, _ = stack
    await _authorize(client_venv, sb, env)
    video = tmp_path / "clip.mp4"
    video.write_bytes(
        os.urandom(6 * 1024 * 1024)
    )  # its plan: chunk_size 64 MiB, total 1 (TikTok: 0 or whole)
    answer = await _post_video(client_venv, env, video)
    assert "exception" in answer, answer
    assert "(400)" in answer["text"] and "invalid_params" in answer["text"], answer["text"]
    assert (
        "The total chunk count is invalid" in answer["text"] or "The chunk size is invalid" in answer["text"]
    )
    assert not sb.store.posts  # nothing created, nothing uploaded
