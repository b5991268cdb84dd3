"""The Helm chart (charts/batchpilot): lint and its values schema, what it renders, and a real `helm install` on
the local API server, after which the operator runs with the chart's ServiceAccount token and only the chart's
RBAC: it must reconcile a service, write its status, post Events and scale, with no Forbidden in its log."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.operator_process import OperatorProcess
from prometheus_client.metrics import MetricWrapperBase

from batchpilot import metrics
from batchpilot.adapters import promql
from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.paths import helm_binary
from support import kubectl_run, wait_for

CHART = Path(__file__).resolve().parents[2] / "charts" / "batchpilot"
KUBE_VERSION = "1.33.0"
RELEASE, RELEASE_NS, SERVICE_NS = "bp", "batchpilot-system", "chart-rbac"
ACCOUNT = "bp-batchpilot"  # the release's full name


def helm(*args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(helm_binary()), *args, *([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def render(*sets: str) -> list[dict[str, Any]]:
    args = [f"--set={s}" for s in sets]
    out = helm("template", RELEASE, str(CHART), "-n", RELEASE_NS, "--kube-version", KUBE_VERSION, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_lint_passes_and_the_schema_names_a_bad_value() -> None:
    ok = helm("lint", str(CHART))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong_type = helm("lint", str(CHART), "--set", "controlIntervalSeconds=fast")
    assert wrong_type.returncode != 0 and "/controlIntervalSeconds': got string, want number" in wrong_type.stdout
    misspelt = helm("lint", str(CHART), "--set", "prometheusURL=http://prometheus:9090")
    assert misspelt.returncode != 0 and "prometheusURL" in misspelt.stdout
    bad_url = helm("lint", str(CHART), "--set", "prometheusUrl=prometheus:9090")
    assert bad_url.returncode != 0 and "/prometheusUrl" in bad_url.stdout


def test_defaults_render_the_operator_with_its_settings() -> None:
    docs = render()
    assert [d["kind"] for d in docs] == ["PodDisruptionBudget", "ServiceAccount", "ConfigMap", "ClusterRole",
                                         "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"]
    deployment = docs[-1]
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert container["image"] == "batchpilot/batchpilot:0.1.0" and container["args"] == ["operator"]
    assert env["BATCHPILOT_PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    assert env["BATCHPILOT_FETCHER_IMAGE"] == "batchpilot/batchpilot:0.1.0"
    assert env["BATCHPILOT_CONTROL_INTERVAL_SECONDS"] == "15" and pod["serviceAccountName"] == ACCOUNT
    tuned = render("image.tag=0.2.0", "prometheusUrl=http://prom:9090", "verbose=true", "rbac.create=false",
                   "serviceAccount.create=false", "serviceAccount.name=ops")
    assert [d["kind"] for d in tuned] == ["PodDisruptionBudget", "ConfigMap", "Service", "Deployment"]
    container = tuned[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "batchpilot/batchpilot:0.2.0" and container["args"] == ["operator", "--verbose"]
    assert {"name": "BATCHPILOT_PROMETHEUS_URL", "value": "http://prom:9090"} in container["env"]


def test_two_replicas_elect_a_leader_through_a_lease_with_a_disruption_budget() -> None:
    docs = render()
    kinds = {d["kind"]: d for d in docs}
    deployment = kinds["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["BATCHPILOT_LEADER_ELECTION"] == "true" and env["BATCHPILOT_LEASE_NAME"] == ACCOUNT
    assert (env["POD_NAME"], env["POD_NAMESPACE"]) == ("metadata.name", "metadata.namespace")
    assert [env[f"BATCHPILOT_{k}_SECONDS"] for k in ("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD")] == [
        "15", "10", "2"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pdb = kinds["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["metadata"]["namespace"] == RELEASE_NS
    # One replica without election: no Lease, no Role, no budget (minAvailable 1 of 1 would block every drain).
    single = render("replicas=1", "leaderElection.enabled=false")
    assert [d["kind"] for d in single] == ["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding",
                                           "Service", "Deployment"]
    assert single[-1]["spec"]["replicas"] == 1 and single[-1]["spec"]["strategy"]["type"] == "Recreate"
    refused = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--set",
                   "leaderElection.enabled=false")
    assert refused.returncode != 0 and "replicas > 1 needs leaderElection.enabled=true" in refused.stderr


def test_alerts_and_service_monitor_use_the_metrics_the_operator_exports() -> None:
    docs = render("alerts.enabled=true", "metrics.serviceMonitor.enabled=true")
    kinds = [d["kind"] for d in docs]
    assert "ServiceMonitor" in kinds and "PrometheusRule" in kinds
    rules = next(d for d in docs if d["kind"] == "PrometheusRule")["spec"]["groups"][0]["rules"]
    exported = {m.describe()[0].name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    for rule in rules:
        names = set(re.findall(r"batchpilot_[a-z_]+", rule["expr"]))
        assert names and names <= exported | {f"{n}_total" for n in exported}, (rule["alert"], names, exported)


def test_the_dashboard_ships_in_a_grafana_sidecar_configmap_and_queries_exported_metrics() -> None:
    [config_map] = [d for d in render() if d["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == RELEASE_NS
    dashboard = json.loads(config_map["data"]["batchpilot.json"])
    assert "__inputs" not in dashboard  # a datasource variable instead: works in any Grafana, imported or provisioned
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    sources = [p["datasource"] for p in dashboard["panels"]] + [a["datasource"] for a in dashboard["annotations"]["list"]]
    assert all(d == {"type": "prometheus", "uid": "${datasource}"} for d in sources)
    exported = {m.describe()[0].name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    exported |= {f"{n}_{suffix}" for n in exported for suffix in ("total", "bucket")}
    triton = set(re.findall(r"nv_[a-z_]+", Path(promql.__file__).read_text()))  # what the operator itself reads
    for expr in exprs:
        assert '$namespace' in expr and '$inferenceservice' in expr, expr
        assert set(re.findall(r"batchpilot_[a-z_]+", expr)) <= exported, expr
        assert set(re.findall(r"nv_[a-z_]+", expr)) <= triton, expr
    assert not [d for d in render("dashboard.enabled=false") if d["kind"] == "ConfigMap"]


def test_the_chart_carries_the_generated_crd() -> None:
    committed = (CHART.parents[1] / "crds" / "batchpilot.dev_inferenceservices.yaml").read_text()
    assert (CHART / "crds" / "batchpilot.dev_inferenceservices.yaml").read_text() == committed


OPERATOR_CALLS = {
    ("batchpilot.dev", "inferenceservices"): {"get", "list", "watch", "patch"},
    ("batchpilot.dev", "inferenceservices/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "deployments/scale"): {"patch"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("", "configmaps"): {"list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"list", "watch", "create", "patch"},
    ("monitoring.coreos.com", "podmonitors"): {"create", "patch"},
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}
"""(API group, resource) -> verbs the operator uses: adapters/kube.py and adapters/pods.py, plus kopf's own calls
for handlers.py (list/watch of what it serves, patches of annotations and status, Event posts). Server-side apply
is a patch, and a create when the object is new. templates/rbac.yaml says why for each rule."""


def granted(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


LEASE_CALLS = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
"""The leader-election Lease (adapters/lease.py: read, create, replace), granted by a Role in the release's
namespace only; get and update limited to the Lease's name."""


def test_the_cluster_role_grants_exactly_what_the_operator_calls() -> None:
    docs = render()
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    assert granted(role) == OPERATOR_CALLS
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])
    [lease_role] = [d for d in docs if d["kind"] == "Role"]
    [binding] = [d for d in docs if d["kind"] == "RoleBinding"]
    assert granted(lease_role) == LEASE_CALLS and lease_role["metadata"]["namespace"] == RELEASE_NS
    assert all(rule.get("resourceNames") == [ACCOUNT] for rule in lease_role["rules"] if rule["verbs"] != ["create"])
    assert binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": RELEASE_NS}]


def service_account_kubeconfig(control_plane: ControlPlane, path: Path) -> Path:
    token = kubectl_run(control_plane.kubeconfig, "create", "token", ACCOUNT, "-n", RELEASE_NS)
    assert token.returncode == 0, token.stderr
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {"server": control_plane.server,
                                                   "certificate-authority": str(control_plane.ca_file)}}],
        "users": [{"name": ACCOUNT, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": ACCOUNT}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


INFERENCE_SERVICE = {
    "apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
    "metadata": {"name": "rbac", "namespace": SERVICE_NS},
    "spec": {"model": {"name": "m", "repository": {"configMap": "m-files"}, "backend": "python", "maxBatchSize": 4},
             "slo": {"latencyMs": 200}},
}


@pytest.fixture
def release(control_plane: ControlPlane) -> Any:
    kubeconfig = str(control_plane.kubeconfig)
    out = helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", kubeconfig=kubeconfig)
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        yield
    finally:
        helm("uninstall", RELEASE, "-n", RELEASE_NS, kubeconfig=kubeconfig)
        kubectl_run(kubeconfig, "delete", "namespace", SERVICE_NS, RELEASE_NS, "--wait=false")


def test_the_operator_works_with_only_the_charts_rbac(control_plane: ControlPlane, release: None,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = control_plane.kubeconfig

    def allowed(verb: str, group: str, resource: str, subresource: str = "") -> bool:
        """A SubjectAccessReview for the chart's ServiceAccount (no discovery: works for absent CRDs too)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": f"system:serviceaccount:{RELEASE_NS}:{ACCOUNT}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NS}", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "subresource": subresource}}}
        out = kubectl_run(admin, "create", "-f", "-", "-o", "json", stdin=json.dumps(review))
        assert out.returncode == 0, out.stderr
        return bool(json.loads(out.stdout)["status"].get("allowed"))

    assert allowed("create", "monitoring.coreos.com", "podmonitors")
    assert allowed("patch", "apps", "deployments", "scale")
    assert allowed("patch", "batchpilot.dev", "inferenceservices", "status")
    assert not allowed("delete", "apps", "deployments")
    assert not allowed("update", "batchpilot.dev", "inferenceservices")
    assert not allowed("get", "", "secrets") and not allowed("list", "", "secrets")
    assert not allowed("get", "", "pods", "log") and not allowed("create", "", "pods")
    assert not allowed("list", "", "namespaces") and not allowed("patch", "", "events")

    as_account = service_account_kubeconfig(control_plane, tmp_path / "sa.kubeconfig")
    log = tmp_path / "operator.log"
    # As the chart runs it: electing itself through the Lease in the release's namespace (its Role).
    for name, value in {"BATCHPILOT_LEADER_ELECTION": "true", "BATCHPILOT_LEASE_NAME": ACCOUNT,
                        "POD_NAMESPACE": RELEASE_NS, "POD_NAME": "bp-batchpilot-0"}.items():
        monkeypatch.setenv(name, value)
    with OperatorProcess(control_plane, log, control_interval_s=2.0, kubeconfig=as_account):
        kubectl_run(admin, "create", "namespace", SERVICE_NS)
        applied = kubectl_run(admin, "apply", "-f", "-", stdin=json.dumps(INFERENCE_SERVICE))
        assert applied.returncode == 0, applied.stderr

        def get(*args: str) -> Any:
            out = kubectl_run(admin, "get", *args, "-n", SERVICE_NS, "-o", "json")
            return json.loads(out.stdout) if out.returncode == 0 else None

        def detail() -> str:
            return log.read_text()[-3000:]

        names = ChildNames("rbac")
        children = [("deployment", names.deployment), ("service", names.service), ("configmap", names.config_map),
                    ("poddisruptionbudget", names.pod_disruption_budget)]
        wait_for("the children", lambda: all(get(kind, name) for kind, name in children), 60, detail)
        wait_for("status written", lambda: (get("inferenceservice", "rbac") or {}).get("status", {}).get(
            "observedGeneration") == 1, 60, detail)
        wait_for("a tick's conditions", lambda: any(
            c["type"] == "MetricsAvailable" for c in get("inferenceservice", "rbac")["status"].get("conditions", [])),
            60, detail)
        scaled = kubectl_run(admin, "scale", "inferenceservice/rbac", "-n", SERVICE_NS, "--replicas=2")
        assert scaled.returncode == 0, scaled.stderr
        wait_for("the Deployment scaled by the loop", lambda: get("deployment", "rbac")["spec"]["replicas"] == 2,
                 60, detail)
        wait_for("an Event posted", lambda: any(e["reason"] == "Reconciled" for e in get(
            "events", "--field-selector", "involvedObject.name=rbac")["items"]), 60, detail)
        lease = kubectl_run(admin, "get", "lease", ACCOUNT, "-n", RELEASE_NS, "-o", "json")
        assert lease.returncode == 0, lease.stderr
        assert json.loads(lease.stdout)["spec"]["holderIdentity"] == "bp-batchpilot-0"
    text = log.read_text()
    # A refusal reads "Forbidden" or "(403)"; a bare "403" also matches a log line's milliseconds
    # ("[... 00:01:00,403]": the fresh-clone run of 2026-12-04 failed on exactly that).
    refused = re.search(r"Forbidden|\(403\)|\b403 |status.{0,3}403\b", re.sub(r"^\[[^]]*\]", "", text, flags=re.M))
    assert refused is None, text[-5000:]
