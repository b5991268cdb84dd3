"""Why a service's pods are not ready, in words for people: pod states and Triton's reasons -> Ready.

Pure: `adapters/pods.py` reads the pods (and asks Triton about pods that run but are not ready); this module
decides which problem to name. When no replica is ready the most serious problem becomes the condition's
reason; when some are, Ready stays True and the message names what holds back the others.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchpilot.build.names import FETCH_CONTAINER

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                                "RegistryUnavailable", "SignatureValidationFailed"})
CONFIG_ERROR_REASONS = frozenset({"CreateContainerConfigError"})
REASONS = ("ModelLoadFailed", "ModelFetchFailed", "CrashLoopBackOff", "ImagePullFailed",
           "CreateContainerConfigError", "Unschedulable", "Starting")
"""Ready=False reasons, most serious first: a broken model or container outranks a pod waiting for a node."""
FAILURE_REASONS = frozenset(REASONS[:-1])
DETAIL_LIMIT = 400
"""Characters kept of one foreign message (Triton's traceback, a termination log)."""
TERMINAL_PHASES = ("Succeeded", "Failed")
_SIGNALS = {s.value: s.name for s in signal.Signals}


@dataclass(frozen=True)
class ContainerHealth:
    """One entry of a pod's containerStatuses or initContainerStatuses."""

    name: str
    init: bool = False
    image: str = ""
    ready: bool = False
    restarts: int = 0
    running: bool = False
    waiting_reason: str | None = None
    waiting_message: str | None = None
    exit_code: int | None = None
    """Of the current state when it is terminated."""
    terminated_reason: str | None = None
    terminated_message: str | None = None
    last_exit_code: int | None = None
    """Of lastState.terminated: the run before the current one."""
    last_reason: str | None = None
    last_message: str | None = None

    @property
    def completed(self) -> bool:
        return self.exit_code == 0

    @property
    def failed_exit(self) -> tuple[int, str | None, str | None] | None:
        """(exit code, reason, message) of the latest failed run, None when no run failed."""
        if self.exit_code not in (None, 0):
            return self.exit_code, self.terminated_reason, self.terminated_message
        if self.exit_code is None and self.last_exit_code not in (None, 0):
            return self.last_exit_code, self.last_reason, self.last_message
        return None


@dataclass(frozen=True)
class ModelHealth:
    """One model of Triton's repository index (POST /v2/repository/index)."""

    name: str
    state: str = ""
    """READY, LOADING, UNLOADING, UNAVAILABLE, or empty for a model never loaded."""
    reason: str = ""


@dataclass(frozen=True)
class PodHealth:
    name: str
    phase: str = "Pending"
    ready: bool = False
    terminating: bool = False
    unschedulable: str | None = None
    """The scheduler's message when PodScheduled is False with reason Unschedulable."""
    containers: tuple[ContainerHealth, ...] = ()
    """Init containers first, in order, then the main containers."""
    models: tuple[ModelHealth, ...] | None = None
    """Triton's repository index for a pod that runs but is not ready; None when not asked or unreachable."""


@dataclass(frozen=True)
class Problem:
    reason: str
    pod: str
    detail: str


@dataclass(frozen=True)
class Health:
    """What the Ready condition says."""

    ready: bool
    reason: str
    message: str


def _clip(text: str | None) -> str:
    """A foreign message on one line: its first paragraph (Triton appends a traceback), at most DETAIL_LIMIT."""
    if not text:
        return ""
    first = next((p for p in text.strip().split("\n\n") if p.strip()), "")
    flat = " ".join(first.split())
    return flat if len(flat) <= DETAIL_LIMIT else flat[: DETAIL_LIMIT - 3] + "..."


def _last_line(text: str | None) -> str:
    """A termination message's last line: a log tail (FallbackToLogsOnError) ends with the error."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return _clip(lines[-1]) if lines else ""


def _rank(problem: Problem) -> int:
    return REASONS.index(problem.reason)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _model_problem(pod: PodHealth) -> Problem | None:
    for model in pod.models or ():
        if model.state == "UNAVAILABLE" and model.reason and model.reason != "unloaded":
            return Problem("ModelLoadFailed", pod.name,
                           f"model {model.name} failed to load on pod {pod.name}: {_clip(model.reason)}")
    return None


def _exit_text(code: int, reason: str | None) -> str:
    """'exit code 139 (SIGSEGV)', 'exit code 137, OOMKilled': the runtime's reason when it says more than Error."""
    text = f"exit code {code}"
    if code - 128 in _SIGNALS:
        text += f" ({_SIGNALS[code - 128]})"
    return text + (f", {reason}" if reason and reason not in ("Error", "Completed") else "")


def _container_problem(pod: str, c: ContainerHealth) -> Problem | None:
    what = f"{'init container' if c.init else 'container'} {c.name} of pod {pod}"
    if c.waiting_reason in IMAGE_PULL_REASONS:
        message = f": {_clip(c.waiting_message)}" if c.waiting_message else ""
        image = f" {c.image!r}" if c.image else ""
        return Problem("ImagePullFailed", pod, f"{what} cannot pull image{image}: {c.waiting_reason}{message}")
    if c.waiting_reason in CONFIG_ERROR_REASONS:
        return Problem("CreateContainerConfigError", pod, f"{what} cannot start: {_clip(c.waiting_message)}")
    failed = c.failed_exit
    crash_looping = c.waiting_reason == "CrashLoopBackOff" or (failed is not None and not c.ready and
                                                              (c.restarts > 0 or c.init))
    if not crash_looping or c.completed:
        return None
    runs = f"restarted {_plural(c.restarts, 'time')}"
    if failed is None:  # back-off after runs that exited 0
        text = f"{what} keeps exiting ({runs})"
    else:
        code, reason, last_words = failed
        previous = " --previous" if c.exit_code is None else ""  # the failed run is lastState
        text = f"{what} failed ({_exit_text(code, reason)}" + (f"; {runs})" if c.restarts else ")")
        said = _last_line(last_words)
        text += f": {said}" if said else f"; see kubectl logs {pod} -c {c.name}{previous}"
    if c.init and c.name == FETCH_CONTAINER:
        return Problem("ModelFetchFailed", pod, text)
    return Problem("CrashLoopBackOff", pod, text)


def _starting_detail(pod: PodHealth) -> str:
    for c in pod.containers:
        if c.init and not c.completed:
            return f"pod {pod.name}: init container {c.name} " + ("running" if c.running else "waiting")
    for model in pod.models or ():
        if model.state and model.state != "READY":
            return f"pod {pod.name}: model {model.name} {model.state.lower()}"
    for c in pod.containers:
        if not c.init and c.waiting_reason:
            message = f" ({_clip(c.waiting_message)})" if c.waiting_message else ""
            return f"pod {pod.name}: container {c.name} {c.waiting_reason}{message}"
    if pod.phase == "Running":
        return f"pod {pod.name}: Triton not ready yet"
    return f"pod {pod.name}: {pod.phase}"


def pod_problem(pod: PodHealth) -> Problem:
    """Why one pod is not ready: its most serious problem, else what it is still doing (Starting)."""
    found = [p for p in (_model_problem(pod), *(_container_problem(pod.name, c) for c in pod.containers)) if p]
    if pod.unschedulable:
        found.append(Problem("Unschedulable", pod.name, pod.unschedulable))
    if found:
        return min(found, key=_rank)
    return Problem("Starting", pod.name, _starting_detail(pod))


def _summary(problems: Sequence[Problem]) -> str:
    """One clause per reason, most serious first; the first pod's detail stands for the others."""
    parts = []
    for reason in REASONS:
        same = [p for p in problems if p.reason == reason]
        if not same:
            continue
        if reason == "Unschedulable":
            parts.append(f"{_plural(len(same), 'pod')} Pending: {same[0].detail}")
            continue
        more = f" (and {_plural(len(same) - 1, 'more pod')})" if len(same) > 1 else ""
        parts.append(same[0].detail + more)
    return "; ".join(parts)


def assess(pods: Sequence[PodHealth] | None, ready: int, desired: int) -> Health:
    """The Ready condition's status, reason and message from the pods and the replica counts.

    pods None (not known): the counts alone, reason NoReplicaReady when none is ready."""
    if pods is None:
        return Health(ready >= 1, "ReplicasReady" if ready >= 1 else "NoReplicaReady",
                      f"{ready}/{desired} replicas ready")
    waiting = [pod_problem(p) for p in pods
               if not p.ready and not p.terminating and p.phase not in TERMINAL_PHASES]
    head = f"{ready}/{desired} replicas ready"
    summary = _summary(waiting)
    message = f"{head}; {summary}" if summary else head
    if ready >= 1:
        return Health(True, "ReplicasReady", message)
    if not waiting:  # no pod yet, or pods that turned ready since the Deployment was read
        return Health(False, "NoReplicaReady" if desired == 0 else "Starting",
                      message if desired == 0 or pods else f"{head}; no pod exists yet")
    return Health(False, min(waiting, key=_rank).reason, message)


def failure_event(previous: list[dict[str, Any]] | None, ready: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the Warning Event for a Ready condition that just turned to a failure, else None."""
    if ready.get("status") != "False" or ready.get("reason") not in FAILURE_REASONS:
        return None
    before = next((c for c in previous or [] if c.get("type") == "Ready"), None)
    if before is not None and before.get("status") == "False" and before.get("reason") == ready["reason"]:
        return None
    return str(ready["reason"]), str(ready["message"])
