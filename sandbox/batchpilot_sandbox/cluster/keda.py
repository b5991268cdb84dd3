"""KEDA in the sandbox: its operator and metrics API server as local processes against the sandbox control
plane, serving `external.metrics.k8s.io` through the API server's aggregation layer, so the real HPA
controller in kube-controller-manager scales what a ScaledObject targets (a peer to compare Batchpilot with).

Opt-in (`SandboxConfig.keda`, or `Keda(...)` directly); binaries and CRDs come from `make keda`.

How the pieces reach each other (learned from KEDA's `config/` manifests and `cmd/adapter/main.go`):
- kube-apiserver -> metrics server: APIService v1beta1.external.metrics.k8s.io names the Service
  keda/keda-metrics-apiserver; with aggregator routing the API server dials the address in that Service's
  Endpoints, verifying the serving cert for `keda-metrics-apiserver.keda.svc` against the APIService caBundle.
  Endpoints reject loopback and link-local IPs, and the sandbox's pod IPs are loopback, so the metrics server
  listens on this host's routable address (`routable_host_ip`).
- metrics server -> operator: mutual-TLS gRPC (the operator's "metrics service") on loopback; both ends load
  ca.crt, tls.crt and tls.key from one cert dir, so one cert from the sandbox CA serves as server and client.
Both run with the sandbox admin kubeconfig (system:masters), so no KEDA RBAC is installed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.kubectl import KubectlError, kubectl
from batchpilot_sandbox.paths import keda_bins_dir
from batchpilot_sandbox.process import free_port, spawn, stop_process, tail

NAMESPACE = "keda"
METRICS_SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"
API_SERVICE = "v1beta1.external.metrics.k8s.io"
EXTERNAL_METRICS_PATH = "/apis/external.metrics.k8s.io/v1beta1"
HOST_IP_ENV = "BATCHPILOT_SANDBOX_HOST_IP"  # override when the default-route address is not the one to use


class KedaError(RuntimeError):
    pass


def routable_host_ip() -> str:
    """This host's source address toward its default route (a UDP connect sends no packet).

    Endpoints may not hold loopback (127.0.0.0/8, ::1) or link-local addresses, so the metrics server
    cannot share the pods' loopback IPs; $BATCHPILOT_SANDBOX_HOST_IP overrides the probe.
    """
    override = os.environ.get(HOST_IP_ENV)
    if override:
        return override
    for family, probe in ((socket.AF_INET, "10.255.255.255"), (socket.AF_INET6, "fd00::ffff")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                ip = ipaddress.ip_address(s.getsockname()[0])
        except OSError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            return str(ip)
    raise KedaError(
        "no routable (non-loopback, non-link-local) address on this host for the KEDA metrics server's "
        f"Endpoints; set {HOST_IP_ENV} to an address of this host that the API server can dial"
    )


def aggregation_objects(host_ip: str, port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Namespace, selector-less Service + Endpoints to host_ip:port, and the APIService, as manifests."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
         "subsets": [{"addresses": [{"ip": host_ip}], "ports": [{"name": "https", "port": port}]}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": API_SERVICE},
         "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                  "versionPriority": 100, "caBundle": base64.b64encode(ca_bundle).decode(),
                  "service": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "port": 443}}},
    ]


class Keda:
    """keda-operator + keda-adapter (metrics API server) for one sandbox control plane."""

    def __init__(self, control_plane: ControlPlane, workdir: Path, detach: bool = False) -> None:
        self.control_plane = control_plane
        self.workdir = workdir
        self.detach = detach
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.host_ip = ""
        self.metrics_port = 0
        self.grpc_port = 0
        self.probe_port = 0
        self.operator_metrics_port = 0

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def operator_metrics(self) -> str:
        """The operator's Prometheus endpoint (keda_scaler_metrics_value etc.), host:port."""
        return f"127.0.0.1:{self.operator_metrics_port}"

    def __enter__(self) -> Keda:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(self.control_plane.kubeconfig, *args, stdin=stdin, check=check, timeout_s=120)

    def start(self, timeout_s: float = 120.0) -> None:
        """Install the CRDs, start both processes, register the APIService; returns once the external
        metrics API answers through kube-apiserver. Raises KedaError naming what failed, with log tails."""
        bins = keda_bins_dir()
        pki = self.control_plane.pki
        if pki is None:
            raise KedaError("the control plane is not started; start it before KEDA")
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.host_ip = routable_host_ip()
        cert_dir = self._certs(pki)
        try:
            self.kubectl("apply", "--server-side", "-f", str(bins / "crds"))
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(bins / "crds"))
            self.grpc_port, self.probe_port, self.operator_metrics_port = free_port(), free_port(), free_port()
            self.metrics_port = free_port(self.host_ip)
            self._start_operator(bins, cert_dir)
            self._start_adapter(bins, cert_dir, pki.ca_cert)
            objects = aggregation_objects(self.host_ip, self.metrics_port, pki.ca_cert.read_bytes())
            self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _certs(self, pki: certs.Pki) -> Path:
        """One cert for both ends of the gRPC link and for serving the APIService, in KEDA's cert-dir layout."""
        cert_dir = self.workdir / "certs"
        svc_names = [f"{n}.{NAMESPACE}.svc" for n in (METRICS_SERVICE, OPERATOR_SERVICE)]
        certs.issue_server(pki, cert_dir, "tls", "keda", [*svc_names, *(f"{n}.cluster.local" for n in svc_names)],
                           ["127.0.0.1", self.host_ip])
        shutil.copy(pki.ca_cert, cert_dir / "ca.crt")
        return cert_dir

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.control_plane.kubeconfig), "WATCH_NAMESPACE": "",
                "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE, "POD_NAMESPACE": NAMESPACE}

    def _start_operator(self, bins: Path, cert_dir: Path) -> None:
        self._spawn("keda-operator", [
            bins / "keda-operator", "--leader-elect=false", "--enable-cert-rotation=false",
            f"--cert-dir={cert_dir}",
            f"--metrics-service-bind-address=127.0.0.1:{self.grpc_port}",
            f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
            f"--metrics-bind-address=127.0.0.1:{self.operator_metrics_port}",
            "--zap-log-level=info", "--zap-encoder=console",
        ])

    def _start_adapter(self, bins: Path, cert_dir: Path, client_ca: Path) -> None:
        kubeconfig = self.control_plane.kubeconfig
        self._spawn("keda-adapter", [
            bins / "keda-adapter", f"--bind-address={self.host_ip}", f"--secure-port={self.metrics_port}",
            f"--cert-dir={cert_dir}", f"--tls-cert-file={cert_dir / 'tls.crt'}",
            f"--tls-private-key-file={cert_dir / 'tls.key'}", f"--client-ca-file={client_ca}",
            f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--metrics-service-address=127.0.0.1:{self.grpc_port}", f"--port={free_port()}",
            "--zap-log-level=info", "--zap-encoder=console",
        ])

    def _spawn(self, name: str, argv: list[str | Path]) -> None:
        self.procs[name] = spawn(argv, self.logs / f"{name}.log", env=self._env(), tie_to_parent=not self.detach)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise KedaError(f"{name} exited with code {proc.returncode}; last log lines:\n"
                                + tail(self.logs / f"{name}.log"))

    def _operator_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _grpc_listening(self) -> bool:
        """The operator's metrics service accepts connections (the adapter's gRPC client retries until then)."""
        try:
            with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=2):
                return True
        except OSError:
            return False

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "nothing tried yet"
        while time.monotonic() < deadline:
            self._check_alive()
            if not self._operator_ready():
                last = f"keda-operator /readyz on 127.0.0.1:{self.probe_port} not 200"
            elif not self._grpc_listening():
                last = f"keda-operator's gRPC metrics service not listening on 127.0.0.1:{self.grpc_port}"
            else:
                try:
                    discovery = json.loads(self.kubectl("get", "--raw", EXTERNAL_METRICS_PATH))
                    if discovery.get("groupVersion") == "external.metrics.k8s.io/v1beta1":
                        return
                    last = f"unexpected discovery document: {discovery}"
                except (KubectlError, json.JSONDecodeError) as e:
                    last = str(e)
            time.sleep(0.5)
        status = self.kubectl("get", "apiservice", API_SERVICE, "-o", "jsonpath={.status.conditions}", check=False)
        raise KedaError(
            f"KEDA not ready after {timeout_s:.0f}s: {last}\nAPIService {API_SERVICE} conditions: {status}\n"
            + "\n".join(f"{n} log:\n{tail(self.logs / f'{n}.log', 15)}" for n in self.procs)
        )

    def stop(self) -> None:
        """Unregister the APIService first (an unavailable one breaks discovery, and with it namespace
        deletion, for everyone still using the cluster), then stop the adapter and the operator."""
        if self.procs and self.control_plane.healthy():
            self.kubectl("delete", "apiservice", API_SERVICE, "--ignore-not-found", "--wait=false", check=False)
        for name in ("keda-adapter", "keda-operator"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, grace_s=10)
