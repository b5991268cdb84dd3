"""Container probes as the kubelet runs them: httpGet, tcpSocket and exec, with thresholds and periods.

A probe's verdict flips only after successThreshold successes or failureThreshold failures in a row.
Readiness and startup probes start failed; liveness starts passing. grpc probes are not modelled (pass).
"""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def resolve_port(port: int | str, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a named port of container {container.get('name')!r}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx already counts as success, as in the kubelet


_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def run_probe(spec: Obj, container: Obj, host: str, rewrite: Callable[[str], str] = str) -> bool:
    """One probe attempt against the container at host (its pod IP)."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "httpGet" in spec:
            get = spec["httpGet"]
            url = f"http://{get.get('host') or host}:{resolve_port(get['port'], container)}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            request = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.32", **headers})
            try:
                with _OPENER.open(request, timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            except urllib.error.HTTPError as err:
                return 300 <= err.code < 400
        if "tcpSocket" in spec:
            sock = spec["tcpSocket"]
            address = (sock.get("host") or host, resolve_port(sock["port"], container))
            with socket.create_connection(address, timeout=timeout):
                return True
        if "exec" in spec:
            argv = [rewrite(a) for a in spec["exec"].get("command") or []]
            return subprocess.run(argv, timeout=timeout, capture_output=True, check=False).returncode == 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    return True


@dataclass
class Prober:
    """State of one probe of one running container; `tick(now)` runs it when due and returns the verdict."""

    spec: Obj
    container: Obj
    host: str
    started_at: float
    passing: bool
    rewrite: Callable[[str], str] = str
    successes: int = 0
    failures: int = 0
    last_run: float | None = field(default=None)

    @classmethod
    def for_kind(
        cls, kind: str, container: Obj, host: str, started_at: float, rewrite: Callable[[str], str] = str
    ) -> Prober | None:
        """Prober for container's `<kind>Probe` (readiness, liveness, startup), or None if it has none."""
        spec = container.get(f"{kind}Probe")
        if not spec:
            return None
        return cls(spec, container, host, started_at, passing=(kind == "liveness"), rewrite=rewrite)

    def due(self, now: float) -> bool:
        if now < self.started_at + float(self.spec.get("initialDelaySeconds", 0)):
            return False
        return self.last_run is None or now >= self.last_run + float(self.spec.get("periodSeconds", 10))

    def tick(self, now: float) -> bool:
        if not self.due(now):
            return self.passing
        self.last_run = now
        if run_probe(self.spec, self.container, self.host, self.rewrite):
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.passing = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold", 3)):
                self.passing = False
        return self.passing

    @property
    def failed_out(self) -> bool:
        """Failures reached failureThreshold (liveness/startup: restart the container)."""
        return self.failures >= int(self.spec.get("failureThreshold", 3))
