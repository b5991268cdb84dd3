"""One container as a host process: start, watch, probe, restart with back-off, and report its state.

Processes run in their own session with PR_SET_PDEATHSIG (process.spawn); the death signal is tied to the
*thread* that forked them, so the pod worker thread that starts them also outlives them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot_sandbox.kubelet.container_command import ProcessSpec
from batchpilot_sandbox.kubelet.node_agent import now_rfc3339
from batchpilot_sandbox.kubelet.probes import Prober, run_probe
from batchpilot_sandbox.kubelet.volumes import MountTable
from batchpilot_sandbox.process import spawn

Obj = dict[str, Any]
MAX_BACKOFF_S = 300.0
# The kubelet's cut of a container's log for terminationMessagePolicy FallbackToLogsOnError
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048
BACKOFF_RESET_S = 600.0  # a container that ran this long starts its back-off over, as in the kubelet


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class ContainerSnapshot:
    """Everything a containerStatuses entry needs, copied out of the worker thread."""

    name: str
    image: str
    state: Obj
    last_state: Obj
    ready: bool
    started: bool
    restart_count: int
    container_id: str

    def status(self) -> Obj:
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": self.container_id,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
        }


class ContainerRunner:
    """Drives one container; `tick()` is called by its pod worker about twice a second."""

    def __init__(
        self,
        container: Obj,
        log_path: Path,
        restart_policy: str,
        backoff_base_s: float,
        pod_ip: str,
        grace_s: float,
    ) -> None:
        self.container = container
        self.name: str = container["name"]
        self.log_path = log_path
        self.restart_policy = restart_policy
        self.backoff_base_s = backoff_base_s
        self.host = pod_ip
        self.grace_s = grace_s
        self.backoff_step = 0
        self.stopping = False  # the pod is going away: exits are final
        self.proc: subprocess.Popen[bytes] | None = None
        self.spec: ProcessSpec | None = None
        self.mounts: MountTable | None = None
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.restart_count = 0
        self.started_at = 0.0
        self.log_offset = 0  # where this run's output starts in the log
        self.restart_at: float | None = None
        self.exit_code: int | None = None
        self.probers: dict[str, Prober] = {}
        self.started = False
        self.ready = False

    # -- lifecycle
    def wait(self, reason: str, message: str = "") -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}

    def start(self, spec: ProcessSpec, mounts: MountTable) -> None:
        self.spec, self.mounts = spec, mounts
        self.started_at = time.time()
        self.exit_code = None
        self.restart_at = None
        with open(self.log_path, "ab") as log:
            log.write(f"--- {now_rfc3339()} sandbox: starting {' '.join(spec.argv)}\n".encode())
            self.log_offset = log.tell()
        try:
            self.proc = spawn(spec.argv, self.log_path, env=spec.env, cwd=spec.cwd)
        except OSError as exc:  # as a runtime's StartError: counts as a failed run, retried with back-off
            self._on_exit(128, self.started_at, reason="StartError", message=str(exc))
            return
        self.state = {"running": {"startedAt": _rfc3339(self.started_at)}}
        self.probers = {
            kind: prober
            for kind in ("startup", "liveness", "readiness")
            if (prober := Prober.for_kind(kind, self.container, self.host, self.started_at, mounts.rewrite))
        }
        self.started = "startup" not in self.probers
        self.ready = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def finished(self) -> bool:
        """Exited and will not be restarted."""
        return self.exit_code is not None and self.restart_at is None

    def _restarts_allowed(self, exit_code: int) -> bool:
        if self.stopping:
            return False
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and exit_code != 0)

    def _on_exit(self, exit_code: int, now: float, reason: str = "", message: str = "") -> None:
        terminated: Obj = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": _rfc3339(self.started_at),
            "finishedAt": _rfc3339(now),
            "containerID": self.container_id,
        }
        if message:
            terminated["message"] = message
        if exit_code < 0:
            terminated.update(exitCode=128 - exit_code, signal=-exit_code)
        fallback = self.container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and fallback and terminated["exitCode"] != 0 and (tail := self._log_tail()):
            terminated["message"] = tail
        self.exit_code = int(terminated["exitCode"])
        self.proc = None
        self.ready = False
        if not self._restarts_allowed(self.exit_code):
            self.state = {"terminated": terminated}
            return
        if now - self.started_at >= BACKOFF_RESET_S:
            self.backoff_step = 0
        delay = min(MAX_BACKOFF_S, self.backoff_base_s * 2**self.backoff_step)
        self.backoff_step += 1
        self.restart_at = now + delay
        self.last_state = {"terminated": terminated}
        self.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={self.name}",
            }
        }

    def tick(self, now: float) -> None:
        """Notice exits, restart after back-off, run due probes."""
        if self.proc is not None and self.proc.poll() is not None:
            # As when a container's init process dies, the rest of the container goes too (Triton's stubs).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._on_exit(self.proc.returncode, now)
        if self.restart_at is not None and now >= self.restart_at and self.spec and self.mounts:
            self.restart_count += 1
            self.start(self.spec, self.mounts)
            return
        if not self.running:
            return
        startup = self.probers.get("startup")
        if startup and not self.started:
            self.started = startup.tick(now)
            if startup.failed_out:
                self.kill(self.grace_s)
            return
        liveness = self.probers.get("liveness")
        if liveness and not liveness.tick(now):
            self.kill(self.grace_s)
            return
        readiness = self.probers.get("readiness")
        self.ready = readiness.tick(now) if readiness else True

    def _log_tail(self) -> str:
        """The end of this run's output, as the kubelet puts it in the message under FallbackToLogsOnError."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                output = log.read()
        except OSError:
            return ""
        lines = output[-FALLBACK_LOG_BYTES:].decode(errors="replace").splitlines()
        return "\n".join(lines[-FALLBACK_LOG_LINES:])

    # -- stopping
    def run_pre_stop(self, deadline: float) -> None:
        """The container's preStop hook, as the kubelet runs it before SIGTERM: sleep, httpGet or exec,
        within the grace period (deadline, time.monotonic()). A failed hook is logged and stopping goes on.

        This is what lets a Service drop a terminating pod before its server stops: without it the process
        gets SIGTERM while clients that have not yet seen the pod go still send to it."""
        hook = (self.container.get("lifecycle") or {}).get("preStop")
        if not hook or not self.running:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if "sleep" in hook:
            time.sleep(min(remaining, float(hook["sleep"].get("seconds", 0))))
            return
        rewrite = self.mounts.rewrite if self.mounts is not None else str
        if not run_probe({**hook, "timeoutSeconds": remaining}, self.container, self.host, rewrite):
            with open(self.log_path, "ab") as log:
                log.write(f"--- {now_rfc3339()} sandbox: preStop hook failed (FailedPreStopHook)\n".encode())

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def kill(self, grace_s: float) -> None:
        """SIGTERM, SIGKILL after grace_s; the exit is then handled by tick like any other."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    # -- reporting
    @property
    def container_id(self) -> str:
        pid = self.proc.pid if self.proc is not None else 0
        return f"sandbox://{self.name}-{pid}" if pid else ""

    def snapshot(self) -> ContainerSnapshot:
        running = self.running
        return ContainerSnapshot(
            name=self.name,
            image=self.container.get("image", ""),
            state=dict(self.state),
            last_state=dict(self.last_state),
            ready=running and self.started and self.ready,
            started=running and self.started,
            restart_count=self.restart_count,
            container_id=self.container_id,
        )
