"""The `batchpilot operator` process against a bare control plane, as the sandbox starts it, and its footprint.

No Prometheus: BATCHPILOT_PROMETHEUS_URL points at a loopback port held bound but never listening, so each
control tick is refused at once and reports MetricsUnavailable instead of waiting on a timeout.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.process import free_port, spawn, stop_process, tail


@dataclass(frozen=True)
class Footprint:
    rss_kib: int
    """Resident memory now (VmRSS)."""
    peak_rss_kib: int
    """Highest resident memory so far (VmHWM)."""
    cpu_s: float
    """User plus system CPU time so far."""


class OperatorProcess:
    """The operator, cluster-wide, with its log in log_path; stopped on exit."""

    def __init__(self, control_plane: ControlPlane, log_path: Path, control_interval_s: float = 15.0,
                 kubeconfig: Path | None = None) -> None:
        self.control_plane = control_plane
        self.kubeconfig = kubeconfig or Path(control_plane.kubeconfig)
        """Whose credentials the operator runs with: the control plane's admin unless given."""
        self.log_path = log_path
        self.control_interval_s = control_interval_s
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._closed_port = socket.socket()

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        self._closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        env = {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": str(self.kubeconfig),
            "BATCHPILOT_PROMETHEUS_URL": f"http://127.0.0.1:{self._closed_port.getsockname()[1]}",
            "BATCHPILOT_CONTROL_INTERVAL_SECONDS": str(self.control_interval_s),
            "BATCHPILOT_METRICS_PORT": str(self.metrics_port),
            "BATCHPILOT_METRICS_ADDRESS": "127.0.0.1",
        }
        self.proc = spawn([sys.executable, "-m", "batchpilot", "operator"], self.log_path, env=env)
        deadline = time.monotonic() + timeout_s
        while not self._metrics_answer():  # served by the startup handler: the operator is up
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not start within {timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.3)

    def _metrics_answer(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=10)
            self.proc = None
        self._closed_port.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def footprint(self) -> Footprint:
        """Memory and CPU of the operator process, from /proc."""
        assert self.proc is not None, "the operator is not running"
        proc = Path("/proc") / str(self.proc.pid)
        fields = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
        stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[11]) + int(stat[12])  # utime, stime (fields 14 and 15 of proc(5))
        return Footprint(rss_kib=int(fields["VmRSS"].split()[0]), peak_rss_kib=int(fields["VmHWM"].split()[0]),
                         cpu_s=ticks / os.sysconf("SC_CLK_TCK"))

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def log_errors(self) -> list[str]:
        """Lines of the operator log at ERROR level or with a traceback, less kopf's retried API requests (such as
        the 429 of a just-installed CRD's watch cache warming up)."""
        if not self.log_path.exists():
            return []
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if ("ERROR" in line and "will retry" not in line) or line.startswith("Traceback")]

    def handler_runs(self) -> dict[str, int]:
        """Successful runs per kopf handler and timer, from its log (a handler id's /field suffix dropped)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        runs = Counter(m.group(1) for m in re.finditer(r"(?:Handler|Timer) '([^'/]+)[^']*' succeeded", text))
        return dict(sorted(runs.items()))
