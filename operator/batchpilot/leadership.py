"""Who may act: a background thread runs the election (election.py) against the Lease every retry period; kopf
starts once this replica leads and stops when it loses the Lease (cli.py), and the kopf handlers also ask
`leading()` before they write anything (a deadline by the clock, so they stop even while kopf is stopping).

Why a thread and not kopf's peering: kopf's peering pauses an operator while a higher-priority peer runs and is
documented for one active replica (it is no leader election: peers of equal priority all pause). A thread keeps
the election apart from kopf's event loop, so a slow handler cannot delay a renewal.

Why kopf does not run on a standby: kopf writes on its own, whatever the handlers do: it adds the finalizer its
timers require to every InferenceService, and records a handler that returned as done (diff-base annotations).
A standby with kopf watching raced the leader for that finalizer (seen in the sandbox: the loser's JSON patch
fails its resourceVersion test and kopf waits for an event that never comes, so the leader never reconciled).
The price is kopf's start on takeover (about a second: list, then resume every service, as a restart does).

The lease is not released on a graceful stop (client-go's ReleaseOnCancel is opt-in for the same reason): kopf
cannot tell when a handler still running in its thread pool is done, so the standby waits out the lease.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from batchpilot.adapters.lease import LeaseConflict, ReadLease, micro_time
from batchpilot.election import (
    JITTER_FACTOR,
    Elector,
    LeaseRecord,
    Move,
    Step,
    Timing,
    confirmed,
    decide,
    failed,
)

log = logging.getLogger("batchpilot.leadership")
WAIT_POLL_S = 0.25
"""How often a handler waiting for leadership looks again: a takeover acts within a quarter second."""


class LeaseStore(Protocol):
    def read(self) -> ReadLease | None: ...
    def write(self, record: LeaseRecord, resource_version: str | None) -> None: ...


def identity(pod_name: str) -> str:
    """The pod's name in a cluster (downward API POD_NAME), else host and process id (two local processes)."""
    return pod_name or f"{socket.gethostname()}-{os.getpid()}"


class Leadership:
    """The election of one replica. Without a Lease (leader election off) use AlwaysLeader instead."""

    def __init__(self, lease: LeaseStore, me: str, timing: Timing, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] = lambda _: None) -> None:
        self.lease, self.timing, self.clock, self.on_change = lease, timing, clock, on_change
        self.elector = Elector(me)
        self._until: float | None = None
        self._read_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def identity(self) -> str:
        return self.elector.identity

    def leading(self) -> bool:
        """True until the renew deadline of the last successful renewal, by the clock (not by the thread)."""
        until = self._until
        return until is not None and self.clock() < until

    def ready(self) -> bool:
        """The leader, or a standby that read the Lease within a lease duration (it can take over)."""
        read_at = self._read_at
        return self.leading() or (read_at is not None and self.clock() - read_at < self.timing.lease_duration_s)

    async def wait_leading(self) -> None:
        while not self.leading():
            await asyncio.sleep(WAIT_POLL_S)

    def step(self) -> Move:
        """One attempt: read the Lease, decide, write if needed."""
        started = self.clock()
        before = self.leading()
        try:
            read = self.lease.read()
        except Exception as e:  # noqa: BLE001 - any failure to read is a failed attempt, retried
            log.warning("cannot read the Lease: %s", e)
            result = failed(self.elector, started, self.timing)
        else:
            self._read_at = started
            result = decide(self.elector, read.record if read else None, started, self.timing,
                            micro_time(dt.datetime.now(dt.UTC)))
            if result.write is not None:
                result = self._write(result, read, started)
        self.elector = result.elector
        self._until = result.elector.leader_until(self.timing)
        now_leading = self.leading()
        if now_leading != before:
            observed = result.elector.observed
            if now_leading:
                log.info("became leader as %s (lease transitions %d)", self.identity,
                         observed.transitions if observed else 0)
            else:
                log.warning("stopped leading as %s (%s); standing by", self.identity, result.move.value)
            self.on_change(now_leading)
        return result.move

    def _write(self, result: Step, read: ReadLease | None, started: float) -> Step:
        assert result.write is not None
        try:
            self.lease.write(result.write, read.resource_version if read else None)
        except LeaseConflict as e:
            log.info("%s", e)
            return failed(result.elector, self.clock(), self.timing)
        except Exception as e:  # noqa: BLE001 - an API error is a failed attempt, retried until the deadline
            log.warning("cannot write the Lease: %s", e)
            return failed(result.elector, self.clock(), self.timing)
        return Step(result.move, confirmed(result.elector, result.write, started))

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            self.step()
            delay = self.timing.retry_period_s
            if self.elector.renewed_at is None:  # candidates spread out (client-go's JitterUntil)
                delay *= random.uniform(1.0, JITTER_FACTOR)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (without releasing the Lease: see the module's docstring); leading() ends at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.retry_period_s + 10)
        self._until = None


class AlwaysLeader:
    """Leader election off (BATCHPILOT_LEADER_ELECTION false): the only replica always acts."""

    identity = ""

    def leading(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    async def wait_leading(self) -> None:
        return None

    def stop(self) -> None:
        return None
