"""Run Prometheus on loopback for the sandbox: config rendering and process control.

Prometheus discovers Triton pods through the sandbox API server (kubernetes_sd, role pod) the same way a
real cluster's Prometheus does, so the operator queries the labels it will meet in production. Debian's
`prometheus` package is built without Kubernetes discovery, so `make prometheus` builds upstream's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from batchpilot.build.names import METRICS_PORT, SERVICE_LABEL
from batchpilot_sandbox.paths import cache_dir
from batchpilot_sandbox.process import free_port, spawn, stop_process, tail

INSTALL_HINT = "run `make prometheus` (builds upstream Prometheus into the cache: hack/build-prometheus.sh)"
# Upstream (hidden) flag: apply discovered target changes each second instead of every 5 s, so tests and
# the demo see new pods sooner. Debian's 2.42 rejects it.
FAST_DISCOVERY = ("--scrape.discovery-reload-interval=1s",)
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"  # what a build without Kubernetes discovery says
TRITON_JOB = "triton-pods"
OPERATOR_JOB = "batchpilot-operator"


class PrometheusError(RuntimeError):
    pass


def find_prometheus() -> Path:
    """The prometheus binary: $BATCHPILOT_PROMETHEUS, else `make prometheus`'s build, else PATH."""
    override = os.environ.get("BATCHPILOT_PROMETHEUS")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(
                f"BATCHPILOT_PROMETHEUS={override} is not a file; unset it or {INSTALL_HINT}"
            )
        return Path(override)
    built = cache_dir() / "prometheus" / "current" / "prometheus"
    if built.is_file():
        return built
    on_path = shutil.which("prometheus")
    if not on_path:
        raise FileNotFoundError(f"prometheus binary not found in {built.parent} nor on PATH; {INSTALL_HINT}")
    return Path(on_path)


def _explain(log_tail: str, binary: Path | str) -> str:
    """A hint when the binary is not the upstream build this module expects (e.g. Debian's), else nothing."""
    if NO_KUBERNETES_SD in log_tail:
        return (
            f"\n{binary} has no Kubernetes service discovery (Debian's package strips it); {INSTALL_HINT}, "
            "or point BATCHPILOT_PROMETHEUS at an upstream build"
        )
    if "unknown long flag" in log_tail:
        return f"\n{binary} is older than the flags asked of it; {INSTALL_HINT}"
    return ""


def _duration(seconds: float) -> str:
    """Prometheus duration string; whole milliseconds because it rejects fractions like '2.5s'."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _meta_label(kube_label: str) -> str:
    """The __meta_kubernetes_pod_label_* name Prometheus gives a pod label (non-alphanumerics become _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in kube_label)


def render_config(
    api_server: str,
    ca_file: str | os.PathLike[str],
    client_cert: str | os.PathLike[str],
    client_key: str | os.PathLike[str],
    scrape_interval_s: float,
    extra_static_targets: list[str],
    namespaces: list[str] | None = None,
) -> dict[str, Any]:
    """prometheus.yml as a dict: Triton pods via kubernetes_sd, plus the operator's own /metrics if given.

    A pod is scraped when annotated `prometheus.io/scrape: "true"`, Running and given a podIP, at
    podIP:`prometheus.io/port` (default 8002) and path `prometheus.io/path` (default /metrics).
    """
    interval = _duration(scrape_interval_s)
    sd: dict[str, Any] = {
        "role": "pod",
        "api_server": api_server,
        "tls_config": {"ca_file": str(ca_file), "cert_file": str(client_cert), "key_file": str(client_key)},
    }
    if namespaces:
        sd["namespaces"] = {"names": list(namespaces)}
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    relabel: list[dict[str, Any]] = [
        {"source_labels": [annotation + "scrape"], "regex": "true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": ".+", "action": "keep"},
        {
            "source_labels": [annotation + "path"],
            "regex": "(.+)",
            "target_label": "__metrics_path__",
            "replacement": "$1",
            "action": "replace",
        },
        # Port: the default first, then the annotation when it holds a number. One target per pod results
        # (Prometheus merges the per-container-port targets, whose labels are now identical).
        {
            "source_labels": ["__meta_kubernetes_pod_ip"],
            "regex": "(.+)",
            "target_label": "__address__",
            "replacement": f"$1:{METRICS_PORT}",
            "action": "replace",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_ip", annotation + "port"],
            "regex": r"(.+);(\d+)",
            "target_label": "__address__",
            "replacement": "$1:$2",
            "action": "replace",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod", "action": "replace"},
        {
            "source_labels": [_meta_label(SERVICE_LABEL)],
            "target_label": "inferenceservice",
            "action": "replace",
        },
    ]
    jobs: list[dict[str, Any]] = [
        {
            "job_name": TRITON_JOB,
            "scrape_interval": interval,
            "scrape_timeout": interval if scrape_interval_s < 10 else "10s",
            "kubernetes_sd_configs": [sd],
            "relabel_configs": relabel,
        }
    ]
    if extra_static_targets:
        jobs.append(
            {
                "job_name": OPERATOR_JOB,
                "scrape_interval": interval,
                "scrape_timeout": interval if scrape_interval_s < 10 else "10s",
                "static_configs": [{"targets": list(extra_static_targets)}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its config, data and log under workdir."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        port: int | None = None,
        extra_args: Sequence[str] = (),
        detach: bool = False,
    ) -> None:
        self.workdir = workdir
        self.detach = detach
        self.config = config
        self.port = port
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise PrometheusError("Prometheus has no port yet; call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _write_config(self, config: dict[str, Any]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(self.config_path)  # atomic, so a reload never reads half a file

    def start(self, timeout: float = 30.0) -> None:
        """Start Prometheus and wait until /-/ready answers 200."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.binary = binary = find_prometheus()
        self._write_config(self.config)
        if self.port is None:
            self.port = free_port()
        argv: list[str | Path] = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
            *self.extra_args,
        ]
        self.proc = spawn(argv, self.log_path, tie_to_parent=not self.detach)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                log = tail(self.log_path)
                raise PrometheusError(
                    f"prometheus exited with code {code}; last log lines:\n{log}"
                    + _explain(log, self.binary or "prometheus")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus not ready after {timeout:.0f}s ({last}); log: {self.log_path}\n"
            + tail(self.log_path)
        )

    def reload(self, config: dict[str, Any]) -> None:
        """Write a new config and apply it through /-/reload; raises with Prometheus' reason if rejected."""
        if self.proc is None or self.proc.poll() is not None:
            raise PrometheusError("prometheus is not running; call start() first")
        self._write_config(config)
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30):
                pass
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace").strip()
            self._write_config(self.config)  # keep the file in step with what is running
            raise PrometheusError(
                f"prometheus rejected the new config ({e.code}): {body}"
                + _explain(body, self.binary or "prometheus")
            ) from e
        self.config = config

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=10)
            self.proc = None
