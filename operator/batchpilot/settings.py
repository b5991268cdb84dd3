"""Operator settings: one typed model, filled from BATCHPILOT_* environment variables and flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from batchpilot.build.children import DEFAULT_FETCHER_IMAGE


class OperatorSettings(BaseSettings):
    """Defaults suit a real cluster; the sandbox and tests shorten the periods."""

    model_config = SettingsConfigDict(env_prefix="BATCHPILOT_")

    prometheus_url: str = Field("http://prometheus-operated.monitoring.svc:9090",
                                description="Prometheus that scrapes the Triton pods.")
    control_interval_seconds: float = Field(15.0, gt=0, description="Period of the replica control loop.")
    metrics_window_seconds: float = Field(30.0, gt=0, description="Window of rate() in PromQL queries.")
    fetcher_image: str = Field(DEFAULT_FETCHER_IMAGE,
                               description="Image of the init container that fetches storageUri models.")
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of the operator's own /metrics (0: off).")
    metrics_address: str = Field("0.0.0.0", description="Address the operator's /metrics binds to.")
