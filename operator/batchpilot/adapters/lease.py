"""The leader-election Lease (coordination.k8s.io/v1): read it, create it, replace it under optimistic concurrency.

A replace carries the resourceVersion that was read: if another replica wrote the Lease since, the API server
answers 409 Conflict and the write is refused (LeaseConflict), so two candidates can never both take it.
Bodies are plain JSON, and times are written as the MicroTime the API expects (RFC 3339, 6 fractional digits).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from batchpilot.election import LeaseRecord


class LeaseConflict(Exception):
    """Another replica created or wrote the Lease first (409): this attempt lost the race."""


def micro_time(at: dt.datetime) -> str:
    """A MicroTime: '2026-11-24T20:01:02.000345Z' (the API refuses an offset-less or short fraction form)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ReadLease:
    record: LeaseRecord
    resource_version: str
    """metadata.resourceVersion, sent back with the replace."""


def _record(obj: dict[str, Any]) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(holder=str(spec.get("holderIdentity") or ""),
                       lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
                       acquire_time=str(spec.get("acquireTime") or ""), renew_time=str(spec.get("renewTime") or ""),
                       transitions=int(spec.get("leaseTransitions") or 0))


class LeaseClient:
    """One named Lease. Every call is bounded by timeout_s, so a hung API server cannot hold the renewal loop.

    Requests go through the ApiClient's raw transport (as the dynamic client's do), not CoordinationV1Api: that
    coerces a body into its V1Lease model, re-rendering times with isoformat(), which drops a zero fraction
    ('...T20:00:00+00:00') that the API then refuses as a MicroTime (400)."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, timeout_s: float) -> None:
        self.api = api
        self.namespace, self.name, self.timeout_s = namespace, name, timeout_s
        self._leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body else {})}
        request = self.api.param_serialize(method, path, header_params=headers, body=body,
                                           auth_settings=["BearerToken"])
        resp = self.api.call_api(*request, _request_timeout=self.timeout_s)
        resp.read()
        if not 200 <= resp.status <= 299:
            self.api.response_deserialize(resp, {})  # raises the ApiException of the status, with its message
        return cast(dict[str, Any], json.loads(resp.data or b"{}"))

    def read(self) -> ReadLease | None:
        """The Lease, None when it does not exist."""
        try:
            obj = self._request("GET", f"{self._leases}/{self.name}")
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return ReadLease(_record(obj), str(obj["metadata"]["resourceVersion"]))

    def _body(self, record: LeaseRecord, resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": {
            "holderIdentity": record.holder, "leaseDurationSeconds": record.lease_duration_s,
            "acquireTime": record.acquire_time, "renewTime": record.renew_time,
            "leaseTransitions": record.transitions}}

    def write(self, record: LeaseRecord, resource_version: str | None) -> None:
        """Create the Lease (resource_version None) or replace the version that was read; LeaseConflict when
        another replica got there first."""
        try:
            if resource_version is None:
                self._request("POST", self._leases, self._body(record, None))
            else:
                self._request("PUT", f"{self._leases}/{self.name}", self._body(record, resource_version))
        except ApiException as e:
            if e.status == 409:
                raise LeaseConflict(f"Lease {self.namespace}/{self.name} was written by another replica") from None
            raise
