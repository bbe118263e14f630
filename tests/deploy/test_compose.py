"""docker-compose.yml, as the compose binary renders it (anchors and merges resolved)."""

import json
import subprocess
from pathlib import Path

import compose
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("tiktok-sandbox", "migrations", "auth-service", "publish-service")


@pytest.fixture(scope="module")
def rendered():
    binary = Path(compose.__file__).parent / "docker-compose"
    result = subprocess.run(
        [str(binary), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_the_whole_system_is_there(rendered):
    assert set(rendered) == {"kafka", "postgres", "seaweedfs", *APP_SERVICES}


def test_every_long_running_service_has_a_health_check(rendered):
    for name, service in rendered.items():
        if name != "migrations":
            assert service.get("healthcheck", {}).get("test"), name


def test_services_start_after_migrations_and_healthy_dependencies(rendered):
    for name in ("auth-service", "publish-service"):
        depends = rendered[name]["depends_on"]
        assert depends["migrations"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
    assert rendered["migrations"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_app_containers_are_non_root_and_read_only(rendered):
    for name in APP_SERVICES:
        service = rendered[name]
        assert service["user"] == "10001:10001" and service["read_only"] is True, name


def test_published_ports_are_loopback_only(rendered):
    for name, service in rendered.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)


def test_the_browser_and_the_services_reach_the_sandbox_where_they_can(rendered):
    auth = rendered["auth-service"]["environment"]
    assert auth["TIKTOK_AUTHORIZE_URL"].startswith("http://127.0.0.1:18080/")  # the host's browser
    assert auth["TIKTOK_API_BASE"] == "http://tiktok-sandbox:18080"  # the compose network
    assert rendered["publish-service"]["environment"]["TIKTOK_API_BASE"] == "http://tiktok-sandbox:18080"
