"""Leader election on a real Lease of the local API server: two electors (threads of this process, each with its
own client) with client-go's default timing. Exactly one leads at a time; when the leader stops renewing without
releasing (as a SIGKILL leaves it), the other takes over once the lease expired, within a lease duration and two
retry periods (one to see the last renewal, one to try after expiry). Also the
readiness endpoint of the operator's metrics server, and the 409 a stale write gets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import config

from batchpilot import metrics
from batchpilot.adapters.lease import LeaseClient, LeaseConflict
from batchpilot.election import JITTER_FACTOR, LeaseRecord, Timing
from batchpilot.leadership import Leadership
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.process import free_port
from support import http_status, kubectl_run

T = Timing()
NAMESPACE = "default"
API_SLACK_S = 1.0
"""A read plus a write on the local API server, and the sampling period, with room to spare."""


def lease_client(control_plane: ControlPlane, name: str) -> LeaseClient:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    return LeaseClient(api, NAMESPACE, name, T.retry_period_s)


@pytest.fixture
def electors(control_plane: ControlPlane) -> Iterator[tuple[Leadership, Leadership]]:
    name = f"election-{int(time.time())}"
    a = Leadership(lease_client(control_plane, name), "elector-a", T)
    b = Leadership(lease_client(control_plane, name), "elector-b", T)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        kubectl_run(control_plane.kubeconfig, "delete", "lease", name, "-n", NAMESPACE, "--ignore-not-found")


def test_one_leader_at_a_time_and_a_takeover_after_the_leader_dies(electors: tuple[Leadership, Leadership]) -> None:
    a, b = electors
    a.start()
    b.start()
    samples: list[tuple[bool, bool]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        samples.append((a.leading(), b.leading()))
        time.sleep(0.05)
    assert not any(x and y for x, y in samples), "two leaders at once"
    first = next(i for i, (x, y) in enumerate(samples) if x or y)
    assert first * 0.05 < 2 * API_SLACK_S, "nobody acquired the free Lease at once"
    led = {x for x, _ in samples[first:]}
    assert len(led) == 1, "the leadership changed hands although the leader kept renewing"
    leader, standby = (a, b) if samples[-1][0] else (b, a)
    assert standby.ready() and leader.ready()

    ready_port = free_port()
    metrics.serve(ready_port, "127.0.0.1", standby.ready)
    assert http_status(f"http://127.0.0.1:{ready_port}/readyz") == 200  # a standby that reads the Lease
    assert http_status(f"http://127.0.0.1:{ready_port}/healthz") == 200
    assert http_status(f"http://127.0.0.1:{ready_port}/metrics") == 200

    stored = standby.lease.read()
    assert stored is not None and stored.record.holder == leader.identity
    killed = time.monotonic()
    leader.stop()  # renewals end, the Lease still names it: what a SIGKILL leaves behind
    while not standby.leading():
        assert time.monotonic() - killed < T.lease_duration_s + 3 * T.retry_period_s + API_SLACK_S, "no takeover"
        time.sleep(0.05)
    takeover_s = time.monotonic() - killed
    print(f"takeover after {takeover_s:.2f}s (lease {T.lease_duration_s:g}s, retry {T.retry_period_s:g}s)")
    # Not before the lease expired (the last renewal was at most a retry period before the stop). At the latest,
    # the lease duration plus two jittered retry periods: the standby sees the last renewal up to one retry after
    # it was written, and counts the lease from then; its first attempt after expiry is up to one retry later.
    assert T.lease_duration_s - T.retry_period_s <= takeover_s <= \
        T.lease_duration_s + 2 * JITTER_FACTOR * T.retry_period_s + API_SLACK_S
    after = standby.lease.read()
    assert after is not None and after.record.holder == standby.identity
    assert after.record.transitions == stored.record.transitions + 1
    assert after.record.acquire_time != stored.record.acquire_time


def test_a_write_with_a_stale_resource_version_is_a_conflict(control_plane: ControlPlane) -> None:
    name = f"stale-{int(time.time())}"
    client = lease_client(control_plane, name)
    stamp = "2026-11-24T20:00:00.000000Z"
    try:
        client.write(LeaseRecord("x", 15, stamp, stamp, 0), None)
        with pytest.raises(LeaseConflict):
            client.write(LeaseRecord("y", 15, stamp, stamp, 0), None)  # it exists: a create is a 409
        first = client.read()
        assert first is not None
        client.write(LeaseRecord("x", 15, stamp, "2026-11-24T20:00:02.000000Z", 0), first.resource_version)
        with pytest.raises(LeaseConflict):
            client.write(LeaseRecord("y", 15, stamp, stamp, 1), first.resource_version)
        last = client.read()
        assert last is not None and last.record.holder == "x" and last.record.renew_time.startswith(
            "2026-11-24T20:00:02.000000")
    finally:
        kubectl_run(control_plane.kubeconfig, "delete", "lease", name, "-n", NAMESPACE, "--ignore-not-found")
