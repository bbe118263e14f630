"""`make demo`'s program, run as a user runs it, against the real stack."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_publishes_a_video_end_to_end(stack):
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "DATABASE_URL": stack.database_url,
        "S3_ENDPOINT_URL": stack.s3_endpoint_url,
        "S3_ACCESS_KEY_ID": stack.s3_access_key_id,
        "S3_SECRET_ACCESS_KEY": stack.s3_secret_access_key,
        "S3_REGION": stack.s3_region,
        "S3_BUCKET": "media",
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_pipeline.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The summary names the post, its TikTok ids and the byte-exact check the demo made at the sandbox.
    assert "tiktok-pipeline demo: published" in output
    assert "byte-exact at TikTok" in output
    assert "consent page shown; clicking Authorize" in output
    for state in ("received", "validating", "uploading", "processing", "published"):
        assert state in output
    assert "post ids 7" in output  # a 19-digit public post id arrived after moderation
