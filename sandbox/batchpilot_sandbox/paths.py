"""Where the sandbox keeps its cache (built binaries) and its run state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_HINT = "run `make k8s-bins` (builds etcd, kube-apiserver, kube-controller-manager and helm once)"


def cache_dir() -> Path:
    return Path(os.environ.get("BATCHPILOT_CACHE", Path.home() / ".cache" / "batchpilot"))


def built(base: Path, names: tuple[str, ...], what: str, hint: str) -> Path:
    """base, once every one of names is in it; else FileNotFoundError naming what is missing and the make target."""
    missing = [n for n in names if not (base / n).exists()]
    if missing:
        raise FileNotFoundError(f"{what} missing in {base}: {', '.join(missing)}; {hint}")
    return base


def k8s_bins_dir() -> Path:
    """Directory holding etcd, kube-apiserver and kube-controller-manager.

    KUBEBUILDER_ASSETS wins when set, as in controller-runtime's envtest.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    base = Path(assets) if assets else cache_dir() / "k8s-bins" / "current"
    return built(base, ("etcd", "kube-apiserver", "kube-controller-manager"), "control-plane binaries", REPO_HINT)


def helm_binary() -> Path:
    path = k8s_bins_dir() / "helm"
    if not path.exists():
        raise FileNotFoundError(f"helm missing in {path.parent}; {REPO_HINT}")
    return path


def default_workdir() -> Path:
    return Path(os.environ.get("BATCHPILOT_SANDBOX_DIR", Path.cwd() / ".sandbox"))


KEDA_HINT = "run `make keda` (builds KEDA's operator and metrics server and copies its CRDs: hack/build-keda.sh)"


def keda_bins_dir() -> Path:
    """Directory holding keda-operator, keda-adapter and crds/ from `make keda`."""
    return built(cache_dir() / "keda-bins" / "current", ("keda-operator", "keda-adapter", "crds"), "KEDA", KEDA_HINT)


NODE_BINS_HINT = "run `make node-bins` (builds kubelet, kube-scheduler and pause: hack/build-node-bins.sh)"


def node_bins_dir() -> Path:
    """Directory holding kubelet, kube-scheduler and pause from `make node-bins` (the real node)."""
    return built(cache_dir() / "node-bins" / "current", ("kubelet", "kube-scheduler", "pause"), "real-node binaries",
                 NODE_BINS_HINT)
