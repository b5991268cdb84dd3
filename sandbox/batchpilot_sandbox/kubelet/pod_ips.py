"""Pod IPs for the sandbox node: each pod gets its own loopback address, so every Triton pod can bind the
standard ports 8000-8002. Addresses other pods or processes already listen on are skipped.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection
from pathlib import Path


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
    """Loopback pod IPs 127.0.0.2 upward, one per pod uid; released IPs are reused last."""

    def __init__(self, first: int = 2, last: int = 254) -> None:
        self.free = [f"127.0.0.{n}" for n in range(first, last + 1)]
        self.taken: dict[str, str] = {}

    def allocate(self, uid: str, preferred: str | None = None, avoid: Collection[str] = ()) -> str:
        if uid in self.taken:
            return self.taken[uid]
        candidates = [preferred] if preferred in self.free and preferred not in avoid else []
        candidates += [ip for ip in self.free if ip not in avoid]
        if not candidates:
            raise RuntimeError("no loopback pod IPs left (127.0.0.2-254)")
        ip = candidates[0]
        self.free.remove(ip)
        self.taken[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self.taken.pop(uid, None)
        if ip:
            self.free.append(ip)
