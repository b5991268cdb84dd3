"""Operator settings: one typed model, filled from BATCHPILOT_* environment variables and flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from batchpilot.build.children import DEFAULT_FETCHER_IMAGE
from batchpilot.election import Timing


class OperatorSettings(BaseSettings):
    """Defaults suit a real cluster; the sandbox and tests shorten the periods."""

    model_config = SettingsConfigDict(env_prefix="BATCHPILOT_")

    prometheus_url: str = Field("http://prometheus-operated.monitoring.svc:9090",
                                description="Prometheus that scrapes the Triton pods.")
    control_interval_seconds: float = Field(15.0, gt=0, description="Period of the replica control loop.")
    metrics_window_seconds: float = Field(30.0, gt=0, description="Window of rate() in PromQL queries.")
    fetcher_image: str = Field(DEFAULT_FETCHER_IMAGE,
                               description="Image of the init container that fetches storageUri models and links pvc ones.")
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of the operator's own /metrics (0: off).")
    metrics_address: str = Field("0.0.0.0", description="Address the operator's /metrics binds to.")
    workers: int = Field(32, ge=1, le=512, description=(
        "Threads that run the handlers (kopf's executor): each control tick waits on the API server, Prometheus "
        "and Triton, so ticks of different services run side by side. kopf's default, min(32, CPUs + 4), is 6 "
        "on 2 CPUs, where 1,000 services held only 62% of their ticks (bench/steady.py)."))

    # Leader election (two or more replicas): off unless BATCHPILOT_LEADER_ELECTION=true (the Helm chart sets it).
    leader_election: bool = Field(False, description="Elect one acting replica through a coordination.k8s.io "
                                                     "Lease; the others stand by (see leadership.py).")
    lease_name: str = Field("batchpilot-operator", min_length=1, description="Name of the election's Lease.")
    lease_namespace: str = Field("", description="Namespace of the Lease; empty: POD_NAMESPACE, else default.")
    lease_duration_seconds: float = Field(15.0, gt=0, description="A standby takes over after seeing the Lease "
                                                                  "unchanged this long (client-go's default).")
    renew_deadline_seconds: float = Field(10.0, gt=0, description="The leader stops acting when it has not "
                                                                  "renewed the Lease for this long.")
    retry_period_seconds: float = Field(2.0, gt=0, description="Period of renewals and acquisition attempts.")
    pod_name: str = Field("", validation_alias="POD_NAME",
                          description="The pod's name (downward API): this replica's identity in the Lease.")
    pod_namespace: str = Field("", validation_alias="POD_NAMESPACE",
                               description="The pod's namespace (downward API): where the Lease lives by default.")

    @property
    def election_timing(self) -> Timing:
        """The election's periods, checked (lease duration > renew deadline > 1.2 x retry period)."""
        return Timing(self.lease_duration_seconds, self.renew_deadline_seconds, self.retry_period_seconds)

    @property
    def lease_namespace_or_default(self) -> str:
        return self.lease_namespace or self.pod_namespace or "default"
