"""Shared fixtures: one real control plane per test session (starting one takes seconds, not minutes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.stack import Sandbox, SandboxConfig


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager; fails (never skips) when the binaries are missing."""
    with ControlPlane(tmp_path_factory.mktemp("k8s") / "control-plane") as cp:
        yield cp


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The whole sandbox (control plane, kubelet with 4 GPUs, Prometheus, operator), shared by the tests
    that need the operator; each such test uses its own namespace."""
    config = SandboxConfig(tmp_path_factory.mktemp("sandbox"), gpus=4)
    with Sandbox(config) as sb:
        yield sb


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    """A CA and certificates of its own, for the HTTPS servers tests start (storage_servers.py)."""
    return certs.generate(tmp_path_factory.mktemp("pki"))
