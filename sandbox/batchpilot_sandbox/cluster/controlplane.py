"""A real local Kubernetes control plane: etcd, kube-apiserver (RBAC on, aggregation layer on) and
kube-controller-manager (its HPA controller at the default 15 s sync).

Binaries come from `make k8s-bins` (or KUBEBUILDER_ASSETS). Each start gets free loopback ports, a fresh
PKI and a kubeconfig with an admin (system:masters) client certificate.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import yaml

from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.paths import k8s_bins_dir
from batchpilot_sandbox.process import free_port, pid_alive, spawn, stop_pid, stop_process, tail

SERVICE_CIDR = "10.96.0.0/16"  # allocated to Services only; nothing routes to it in the sandbox


class ControlPlaneError(RuntimeError):
    pass


def aggregation_flags(pki: certs.Pki) -> list[str]:
    """kube-apiserver flags for the aggregation layer (APIServices served by e.g. KEDA's metrics server).

    The API server proxies to an extension API server with the front-proxy client cert and the caller's
    identity in X-Remote-* headers, and publishes the front-proxy CA in kube-system's
    extension-apiserver-authentication ConfigMap so the extension server can trust those headers. With
    aggregator routing it dials the Service's Endpoints directly: the sandbox routes no Service IPs.
    """
    return [
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        f"--requestheader-allowed-names={certs.FRONT_PROXY_CLIENT}",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
        "--enable-aggregator-routing=true",
    ]


@dataclass
class ControlPlaneState:
    """What `batchpilot-sandbox status|down` needs to find a detached control plane again."""

    server: str
    kubeconfig: str
    pids: dict[str, int]


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, for tests and the sandbox."""

    def __init__(self, workdir: Path, bins: Path | None = None, detach: bool = False,
                 service_account_tokens: bool = False) -> None:
        """service_account_tokens: run the ServiceAccount admission plugin, so pods get their ServiceAccount's
        token mounted (in-cluster clients on a real node need it). Off by default, as the sandbox has always run:
        its kubelet's pods use the operator's kubeconfig, not tokens."""
        self.workdir = workdir
        self.bins = bins
        self.detach = detach
        self.service_account_tokens = service_account_tokens
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str | Path]] = {}
        self.pki: certs.Pki | None = None
        self.server = ""
        self.kubeconfig = workdir / "kubeconfig"

    # -- paths other components need (Prometheus, kubelet, tests)
    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.workdir / "pki" / "admin.crt"

    @property
    def client_key(self) -> Path:
        return self.workdir / "pki" / "admin.key"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self, timeout_s: float = 180.0) -> None:
        bins = self.bins or k8s_bins_dir()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.pki = pki = certs.generate(self.workdir / "pki")
        logs = self.workdir / "logs"
        try:
            etcd_port, peer_port = free_port(), free_port()
            etcd_url = f"http://127.0.0.1:{etcd_port}"
            self._spawn("etcd", [
                bins / "etcd", "--name=sandbox", f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=sandbox=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync", "--log-level=warn",
            ], logs)
            api_port = free_port()
            self.server = f"https://127.0.0.1:{api_port}"
            self._spawn("kube-apiserver", [
                bins / "kube-apiserver", f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.server_cert}", f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                *([] if self.service_account_tokens else ["--disable-admission-plugins=ServiceAccount"]),
                "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
                *aggregation_flags(pki),
            ], logs)
            self._write_kubeconfig(pki)
            self._wait_ready(timeout_s)
            self._spawn("kube-controller-manager", [
                bins / "kube-controller-manager", f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_cert}",
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle-controller",
                "--profiling=false", "--v=1",
            ], logs)
            self._save_state()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str | Path], logs: Path) -> None:
        self._argv[name] = argv
        self.procs[name] = spawn(argv, logs / f"{name}.log", tie_to_parent=not self.detach)

    def restart_apiserver(self, down_s: float = 0.0, timeout_s: float = 120.0) -> None:
        """Stop kube-apiserver (SIGTERM, as a rolling control-plane upgrade does), keep it down for down_s, and
        start it again with the same flags: same port, certificates and etcd, so clients reconnect to the address
        they know. Returns once it is ready again (fault tests: watches and requests fail meanwhile)."""
        proc = self.procs.pop("kube-apiserver", None)
        if proc is None:
            raise ControlPlaneError("kube-apiserver is not running in this process: nothing to restart")
        stop_process(proc, grace_s=10)
        time.sleep(down_s)
        self._spawn("kube-apiserver", self._argv["kube-apiserver"], self.workdir / "logs")
        self._wait_ready(timeout_s)
        self._save_state()

    def _write_kubeconfig(self, pki: certs.Pki) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "sandbox", "preferences": {},
            "clusters": [{"name": "sandbox", "cluster": {
                "server": self.server, "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode}; last log lines:\n"
                        + tail(self.workdir / "logs" / f"{name}.log"))
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=self._ssl(), timeout=3) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.3)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout_s:.0f}s ({last}); logs in "
                                f"{self.workdir / 'logs'}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", context=self._ssl(), timeout=3) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _save_state(self) -> None:
        state = ControlPlaneState(self.server, str(self.kubeconfig), {n: p.pid for n, p in self.procs.items()})
        (self.workdir / "state.json").write_text(json.dumps(asdict(state), indent=1))

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, grace_s=10)

    @staticmethod
    def load_state(workdir: Path) -> ControlPlaneState | None:
        path = workdir / "state.json"
        if not path.exists():
            return None
        return ControlPlaneState(**json.loads(path.read_text()))

    @staticmethod
    def stop_detached(workdir: Path) -> list[str]:
        """Stop a control plane started by another process (`sandbox down`); returns what was stopped."""
        state = ControlPlane.load_state(workdir)
        stopped: list[str] = []
        if state is None:
            return stopped
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            pid = state.pids.get(name)
            if pid and pid_alive(pid):
                stop_pid(pid)
                stopped.append(name)
        return stopped
