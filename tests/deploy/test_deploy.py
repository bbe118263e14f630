"""The deploy artefacts: rendered Kubernetes manifests, the Dockerfile, the dashboard and the alerts.

`scripts/deploy-check.sh` lints the Helm chart, renders it (helm template for dev, prod and the CI
variant; the kustomize overlays, which render the same chart) and validates every render; these
tests run it once (tests/deploy/conftest.py) and then check, in the rendered YAML, what a reviewer
would look for: non-root read-only containers with probes and resources, a grace period longer than
the shutdown deadline, Secrets that hold only placeholders and none at all in prod, prod pointed at
TikTok and dev at the sandbox. The chart's own features are in test_chart.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import RENDERS, ROOT, Rendered

PLACEHOLDER = "REPLACE_ME"
# Services stop within SHUTDOWN_DEADLINE_S (20 s by default); preStop pauses 5 s before that.
PRE_STOP_S = 5
WRITABLE_DIR = "/tmp"  # noqa: S108 - the one writable path inside the containers, an emptyDir
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
DEV = ("helm-dev", "dev")
PROD = ("helm-prod", "helm-ci", "prod")
# The Secrets prod names (existingSecret) instead of rendering them.
PROD_SECRETS = {"auth-service-secrets", "publish-service-secrets", "kafka-cluster-ca-cert"}

# The first run builds helm, kustomize and promql-check (about 5 minutes on 2 cores); later runs
# take seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1600)]


# ------------------------------------------------------------------------------------------ helpers


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name_prefix: str) -> dict[str, Any]:
    found = [d for d in objects(docs, kind) if d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind} named {name_prefix}*, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        template = doc["spec"]["template"]
        if doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
        yield doc, template["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def config_value(docs: list[dict[str, Any]], configmap_prefix: str, key: str) -> str:
    value: str = one(docs, "ConfigMap", configmap_prefix)["data"][key]
    return value


def validate_crds(tmp_path: Path, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "doc.yaml"
    manifest.write_text(yaml.safe_dump(document))
    report = tmp_path / "kv.txt"
    report.write_text("")
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy/tools/validate_crds.py"), str(manifest), str(report)],
        capture_output=True,
        text=True,
        check=False,
    )


# -------------------------------------------------------------------------------- the check itself


def test_deploy_check_lints_renders_and_validates_everything(
    check_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = check_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("helm lint --strict with") == 2
    for name in RENDERS:
        assert (out / f"{name}.yaml").stat().st_size > 0
        report = (out / f"{name}.kubernetes-validate.txt").read_text()
        assert "ERROR" not in report
    # The custom resources, which kubernetes-validate cannot check, were validated by the schemas.
    passed = re.findall(r"passed for resource (\w+)/", result.stderr)
    assert passed.count("scaledobject") == len(RENDERS)
    for kind in (
        "triggerauthentication",
        "kafkatopic",
        "kafkauser",
        "servicemonitor",
        "podmonitor",
        "prometheusrule",
    ):
        assert kind in passed, kind


def test_strict_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    """The check is worth something only if --strict really refuses a misspelt field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "x", "image": "x", "readinesProbe": {}}]},
                    },
                },
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout


def _misspell(rendered: Rendered, kind: str, render: str, mutate: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(objects(rendered[render], kind)[0]))
    mutate(document)
    return document


CRD_TYPOS: list[tuple[str, str, Any, list[str]]] = [
    (
        "ScaledObject",
        "prod",
        lambda d: (
            d["spec"].update(maxReplicas=10),
            d["spec"]["triggers"][-1]["metadata"].update(lagTreshold="5"),
        ),
        ["maxReplicas", "lagTreshold"],
    ),
    (
        "ScaledObject",
        "prod",
        lambda d: d["spec"]["triggers"][0]["metadata"].update(targetQueryValu="4"),
        ["targetQueryValu"],
    ),
    (
        "TriggerAuthentication",
        "prod",
        lambda d: d["spec"]["secretTargetRef"][0].update(keys="password"),
        ["keys"],
    ),
    ("KafkaTopic", "prod", lambda d: d["spec"].update(replication=3), ["replication"]),
    (
        "KafkaTopic",
        "prod",
        lambda d: d["metadata"]["labels"].pop("strimzi.io/cluster"),
        ["strimzi.io/cluster"],
    ),
    (
        "KafkaUser",
        "prod",
        lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Reed"]),
        ["Reed"],
    ),
    ("ServiceMonitor", "prod", lambda d: d["spec"]["endpoints"][0].update(intervall="30s"), ["intervall"]),
    ("PodMonitor", "helm-ci", lambda d: d["spec"].update(podMetricEndpoints=[]), ["podMetricEndpoints"]),
    (
        "PrometheusRule",
        "prod",
        lambda d: d["spec"]["groups"][0]["rules"][0].update(expression="up"),
        ["expression"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "render", "mutate", "words"), CRD_TYPOS, ids=[f"{t[0]}-{t[3][0]}" for t in CRD_TYPOS]
)
def test_custom_resource_schemas_reject_mistakes(
    rendered: Rendered, tmp_path: Path, kind: str, render: str, mutate: Any, words: list[str]
) -> None:
    # The rendered object passes as it is...
    assert validate_crds(tmp_path, _misspell(rendered, kind, render, lambda d: None)).returncode == 0
    # ...and not with the mistake.
    result = validate_crds(tmp_path, _misspell(rendered, kind, render, mutate))
    assert result.returncode == 1, result.stdout
    for word in words:
        assert word in result.stdout


def test_a_custom_kind_without_schema_fails_the_check(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    report = tmp_path / "kv.txt"
    report.write_text(
        f"WARN {manifest} Couldn't find schema for kind Widget with api version example.com/v1 "
        "for kubernetes version 1.37\n"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/tools/validate_crds.py"), str(manifest), str(report)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no schema for example.com/v1 Widget" in result.stdout


# ------------------------------------------------------------------------------ pods and containers


@pytest.mark.parametrize("target", RENDERS)
def test_every_container_is_non_root_read_only_and_confined(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    assert list(pod_specs(docs)), "no workloads rendered"
    for owner, pod in pod_specs(docs):
        where = f"{target} {owner['kind']}/{owner['metadata']['name']}"
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, where
        for c in containers(pod):
            sc = c.get("securityContext", {})
            at = f"{where} container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, at
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, at
            assert sc.get("readOnlyRootFilesystem") is True, at
            assert sc.get("allowPrivilegeEscalation") is False, at
            assert sc.get("privileged", False) is False, at
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not sc.get("capabilities", {}).get("add"), at
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", at


@pytest.mark.parametrize("target", RENDERS)
def test_every_container_has_resources_and_a_writable_tmp(rendered: Rendered, target: str) -> None:
    for owner, pod in pod_specs(rendered[target]):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers(pod):
            at = f"{target} {owner['kind']}/{owner['metadata']['name']} container {c['name']}"
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{at}: {section}"
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == WRITABLE_DIR]
            assert tmp, f"{at}: /tmp is not mounted (the root filesystem is read-only)"
            assert "emptyDir" in volumes[tmp[0]["name"]], at
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{at}: {mount['name']} is not a volume"


@pytest.mark.parametrize("target", RENDERS)
def test_long_running_containers_have_probes(rendered: Rendered, target: str) -> None:
    for owner, pod in pod_specs(rendered[target]):
        if owner["kind"] not in LONG_RUNNING:
            continue
        for c in pod["containers"]:
            at = f"{target} {owner['metadata']['name']} container {c['name']}"
            assert "livenessProbe" in c, at
            assert "readinessProbe" in c, at


@pytest.mark.parametrize("target", RENDERS)
def test_services_probe_healthz_and_readyz(rendered: Rendered, target: str) -> None:
    for name, port in (("auth-service", 8081), ("publish-service", 8082)):
        deployment = one(rendered[target], "Deployment", name)
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        http = next(p for p in c["ports"] if p["name"] == "http")
        assert http["containerPort"] == port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] == "http", probe
            # The default 1 s is too short for a loaded node; every probe says how long it waits.
            assert c[probe]["timeoutSeconds"] >= 2, probe
        startup = c["startupProbe"]
        # Migrations, Kafka metadata and the first connections get minutes, not the 60 s of before.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("target", RENDERS)
def test_grace_period_outlasts_the_shutdown_deadline(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    deadlines = {
        "publish-service": float(config_value(docs, "pipeline-config", "SHUTDOWN_DEADLINE_S")),
        "auth-service": float(config_value(docs, "pipeline-config", "SHUTDOWN_DEADLINE_S")),
    }
    for owner, pod in pod_specs(docs):
        grace = pod.get("terminationGracePeriodSeconds", 30)
        assert grace > 20, f"{owner['metadata']['name']}: {grace}"
        deadline = deadlines.get(owner["metadata"]["name"])
        if deadline is not None:
            assert grace > deadline + PRE_STOP_S, f"{owner['metadata']['name']}: {grace} vs {deadline}"


@pytest.mark.parametrize("target", RENDERS)
def test_one_image_for_every_workload(rendered: Rendered, target: str) -> None:
    images = {c["image"] for _, pod in pod_specs(rendered[target]) for c in containers(pod)}
    assert len(images) == 1, images  # one image for every entry point
    (image,) = images
    assert ":" in image
    assert not image.endswith(":latest")
    if target == "helm-ci":
        assert re.fullmatch(r"[^@]+:[^@:]+@sha256:[0-9a-f]{64}", image), image


def test_one_image_runs_every_entry_point(rendered: Rendered) -> None:
    docs = rendered["dev"]
    commands = [c["command"] for _, pod in pod_specs(docs) for c in containers(pod)]
    assert ["python", "-m", "auth_service"] in commands
    assert ["python", "-m", "publish_service"] in commands
    assert ["python", "-m", "auth_service", "migrate"] in commands
    assert ["python", "-m", "publish_service", "migrate"] in commands
    assert ["tiktok-pipeline", "create-topics", "--partitions", "$(KAFKA_PARTITIONS)"] in commands
    assert ["python", "-m", "tiktok_sandbox", "--host", "0.0.0.0", "--port", "18080"] in commands  # noqa: S104


# ----------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("target", DEV)
def test_dev_secrets_hold_only_placeholders(rendered: Rendered, target: str) -> None:
    secrets = objects(rendered[target], "Secret")
    assert secrets
    required = {
        "TIKTOK_CLIENT_SECRET",
        "TOKEN_KEYS",
        "TRANSPORT_KEYS",
        "API_KEY",
        "DATABASE_URL",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    }
    seen: set[str] = set()
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert secret["metadata"]["labels"]["tiktok-pipeline/secret-template"] == "true"
        for key, value in secret.get("stringData", {}).items():
            assert value == PLACEHOLDER, f"{target} Secret {name}: {key} is not {PLACEHOLDER}"
            seen.add(key)
        for key, value in secret.get("data", {}).items():
            assert base64.b64decode(value).decode() == PLACEHOLDER, f"{target} Secret {name}: {key}"
            seen.add(key)
    assert required <= seen, required - seen


@pytest.mark.parametrize("target", PROD)
def test_prod_renders_no_secret_and_no_placeholder(rendered: Rendered, target: str) -> None:
    """Prod uses existingSecret: an apply can never overwrite the real Secrets with templates."""
    docs = rendered[target]
    assert not objects(docs, "Secret")
    assert PLACEHOLDER not in json.dumps(docs)
    # The client key is per app: from the Secret, not a REPLACE_ME in a ConfigMap.
    assert "TIKTOK_CLIENT_KEY" not in one(docs, "ConfigMap", "pipeline-config")["data"]
    for name in ("auth-service", "publish-service"):
        (c,) = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        ref = env["TIKTOK_CLIENT_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{name}-secrets", "key": "TIKTOK_CLIENT_KEY"}
        assert {"secretRef": {"name": f"{name}-secrets"}} in c["envFrom"]


def test_no_secret_looking_values_outside_secrets(rendered: Rendered) -> None:
    for target, docs in rendered.items():
        for cm in objects(docs, "ConfigMap"):
            for key in cm.get("data", {}):
                assert not re.search(r"SECRET|PASSWORD|_KEYS$|^API_KEY$|DATABASE_URL", key), (
                    f"{target} ConfigMap {cm['metadata']['name']} carries {key}"
                )


@pytest.mark.parametrize("target", RENDERS)
def test_every_referenced_config_and_secret_exists(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    # Secrets made outside the chart: prod's existingSecret and CA, and those Strimzi makes per KafkaUser.
    external = {("Secret", n) for n in PROD_SECRETS} if target in PROD else set()
    external |= {("Secret", u["metadata"]["name"]) for u in objects(docs, "KafkaUser")}
    names |= external

    def check(kind: str, name: str) -> None:
        assert (kind, name) in names, f"{target}: {kind} {name} is referenced but not rendered"

    for _, pod in pod_specs(docs):
        for c in containers(pod):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    check("ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    check("Secret", source["secretRef"]["name"])
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    check("ConfigMap", ref["configMapKeyRef"]["name"])
                if "secretKeyRef" in ref:
                    check("Secret", ref["secretKeyRef"]["name"])
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                check("Secret", volume["secret"]["secretName"])
    for auth in objects(docs, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            check("Secret", ref["name"])


# ------------------------------------------------------------------------------- dev versus prod


@pytest.mark.parametrize("target", PROD)
def test_prod_points_at_tiktok(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    assert config_value(docs, "pipeline-config", "TIKTOK_API_BASE") == "https://open.tiktokapis.com"
    assert (
        config_value(docs, "pipeline-config", "TIKTOK_AUTHORIZE_URL")
        == "https://www.tiktok.com/v2/auth/authorize/"
    )
    assert not [d for d in docs if "sandbox" in d["metadata"]["name"]]
    assert "sandbox" not in json.dumps(docs)
    assert one(docs, "Deployment", "auth-service")["spec"]["replicas"] >= 3
    assert one(docs, "ScaledObject", "publish-service")["spec"]["minReplicaCount"] >= 3


@pytest.mark.parametrize("target", DEV)
def test_dev_points_at_the_sandbox(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    assert config_value(docs, "pipeline-config", "TIKTOK_API_BASE") == "http://tiktok-sandbox:18080"
    assert config_value(docs, "pipeline-config", "TIKTOK_AUTHORIZE_URL").endswith(":18080/v2/auth/authorize/")
    assert config_value(docs, "pipeline-config", "TIKTOK_CLIENT_KEY") == "sandbox-dev-client"
    assert "tiktok.com" not in json.dumps(objects(docs, "ConfigMap"))
    if target == "dev":  # the overlay adds the sandbox itself
        service = one(docs, "Service", "tiktok-sandbox")
        assert service["spec"]["ports"][0]["port"] == 18080
        sandbox = one(docs, "Deployment", "tiktok-sandbox")
        (c,) = sandbox["spec"]["template"]["spec"]["containers"]
        assert c["command"][:3] == ["python", "-m", "tiktok_sandbox"]
        assert c["command"][c["command"].index("--port") + 1] == "18080"


def test_common_labels_everywhere(rendered: Rendered) -> None:
    for target, docs in rendered.items():
        for d in docs:
            labels = d["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "tiktok-pipeline", f"{target} {d['kind']}"


# -------------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_is_multi_stage_non_root_and_read_only_friendly() -> None:
    instructions = dockerfile_instructions()
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert len(stages) >= 2
    assert any("PYTHON_IMAGE=python:3.11-slim-bookworm" in arg for op, arg in instructions if op == "ARG")
    runtime = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    final = instructions[runtime:]
    assert ("USER", "10001:10001") in final
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HTTP_HOST=0.0.0.0" in env
    # Only the venv comes over from the builder: no compiler, no wheels, no sources.
    copies = [arg for op, arg in final if op == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".stack", "tests", "deploy", ".env"} <= ignored
    assert "README.md" not in ignored  # pyproject's readme, needed to build the wheel
    assert "pyproject.toml" not in ignored
    assert "requirements" not in ignored  # the locks the builder installs from


def dockerignore_regexes() -> list[re.Pattern[str]]:
    """.dockerignore patterns as Docker reads them: relative to the context root, `**` any depth."""
    regexes = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip().strip("/")
        if not pattern or pattern.startswith("#"):
            continue
        assert not pattern.startswith("!"), "exceptions are not modelled here"
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        regexes.append(re.compile(regex))
    return regexes


def docker_context(dest: Path) -> list[str]:
    """Copy what `docker build .` would send (the checkout less .dockerignore) to dest."""
    regexes = dockerignore_regexes()

    def ignored(relative: str) -> bool:
        return any(r.fullmatch(relative) for r in regexes)

    sent = []
    for directory, subdirs, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT)
        subdirs[:] = [d for d in subdirs if not ignored((base / d).as_posix())]
        for name in files:
            relative = (base / name).as_posix()
            if not ignored(relative):
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                (dest / relative).write_bytes((ROOT / relative).read_bytes())
                sent.append(relative)
    return sent


def test_the_build_context_makes_a_complete_wheel(tmp_path: Path) -> None:
    """What the Dockerfile's builder does with the context: `pip wheel --no-deps .` must give a wheel
    with every package (the Job runs the `tiktok-pipeline` entry point) and the SQL migrations."""
    context = tmp_path / "context"
    sent = docker_context(context)
    assert "pyproject.toml" in sent
    assert not [f for f in sent if f.startswith(("tests/", ".git/", ".venv/", "deploy/", ".stack/"))]
    assert not [f for f in sent if "__pycache__" in f or f.endswith(".pyc")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            # The venv's setuptools builds it, as the image's builder stage would: no registry needed.
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "w"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "w").glob("tiktok_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    packages = {n.split("/")[0] for n in names if n.endswith("/__init__.py")}
    local = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert local <= packages, local - packages
    match = re.search(r"^tiktok-pipeline\s*=\s*([\w.]+):", scripts, re.MULTILINE)
    assert match, scripts
    module = match.group(1).replace(".", "/")
    assert f"{module}.py" in names or f"{module}/__init__.py" in names
    for service in ("auth_service", "publish_service"):
        migrations = sorted(p.name for p in (ROOT / service / "migrations").glob("*.sql"))
        assert migrations
        assert all(f"{service}/migrations/{m}" in names for m in migrations), service


# ----------------------------------------------------------------------------- dashboard and alerts

METRICS = (
    "tiktok_posts_total",
    "tiktok_posts_in_state",
    "tiktok_upload_bytes_total",
    "tiktok_upload_chunk_retries_total",
    "tiktok_api_calls_total",
    "tiktok_api_call_duration_seconds",
    "tiktok_token_refreshes_total",
    "tiktok_outbox_backlog",
    "tiktok_consumer_lag",
    "tiktok_account_views",
    "tiktok_account_likes",
)


def test_grafana_dashboard_uses_a_datasource_variable_and_every_metric() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/tiktok-pipeline.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            exprs.append(target["expr"])
    text = "\n".join(exprs)
    for metric in METRICS:
        assert metric in text, metric
    for label in ("state", "endpoint", "result", "outcome", "service", "topic", "partition", "account_id"):
        assert re.search(rf"by \([^)]*\b{label}\b", text), label


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"]]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for alert in alerts:
        assert alert["expr"].strip()
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["summary"]
        assert alert["expr"].count("(") == alert["expr"].count(")"), alert["alert"]
    text = "\n".join(a["expr"] for a in alerts)
    for metric in ("tiktok_outbox_backlog", "tiktok_token_refreshes_total", "tiktok_consumer_lag"):
        assert metric in text
    assert 'outcome="reauth_required"' in text
    # What issue 15 asks the alerts to cover: up/absent, failure and rejection rates, stuck posts.
    needed = ("absent(", "up{", 'state="failed"', 'state="rejected"', 'state="uploading"')
    needed += ('state="processing"',)
    for fragment in needed:
        assert fragment in text, fragment


def test_every_alert_has_a_runbook_that_exists() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for alert in (r for group in rules["groups"] for r in group["rules"]):
        url = alert["annotations"].get("runbook_url", "")
        assert url.endswith(f"/deploy/runbooks/{alert['alert']}.md"), alert["alert"]
        runbook = ROOT / "deploy/runbooks" / f"{alert['alert']}.md"
        assert runbook.is_file(), runbook
        assert "## Check" in runbook.read_text() and "## Act" in runbook.read_text()


def test_the_dashboard_works_without_a_namespace_label() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/tiktok-pipeline.json").read_text())
    namespace = next(v for v in dashboard["templating"]["list"] if v["name"] == "namespace")
    # "All" is selected from the start and means .*, which also matches a series with no namespace.
    assert namespace["includeAll"] and namespace["allValue"] == ".*"
    assert namespace["current"]["value"] == ["$__all"]
    text = json.dumps(dashboard)
    panels = (
        "tiktok_publish_post_errors_total",
        "tiktok_publish_dead_letters_total",
        "tiktok_publish_workers_busy",
        "tiktok_posts_oldest_in_state_seconds",
        "tiktok_token_refreshes_total",
        "tiktok_outbox_backlog",
    )
    for metric in panels:
        assert metric in text, metric
