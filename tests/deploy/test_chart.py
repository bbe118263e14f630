"""The Helm chart's own promises, read from its renders (tests/deploy/conftest.py): one source for
helm and kustomize, migrations as a hook, Kafka security, Strimzi topics and least-privilege users,
KEDA on the PostgreSQL backlog, NetworkPolicies with peers, the ingress, the monitoring resources.
"""

from __future__ import annotations

import inspect
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from common.kafka import standard_topics
from tests.deploy.conftest import ROOT, Rendered
from tests.deploy.test_deploy import PROD, config_value, containers, objects, one

CHART = ROOT / "deploy/k8s/chart/tiktok-pipeline"
PROD_VALUES = ROOT / "deploy/k8s/overlays/prod/values.yaml"
RENDERS_WITH_PEERS = ("helm-dev", "helm-prod", "helm-ci", "dev", "prod")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1600)]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def service_container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return c


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    """An object without what the overlays add on top of the chart (namespace, environment label)."""
    copy: dict[str, Any] = json.loads(json.dumps(doc))
    copy["metadata"].pop("namespace", None)
    for labels in (
        copy["metadata"].get("labels", {}),
        copy.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}),
    ):
        labels.pop("tiktok-pipeline/environment", None)
    return copy


# ------------------------------------------------------------------------------------ one source


@pytest.mark.parametrize(("overlay", "helm_render"), [("dev", "helm-dev"), ("prod", "helm-prod")])
def test_the_overlays_render_the_chart(rendered: Rendered, overlay: str, helm_render: str) -> None:
    """kustomize adds only its namespace, a label and dev's sandbox: every chart object is the same."""
    chart = {(d["kind"], d["metadata"]["name"]): strip(d) for d in rendered[helm_render]}
    built = {(d["kind"], d["metadata"]["name"]): strip(d) for d in rendered[overlay]}
    assert chart.keys() <= built.keys()
    for key, doc in chart.items():
        assert built[key] == doc, key
    extra = built.keys() - chart.keys()
    if overlay == "prod":
        assert extra == {("Namespace", "tiktok-pipeline")}
    else:
        assert {k for k in extra if k[0] != "NetworkPolicy"} == {
            ("Namespace", "tiktok-pipeline-dev"),
            ("Deployment", "tiktok-sandbox"),
            ("Service", "tiktok-sandbox"),
        }
    namespace = "tiktok-pipeline" if overlay == "prod" else "tiktok-pipeline-dev"
    assert {d["metadata"].get("namespace") for d in rendered[overlay] if d["kind"] != "Namespace"} == {
        namespace
    }


def test_no_hand_written_copy_of_the_manifests_remains() -> None:
    overlays = ROOT / "deploy/k8s/overlays"
    for path in overlays.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in {"Deployment", "ConfigMap", "Job", "ScaledObject", "Secret"}:
                assert doc["metadata"]["name"] == "tiktok-sandbox", (
                    f"{path}: {doc['kind']} belongs in the chart"
                )
    assert not (ROOT / "deploy/k8s/base").exists()


# -------------------------------------------------------------------------------- migrations hook


@pytest.mark.parametrize("target", ("helm-dev", "helm-prod"))
def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    job = one(docs, "Job", "tiktok-pipeline-migrate")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert hooks["helm.sh/hook-delete-policy"] == "before-hook-creation"
    # What the Job needs exists before it: hooks of a lower weight (nothing else exists on install).
    for kind, name in (
        ("ServiceAccount", "tiktok-pipeline-migrate"),
        ("ConfigMap", "tiktok-pipeline-migrate-config"),
    ):
        dependency = one(docs, kind, name)["metadata"]["annotations"]
        assert dependency["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(dependency["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    pod = job["spec"]["template"]["spec"]
    for c in containers(pod):
        config_refs = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
        assert config_refs == ["tiktok-pipeline-migrate-config"], c["name"]
    names = [c["name"] for c in containers(pod)]
    if target == "helm-dev":
        assert names == ["migrate-auth", "migrate-publish", "create-topics"]
    else:  # Strimzi owns prod's topics
        assert names == ["migrate-auth", "migrate-publish"]
    # The hook's config carries every setting the services' ConfigMaps give them.
    migrate = one(docs, "ConfigMap", "tiktok-pipeline-migrate-config")["data"]
    for name in ("pipeline-config", "auth-service-config", "publish-service-config"):
        for key in one(docs, "ConfigMap", name)["data"]:
            assert key in migrate, (name, key)


# ------------------------------------------------------------------------------------------ Kafka


def test_one_partition_default_everywhere(rendered: Rendered) -> None:
    default = inspect.signature(standard_topics).parameters["partitions"].default
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["partitions"] == default == 6
    for target, docs in rendered.items():
        assert config_value(docs, "pipeline-config", "KAFKA_PARTITIONS") == str(default), target
        for topic in objects(docs, "KafkaTopic"):
            assert topic["spec"]["partitions"] == default


@pytest.mark.parametrize("target", PROD)
def test_prod_kafka_clients_use_sasl_ssl_as_their_own_principal(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    config = one(docs, "ConfigMap", "pipeline-config")["data"]
    assert config["KAFKA_MANAGE_TOPICS"] == "false"
    users = {u["metadata"]["name"] for u in objects(docs, "KafkaUser")}
    for name in ("auth-service", "publish-service"):
        c = service_container(docs, name)
        env = env_of(c)
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in one(docs, "Deployment", name)["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-cluster-ca-cert"
        assert env["KAFKA_SSL_CAFILE"]["value"].startswith(mounts["kafka-ca"]["mountPath"] + "/")
        principal = f"tiktok-pipeline-{name}"
        assert principal in users
        if target == "helm-ci":  # mutual TLS with the KafkaUser's certificate
            assert config["KAFKA_SECURITY_PROTOCOL"] == "SSL"
            assert "KAFKA_SASL_USERNAME" not in env
            client = f"kafka-client-{name.split('-')[0]}"
            assert volumes[client]["secret"]["secretName"] == principal
            assert {i["key"] for i in volumes[client]["secret"]["items"]} == {"user.crt", "user.key"}
            for var in ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
                assert env[var]["value"].startswith(mounts[client]["mountPath"] + "/")
        else:
            assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
            assert env["KAFKA_SASL_USERNAME"]["value"] == principal
            # The password only ever comes from the KafkaUser's Secret.
            assert env["KAFKA_SASL_PASSWORD"] == {
                "name": "KAFKA_SASL_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": principal, "key": "password"}},
            }


@pytest.mark.parametrize("target", ("helm-prod", "helm-ci"))
def test_strimzi_topics_follow_the_code(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    prefix = config_value(docs, "pipeline-config", "TOPIC_PREFIX")
    expected = {spec.name: spec for spec in standard_topics(prefix).values()}
    topics = {t["spec"]["topicName"]: t for t in objects(docs, "KafkaTopic")}
    assert topics.keys() == expected.keys()
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
        assert topic["spec"]["replicas"] == 3
        config = {k: str(v) for k, v in topic["spec"]["config"].items()}
        assert config.pop("min.insync.replicas") == "2"
        assert config == dict(expected[name].config), name


ACLS = {
    # Issue 11's least-privilege table (deploy/README.md).
    "upstream": {("topic", "tiktok.post.requested", "Write")},
    "publish-service": {
        ("topic", "tiktok.post.requested", "Read"),
        ("topic", "tiktok.accounts", "Read"),
        ("topic", "tiktok.access-tokens", "Read"),
        ("topic", "tiktok.post.status", "Write"),
        ("topic", "tiktok.post.requested.dlq", "Write"),
        ("topic", "tiktok.token.refresh-requested", "Write"),
        ("topic", "tiktok.post.metrics", "Write"),
        ("topic", "tiktok.account.stats", "Write"),
        ("group", "publish_service", "Read"),
    },
    "auth-service": {
        ("topic", "tiktok.token.refresh-requested", "Read"),
        ("topic", "tiktok.accounts", "Write"),
        ("topic", "tiktok.access-tokens", "Write"),
        ("group", "auth-service", "Read"),
    },
    "dashboards": {
        ("topic", "tiktok.post.status", "Read"),
        ("topic", "tiktok.post.metrics", "Read"),
        ("topic", "tiktok.account.stats", "Read"),
    },
}


def acl_set(user: dict[str, Any]) -> set[tuple[str, str, str]]:
    found = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert acl.get("host", "*") == "*"
        assert resource.get("patternType", "literal") == "literal"
        for operation in acl["operations"]:
            found.add((resource["type"], resource.get("name", ""), operation))
    return found


def test_each_principal_gets_exactly_its_acls(rendered: Rendered) -> None:
    docs = rendered["helm-prod"]
    users = {u["metadata"]["labels"]["app.kubernetes.io/name"]: u for u in objects(docs, "KafkaUser")}
    assert users.keys() == ACLS.keys()
    for who, user in users.items():
        assert user["metadata"]["name"] == f"tiktok-pipeline-{who}"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert acl_set(user) == ACLS[who], who
    # The group the chart grants is the one each service joins.
    assert config_value(docs, "auth-service-config", "AUTH_CONSUMER_GROUP") == "auth-service"


def test_acls_take_the_topic_prefix_and_the_options(rendered: Rendered) -> None:
    docs = rendered["helm-ci"]
    users = {u["metadata"]["labels"]["app.kubernetes.io/name"]: u for u in objects(docs, "KafkaUser")}
    for who, expected in ACLS.items():
        prefixed = {(kind, f"acme_{name}", op) for kind, name, op in expected}
        extra = acl_set(users[who]) - prefixed
        assert prefixed <= acl_set(users[who]), who
        writes = any(op == "Write" for _, _, op in expected) or who == "publish-service"
        allowed_extra = {("cluster", "", "IdempotentWrite")} if writes else set()
        if who == "publish-service":  # strimzi.postsApi: POST /v1/posts produces the request
            allowed_extra.add(("topic", "acme_tiktok.post.requested", "Write"))
        assert extra == allowed_extra, who
        assert users[who]["spec"]["authentication"] == {"type": "tls"}
    assert config_value(docs, "auth-service-config", "AUTH_CONSUMER_GROUP") == "acme_auth-service"


# ------------------------------------------------------------------------------------------- KEDA


@pytest.mark.parametrize("target", ("helm-dev", "helm-prod", "helm-ci"))
def test_keda_scales_on_the_backlog_then_the_lag(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    scaled = one(docs, "ScaledObject", "publish-service")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "publish-service"
    # KEDA owns the replica count; a field in the Deployment would fight it on every apply.
    assert "replicas" not in one(docs, "Deployment", "publish-service")["spec"]
    backlog, lag = scaled["spec"]["triggers"]
    workers = config_value(docs, "publish-service-config", "PUBLISH_WORKERS")
    prefix = config_value(docs, "pipeline-config", "TOPIC_PREFIX")
    if target == "helm-ci":
        assert backlog["type"] == "prometheus"
        assert "tiktok_posts_in_state" in backlog["metadata"]["query"]
        assert backlog["metadata"]["threshold"] == workers
    else:
        assert backlog["type"] == "postgresql"
        assert backlog["metadata"]["targetQueryValue"] == workers
        auth = one(docs, "TriggerAuthentication", backlog["authenticationRef"]["name"])
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "connection", "name": "publish-service-secrets", "key": "DATABASE_URL"}
        ]
    assert lag["type"] == "kafka"
    assert lag["metadata"]["consumerGroup"] == f"{prefix}publish_service"
    assert lag["metadata"]["topic"] == f"{prefix}tiktok.post.requested"
    if target == "helm-dev":
        assert "authenticationRef" not in lag
        assert "sasl" not in lag["metadata"]
        return
    assert lag["metadata"]["tls"] == "enable"
    auth = one(docs, "TriggerAuthentication", lag["authenticationRef"]["name"])
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["ca"]["name"] == "kafka-cluster-ca-cert"
    if target == "helm-prod":
        assert lag["metadata"]["sasl"] == "scram_sha512"
        assert refs["password"] == {
            "parameter": "password",
            "name": "tiktok-pipeline-publish-service",
            "key": "password",
        }
        assert auth["spec"]["env"] == [
            {"parameter": "username", "name": "KAFKA_SASL_USERNAME", "containerName": "publish-service"}
        ]
    else:
        assert "sasl" not in lag["metadata"]
        assert {refs["cert"]["key"], refs["key"]["key"]} == {"user.crt", "user.key"}


@pytest.mark.stack
async def test_the_backlog_query_counts_posts_due_or_in_progress(
    rendered: Rendered, database_url: str
) -> None:
    """KEDA's query, run on publish_service's migrated schema with real post rows: posts due now and
    posts leased to a worker count; a post scheduled for later does not."""
    from datetime import UTC, datetime, timedelta

    from common.db import apply_migrations, create_pool
    from common.events import PostRequestedData
    from publish_service.adapters.repository import Repository, Topics
    from publish_service.app import MIGRATIONS
    from publish_service.settings import SCHEMA

    backlog = one(rendered["helm-prod"], "ScaledObject", "publish-service")["spec"]["triggers"][0]
    query = backlog["metadata"]["query"]
    async with create_pool(database_url, min_size=1, max_size=2) as pool:
        await apply_migrations(pool, SCHEMA, MIGRATIONS)
        repo = Repository(pool, SCHEMA, Topics(status="s", dlq="d", refresh="r"))
        assert await pool.fetchval(query) == 0

        async def request(post_id: str, publish_at: datetime | None = None) -> None:
            post = PostRequestedData.model_validate(
                {
                    "post_id": post_id,
                    "account_id": "acc-1",
                    "kind": "video",
                    "mode": "direct",
                    "privacy_level": "SELF_ONLY",
                    "video": {"uri": "s3://media/v.mp4"},
                    "publish_at": publish_at,
                }
            )
            async with repo.transaction() as tx:
                await tx.record_request(post, b"{}", None, b"acc-1")

        await request("due-1")
        await request("due-2")
        await request("later", datetime.now(UTC) + timedelta(hours=1))
        assert await pool.fetchval(query) == 2
        claimed = await repo.claim("worker-1", 60.0)
        assert claimed is not None
        assert claimed.post_id in {"due-1", "due-2"}
        assert await pool.fetchval(query) == 2  # one due, one in a worker's hands
        with pytest.raises(asyncpg.PostgresError):  # a wrong column is an error, not a silent 0
            await pool.fetchval(query.replace("lease_until", "lease_untill"))


# -------------------------------------------------------------------------------- NetworkPolicies


def peers_of(rule: dict[str, Any], key: str) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = rule.get(key, [])
    return peers


@pytest.mark.parametrize("target", RENDERS_WITH_PEERS)
def test_network_policies_name_their_peers(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    policies = {p["metadata"]["name"]: p for p in objects(docs, "NetworkPolicy")}
    deny = policies["default-deny-all"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    metrics_port = int(config_value(docs, "pipeline-config", "METRICS_PORT"))
    controller = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]
    prometheus = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    for name, port in (("auth-service", 8081), ("publish-service", 8082)):
        spec = policies[name]["spec"]
        # Every ingress rule names who may come in.
        for rule in spec["ingress"]:
            assert peers_of(rule, "from"), (target, name, rule)
        by_port: dict[int, list[Any]] = {}
        for rule in spec["ingress"]:
            for p in rule["ports"]:
                by_port.setdefault(p["port"], []).extend(rule["from"])
        assert set(by_port) == {port, metrics_port}
        assert by_port[metrics_port] == prometheus
        if target == "helm-ci":
            assert by_port[port] == [
                *controller,
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "upstream-app"}}},
            ]
        else:
            assert by_port[port] == controller
        # Egress: every rule but HTTPS names its peers; HTTPS (TikTok) is the only one open to any
        # address, and not to private ranges.
        open_rules = [
            r
            for r in spec["egress"]
            if any("ipBlock" in p and p["ipBlock"]["cidr"] == "0.0.0.0/0" for p in r["to"])
        ]
        assert len(open_rules) == 1
        (https,) = open_rules
        assert https["ports"] == [{"protocol": "TCP", "port": 443}]
        assert "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]
        for rule in spec["egress"]:
            assert rule["to"], (target, name, rule)
            for peer in rule["to"]:
                assert (peer != {} and peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0") or rule is https
        ports = {p["port"] for r in spec["egress"] for p in r["ports"]}
        kafka = 9093 if target in PROD else 9092
        expected = {kafka, 5432, 443} | (
            {9000} if name == "publish-service" and target in ("helm-dev", "dev", "helm-ci") else set()
        )
        assert ports == expected, (target, name)
    migrate = policies["tiktok-pipeline-migrate"]["spec"]
    assert "ingress" not in migrate
    assert all(rule["to"] for rule in migrate["egress"])


# ----------------------------------------------------------------------------- ingress, metrics


def test_the_ingress_exposes_only_the_three_public_paths(rendered: Rendered) -> None:
    ingress = one(rendered["prod"], "Ingress", "tiktok-pipeline")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["tiktok-pipeline.example.com"], "secretName": "tiktok-pipeline-tls"}
    ]
    (rule,) = ingress["spec"]["rules"]
    paths = {
        (p["path"], p["pathType"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
        for p in rule["http"]["paths"]
    }
    assert paths == {
        ("/v1/connect", "Exact", "auth-service", 8081),
        ("/v1/oauth/callback", "Exact", "auth-service", 8081),
        ("/v1/webhooks/tiktok", "Exact", "publish-service", 8082),
    }
    assert not objects(rendered["dev"], "Ingress")


@pytest.mark.parametrize("target", RENDERS_WITH_PEERS)
def test_metrics_have_their_own_port(rendered: Rendered, target: str) -> None:
    docs = rendered[target]
    metrics_port = int(config_value(docs, "pipeline-config", "METRICS_PORT"))
    for name in ("auth-service", "publish-service"):
        c = service_container(docs, name)
        assert {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"} in c["ports"]
        service = one(docs, "Service", name)
        assert {
            "name": "metrics",
            "port": metrics_port,
            "targetPort": "metrics",
            "protocol": "TCP",
        } in service["spec"]["ports"]
        annotations = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(metrics_port)


def test_monitoring_resources_are_optional(rendered: Rendered) -> None:
    for target in ("helm-dev", "dev"):
        for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule", "KafkaTopic", "KafkaUser", "Ingress"):
            assert not objects(rendered[target], kind), (target, kind)
    prod = rendered["helm-prod"]
    monitor = one(prod, "ServiceMonitor", "tiktok-pipeline")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert not objects(prod, "PodMonitor")
    pod_monitor = one(rendered["helm-ci"], "PodMonitor", "tiktok-pipeline")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    rule = one(prod, "PrometheusRule", "tiktok-pipeline")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert rule["spec"] == alerts


# ------------------------------------------------------------------------- values that are refused


REFUSED = [
    ([], "existingSecret.auth is required"),
    (
        ["-f", str(PROD_VALUES), "--set", "kafka.securityProtocol=SASL_TLS"],
        'kafka.securityProtocol "SASL_TLS"',
    ),
    (["-f", str(PROD_VALUES), "--set", "kafka.saslMechanism=GSSAPI"], 'kafka.saslMechanism "GSSAPI"'),
    (["-f", str(PROD_VALUES), "--set", "kafka.securityProtocol=SSL"], "kafka.saslMechanism is set but"),
    (
        ["-f", str(PROD_VALUES), "--set", "migrate.createTopics=true"],
        "migrate.createTopics and strimzi.enabled",
    ),
    (
        ["-f", str(PROD_VALUES), "--set", "networkPolicy.egress.kafka.to=null"],
        "networkPolicy.egress.kafka.to is empty",
    ),
    (["-f", str(PROD_VALUES), "--set", "image.digest=md5:abc"], "image.digest must look like sha256"),
    (
        ["-f", str(PROD_VALUES), "--set", "terminationGracePeriodSeconds=20"],
        "terminationGracePeriodSeconds must exceed",
    ),
    (["-f", str(PROD_VALUES), "--set", "keda.backlog.type=cpu"], 'keda.backlog.type "cpu"'),
    (
        ["-f", str(PROD_VALUES), "--set", "strimzi.enabled=false"],
        "kafka.auth.auth.username is required with SASL",
    ),
    (
        ["-f", str(PROD_VALUES), "--set", "kafka.securityProtocol=SSL", "--set", "kafka.saslMechanism="],
        "strimzi.authentication scram-sha-512 needs kafka.securityProtocol SASL_SSL",
    ),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_bad_values_are_refused_with_a_message_naming_them(
    helm: str, tmp_path: Path, args: list[str], message: str
) -> None:
    env = {
        "HELM_CONFIG_HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path),
        "HELM_DATA_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [helm, "template", "x", str(CHART), "--kube-version", "1.31.0", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def helm_template(helm: str, tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    env = {
        "HELM_CONFIG_HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path),
        "HELM_DATA_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [
            helm,
            "template",
            "tiktok-pipeline",
            str(CHART),
            "--kube-version",
            "1.31.0",
            "-f",
            str(PROD_VALUES),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_optional_parts_switch_off(helm: str, tmp_path: Path) -> None:
    docs = helm_template(
        helm,
        tmp_path,
        *("--set", "keda.enabled=false", "--set", "strimzi.enabled=false", "--set", "ingress.enabled=false"),
        *("--set", "networkPolicy.enabled=false", "--set", "metrics.serviceMonitor.enabled=false"),
        *("--set", "metrics.prometheusRule.enabled=false", "--set", "publish.replicas=2"),
        *(
            "--set",
            "kafka.auth.auth.username=auth",
            "--set",
            "kafka.auth.auth.passwordSecret.name=auth-kafka",
        ),
        *(
            "--set",
            "kafka.auth.publish.username=publish",
            "--set",
            "kafka.auth.publish.passwordSecret.name=pub-kafka",
        ),
    )
    kinds = {d["kind"] for d in docs}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    }
    # Without KEDA the chart sets the count itself.
    assert one(docs, "Deployment", "publish-service")["spec"]["replicas"] == 2
    # Without Strimzi the principals are the ones given.
    env = env_of(service_container(docs, "publish-service"))
    assert env["KAFKA_SASL_USERNAME"]["value"] == "publish"
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pub-kafka", "key": "password"}
