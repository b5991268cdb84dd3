"""kubectl against a local cluster, and the CRD install every harness needs (sandbox, bench, tests)."""

from __future__ import annotations

import os
import subprocess

import yaml

from batchpilot.api.crd import crd


class KubectlError(RuntimeError):
    """kubectl failed; the message is kubectl's own."""


def kubectl(kubeconfig: str | os.PathLike[str], *args: str, stdin: str | None = None, check: bool = True,
            timeout_s: float = 300) -> str:
    """Run kubectl with args against kubeconfig's cluster; raises with kubectl's message when check and it fails."""
    done = subprocess.run(["kubectl", f"--kubeconfig={os.fspath(kubeconfig)}", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def install_crd(kubeconfig: str | os.PathLike[str]) -> None:
    """The InferenceService CRD generated from the API models, applied and Established (idempotent)."""
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd()))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd()['metadata']['name']}")
