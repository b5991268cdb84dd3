"""Freeing a sandbox namespace between runs (closed-loop tests, `bench.compare_real`)."""

from __future__ import annotations

import time

from batchpilot_sandbox.cluster.stack import Sandbox


def release_namespace(sandbox: Sandbox, namespace: str, timeout_s: float = 180) -> None:
    """Delete a namespace and return once its pods are gone (their GPUs free again), without waiting for
    the namespace itself: with Triton pods in it, `kubectl delete namespace --wait` took ~36 s per test in make
    test, though the pods go in seconds (preStop, then SIGTERM); the namespace controller comes back to it later
    (apparently after about the pods' 40 s grace period). A namespace name is not reused within a session."""
    sandbox.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sandbox.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).strip():
            return
        time.sleep(0.5)
