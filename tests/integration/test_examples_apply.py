"""Every file in examples/ is accepted by the real API server with the generated CRD installed, applied with
kubectl as a model owner would (server-side dry run: schema, bounds and CEL rules run, nothing is stored)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from batchpilot_sandbox.cluster.controlplane import ControlPlane
from support import install_crd, kubectl_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
NAMESPACE = "examples"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Path:
    """The API server's kubeconfig, with the CRD installed and NAMESPACE created."""
    return install_crd(control_plane.kubeconfig, NAMESPACE)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_api_server_accepts_the_example(api: Path, path: Path) -> None:
    done = kubectl_run(api, "apply", "--dry-run=server", "-n", NAMESPACE, "-f", str(path))
    assert done.returncode == 0, f"{path.name}: {done.stderr}"
    kinds = [d["kind"] for d in yaml.safe_load_all(path.read_text()) if d]
    assert done.stdout.count("(server dry run)") == len(kinds), done.stdout


def test_the_full_example_round_trips_unchanged(api: Path) -> None:
    """What full.yaml sets is stored as written: no field is pruned as unknown or rewritten."""
    full = ROOT / "examples" / "full.yaml"
    done = kubectl_run(api, "apply", "--dry-run=server", "-n", NAMESPACE, "-f", str(full), "-o", "yaml")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["spec"] == yaml.safe_load(full.read_text())["spec"]


def test_the_readme_kubectl_commands_work_on_the_minimal_example(api: Path) -> None:
    """`kubectl get bpis` shows the documented columns; `kubectl scale` pins spec.replicas; removing it unpins."""
    minimal = ROOT / "examples" / "minimal.yaml"
    name = yaml.safe_load(minimal.read_text())["metadata"]["name"]
    ns = ("-n", NAMESPACE)
    assert kubectl_run(api, "apply", *ns, "-f", str(minimal)).returncode == 0
    try:
        header = kubectl_run(api, "get", "bpis", *ns).stdout.splitlines()[0].split()
        assert header == ["NAME", "READY", "DESIRED", "REPLICAS-BY", "LATENCY-MS", "SLO-MS", "DELAY-US", "BATCH",
                          "STATUS", "AGE"]
        done = kubectl_run(api, "scale", *ns, f"bpis/{name}", "--replicas=3")
        assert done.returncode == 0, done.stderr
        spec = yaml.safe_load(kubectl_run(api, "get", "bpis", *ns, name, "-o", "yaml").stdout)["spec"]
        assert spec["replicas"] == 3
        scale = kubectl_run(api, "get", f"bpis/{name}", *ns, "--subresource=scale",
                            "-o", "jsonpath={.spec.replicas}")
        assert scale.stdout == "3", scale.stderr
        done = kubectl_run(api, "patch", "bpis", *ns, name, "--type=json",
                           "-p", '[{"op": "remove", "path": "/spec/replicas"}]')
        assert done.returncode == 0, done.stderr
        spec = yaml.safe_load(kubectl_run(api, "get", "bpis", *ns, name, "-o", "yaml").stdout)["spec"]
        assert "replicas" not in spec
    finally:
        kubectl_run(api, "delete", "bpis", *ns, name, "--wait=false")
