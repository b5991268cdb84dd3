"""Where the sandbox keeps its cache (built binaries) and its run state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_HINT = "run `make k8s-bins` (builds etcd, kube-apiserver, kube-controller-manager and helm once)"


def cache_dir() -> Path:
    return Path(os.environ.get("BATCHPILOT_CACHE", Path.home() / ".cache" / "batchpilot"))


def k8s_bins_dir() -> Path:
    """Directory holding etcd, kube-apiserver and kube-controller-manager.

    KUBEBUILDER_ASSETS wins when set, as in controller-runtime's envtest.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    base = Path(assets) if assets else cache_dir() / "k8s-bins" / "current"
    missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager") if not (base / b).exists()]
    if missing:
        raise FileNotFoundError(f"control-plane binaries missing in {base}: {', '.join(missing)}; {REPO_HINT}")
    return base


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
    base = cache_dir() / "keda-bins" / "current"
    missing = [p for p in ("keda-operator", "keda-adapter", "crds") if not (base / p).exists()]
    if missing:
        raise FileNotFoundError(f"KEDA missing in {base}: {', '.join(missing)}; {KEDA_HINT}")
    return base
