"""The Kubernetes manifests, checked without a cluster: both overlays build, every
standard object passes kubernetes-validate --strict, the custom resources validate
against their CRD schemas, and every Deployment is locked down and probed."""

import copy
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE_DIR = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod")
# The CloudNativePG CRD is vendored beside our hand-written subsets: CI has no ../shared.
SCHEMAS = ROOT / "deploy" / "kubernetes" / "schemas"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DASHBOARD_FILES = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
KUBERNETES_VERSION = "1.30.0"
UID = 10001
# Kinds no built-in schema describes: each has its own check below.
CUSTOM = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

Obj = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not Path(path).exists():
        pytest.skip("kubectl is not installed")
    return path


@cache
def build(overlay: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(KUBE_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, kind: str) -> list[Obj]:
    return [o for o in build(overlay) if o["kind"] == kind]


def name(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_into_the_kanban_namespace(overlay: str) -> None:
    objects = build(overlay)
    assert {o["metadata"]["name"] for o in of_kind(overlay, "Deployment")} == {
        "stations",
        "stock",
        "orders",
        "alerts",
    }
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "kanban", name(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_standard_objects_pass_kubernetes_validate_strict(overlay: str) -> None:
    for obj in build(overlay):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay} {name(obj)}: {error.message} at {list(error.path)}")


def test_the_cli_agrees(tmp_path: Path) -> None:
    """The same check as CI would type it, on the dev overlay's standard objects."""
    objects = [o for o in build("dev") if (o["apiVersion"], o["kind"]) not in CUSTOM]
    manifest = tmp_path / "dev.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "kubernetes_validate", "--strict"),
            *("--kubernetes-version", KUBERNETES_VERSION, str(manifest)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _closed(schema: Any) -> Any:
    """The CRD schema as the API server applies it: unknown fields are pruned there,
    refused here (unless the schema preserves them)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def crd_schema(path: Path, version: str) -> Obj:
    crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: Obj = _closed(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    return schema


def test_cloudnative_pg_cluster_matches_its_crd() -> None:
    (cluster,) = of_kind("prod", "Cluster")
    schema = crd_schema(SCHEMAS / "cloudnative-pg-cluster-crd.yaml", "v1")
    jsonschema.Draft202012Validator(schema).validate(cluster)
    assert cluster["spec"]["instances"] == 3


def test_the_crd_check_catches_a_typo() -> None:
    (cluster,) = of_kind("prod", "Cluster")
    broken = copy.deepcopy(cluster)
    broken["spec"]["instance"] = broken["spec"].pop("instances")
    schema = crd_schema(SCHEMAS / "cloudnative-pg-cluster-crd.yaml", "v1")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_prometheus_operator_objects_match_their_schemas(kind: str) -> None:
    schema = yaml.safe_load((KUBE_DIR / "schemas" / f"{kind.lower()}.schema.yaml").read_text())
    objects = of_kind("prod", kind)
    assert objects
    for obj in objects:
        jsonschema.Draft202012Validator(schema).validate(obj)


def test_service_monitor_scrapes_every_service_once_as_kanban_jobs() -> None:
    (monitor,) = of_kind("prod", "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s
        for s in of_kind("prod", "Service")
        if selector.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert sorted(s["metadata"]["name"] for s in scraped) == sorted(
        ["stations", "stock", "orders", "alerts"]
    )
    for service in scraped:
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert any(
        r["targetLabel"] == "job" and r["replacement"] == "kanban-$1"
        for r in endpoint["relabelings"]
    )


def test_prometheus_rule_carries_the_rule_files_exactly() -> None:
    (rule,) = of_kind("prod", "PrometheusRule")
    groups = [g for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups, (
        "run .venv/bin/python deploy/kubernetes/render_prometheusrule.py"
    )
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    expected = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == expected and "KanbanServiceDown" in alerts


def test_dashboards_are_config_maps_for_the_grafana_sidecar() -> None:
    maps = [
        m
        for m in of_kind("prod", "ConfigMap")
        if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    shipped = {key: json.loads(value) for m in maps for key, value in m["data"].items()}
    assert shipped == {p.name: json.loads(p.read_text()) for p in DASHBOARD_FILES}
    for config_map in maps:  # no hash suffix: the sidecar and people find them by name
        assert config_map["metadata"]["name"].startswith("kanban-dashboard-")
        assert not config_map["metadata"]["name"][-10:].startswith("-")


def test_prod_is_production_with_three_replicas() -> None:
    (config,) = [
        m for m in of_kind("prod", "ConfigMap") if m["metadata"]["name"] == "kanban-config"
    ]
    assert config["data"]["KANBAN_ENVIRONMENT"] == "production"
    for deployment in of_kind("prod", "Deployment"):
        assert deployment["spec"]["replicas"] == 3
    for hpa in of_kind("prod", "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 3
    (dev_config,) = [
        m for m in of_kind("dev", "ConfigMap") if m["metadata"]["name"] == "kanban-config"
    ]
    assert dev_config["data"]["KANBAN_ENVIRONMENT"] == "development"
    for deployment in of_kind("dev", "Deployment"):
        assert deployment["spec"]["replicas"] == 1


def _assert_locked_down(where: str, container: Obj) -> None:
    context = container.get("securityContext", {})
    assert context.get("runAsNonRoot") is True, where
    assert context.get("runAsUser") == UID, where
    assert context.get("readOnlyRootFilesystem") is True, where
    assert context.get("allowPrivilegeEscalation") is False, where
    assert context.get("capabilities", {}).get("drop") == ["ALL"], where
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    assert {"name": "tmp", "mountPath": "/tmp"} in container.get("volumeMounts", []), where
    resources = container.get("resources", {})
    assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
    assert "memory" in resources.get("limits", {}), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_locked_down_and_probed(overlay: str) -> None:
    config = {
        k: v
        for m in of_kind(overlay, "ConfigMap")
        if m["metadata"]["name"] == "kanban-config"
        for k, v in m["data"].items()
    }
    health_port = int(config["KANBAN_HEALTH_PORT"])
    for deployment in of_kind(overlay, "Deployment"):
        where = f"{overlay} {name(deployment)}"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], where
        (container,) = pod["containers"]
        _assert_locked_down(where, container)
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": health_port}, f"{where} {probe}"
            assert set(container[probe]) & {"httpGet", "tcpSocket", "exec"} == set(), where
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == int(config["KANBAN_GRPC_PORT"]), where
        assert ports["metrics"] == int(config["KANBAN_METRICS_PORT"]), where
        assert ports["health"] == health_port, where
        service = deployment["metadata"]["name"]
        assert container["args"] == [f"services.{service}"], where
        # Migrations before traffic: an init container migrates the service's schema.
        (migrate,) = pod["initContainers"]
        assert migrate["args"] == ["tools.migrate", service], where
        _assert_locked_down(f"{where} migrate", migrate)
        account = pod["serviceAccountName"]
        (sa,) = [s for s in of_kind(overlay, "ServiceAccount") if s["metadata"]["name"] == account]
        assert sa["automountServiceAccountToken"] is False, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_named_ports_pdb_hpa_and_a_headless_service(overlay: str) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    pdbs = {p["metadata"]["name"] for p in of_kind(overlay, "PodDisruptionBudget")}
    hpas = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(overlay, "HorizontalPodAutoscaler")
    }
    for deployment in of_kind(overlay, "Deployment"):
        svc = deployment["metadata"]["name"]
        ports = {p["name"]: p["port"] for p in services[svc]["spec"]["ports"]}
        assert ports == {"grpc": 50051, "metrics": 9464}, svc
        assert services[f"{svc}-pods"]["spec"]["clusterIP"] == "None", svc
        assert svc in pdbs and svc in hpas, svc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    egress_ports = {
        (p.get("protocol", "TCP"), p["port"])
        for rule in policies["kanban-egress"]["egress"]
        for p in rule["ports"]
    }
    assert {("TCP", 50051), ("TCP", 5432), ("UDP", 53), ("TCP", 53)} <= egress_ports
    (metrics,) = policies["kanban-metrics-ingress"]["ingress"]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9464}]
