"""Pod IPs for the sandbox node: each pod gets its own loopback address, so every Triton pod can bind the
standard ports 8000-8002. Addresses other pods or processes already listen on are skipped, and every address in
use is reserved machine-wide (a lock file), so sandboxes running side by side (parallel test workers, a demo
beside the tests) never hand out the same one, even before the first pod's Triton listens.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import tempfile
from collections.abc import Collection
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "batchpilot-pod-ips"
"""One lock file per loopback address; a kubelet holds the lock (flock) of each address it handed out, and the
kernel releases it when the kubelet exits, however it exits."""
LAST = 200
"""The pool ends at 127.0.0.200: tests that start a server of their own bind 127.0.0.201 and above."""


def listening_ips(proc_net_tcp: Path = Path("/proc/net/tcp")) -> set[str]:
    """Loopback addresses something already listens on (another kubelet's pods, a test's server)."""
    ips: set[str] = set()
    try:
        lines = proc_net_tcp.read_text().splitlines()[1:]
    except OSError:
        return ips
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            ip = socket.inet_ntoa(struct.pack("<I", int(fields[1].split(":")[0], 16)))
            if ip.startswith("127."):
                ips.add(ip)
    return ips


class IpPool:
    """Loopback pod IPs 127.0.0.2 upward, one per pod uid; released IPs are reused last; an IP another
    process's pool holds (its lock in lock_dir) is skipped."""

    def __init__(self, first: int = 2, last: int = LAST, lock_dir: Path = LOCK_DIR) -> None:
        self.free = [f"127.0.0.{n}" for n in range(first, last + 1)]
        self.span = f"127.0.0.{first}-{last}"
        self.taken: dict[str, str] = {}
        self.lock_dir = lock_dir
        self._locks: dict[str, int] = {}
        """Per pod uid: the open lock file that reserves its IP."""

    def allocate(self, uid: str, preferred: str | None = None, avoid: Collection[str] = ()) -> str:
        if uid in self.taken:
            return self.taken[uid]
        candidates = [preferred] if preferred in self.free and preferred not in avoid else []
        candidates += [ip for ip in self.free if ip not in avoid]
        ip = next((ip for ip in candidates if self._reserve(uid, ip)), None)
        if ip is None:
            raise RuntimeError(f"no loopback pod IPs left ({self.span}: in use here or reserved by another "
                               f"sandbox in {self.lock_dir})")
        self.free.remove(ip)
        self.taken[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self.taken.pop(uid, None)
        fd = self._locks.pop(uid, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock
        if ip:
            self.free.append(ip)

    def _reserve(self, uid: str, ip: str) -> bool:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / ip, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._locks[uid] = fd
        return True
