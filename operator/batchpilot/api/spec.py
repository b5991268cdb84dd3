"""InferenceService spec (group batchpilot.dev, version v1alpha1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from batchpilot.api.base import ApiModel, cel

GROUP = "batchpilot.dev"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAMES = ["bpis"]

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
# A Kubernetes-style name: also what a Triton model directory may be called. Restricting it here keeps
# user strings out of PromQL and file paths.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")]


class ModelRepository(ApiModel):
    """Where the model's files come from."""

    config_map: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253)]
    """Name of a ConfigMap in the same namespace whose keys are the files of model version 1."""


class ProfilePoint(ApiModel):
    """Compute time of one batch size."""

    batch_size: Annotated[int, Field(ge=1, le=4096)]
    """Batch size."""
    latency_ms: Annotated[float, Field(gt=0, le=600000)]
    """Median compute time of one batch of this size, in milliseconds."""


class ComputeProfile(ApiModel):
    """Compute time per batch size measured offline on the target GPU (the points of a profile JSON)."""

    points: Annotated[list[ProfilePoint], Field(min_length=1, max_length=64)]
    """Measured points; the control loop interpolates between them and refines them from live traffic."""


class ModelSpec(ApiModel):
    """The Triton model this service serves."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    """Triton model name (the model directory in the repository)."""
    repository: ModelRepository
    """Where the model files come from."""
    backend: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)] = "python"
    """Triton backend (python, onnxruntime, tensorrt, pytorch, ...)."""
    max_batch_size: Annotated[int, Field(ge=0, le=4096)] = 32
    """Largest batch Triton may form; 0 disables batching for the model."""
    profile: ComputeProfile | None = None
    """Optional offline profile that seeds the capacity model; without it the model is learned from traffic."""


class RuntimeSpec(ApiModel):
    """How each Triton pod runs."""

    image: Annotated[str, Field(min_length=1, max_length=512)] = DEFAULT_TRITON_IMAGE
    """Triton server container image."""
    gpus: Annotated[int, Field(ge=0, le=16)] = 1
    """nvidia.com/gpu per replica."""
    cpu: Quantity = "1"
    """CPU request per replica."""
    memory: Quantity = "2Gi"
    """Memory request (and limit) per replica."""


class SloSpec(ApiModel):
    """The latency objective Batchpilot keeps."""

    latency_ms: Annotated[float, Field(gt=0, le=600000)]
    """Target server-side latency in milliseconds at the given percentile."""
    percentile: Literal[95, 99] = 95
    """Which percentile the target applies to."""


class AutoscalingSpec(ApiModel):
    """Bounds and pacing of replica changes."""

    model_config = cel("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas")

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 4
    """Most replicas (each takes `runtime.gpus` GPUs)."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    """Fewer replicas must be predicted to meet the SLO with margin this long before any is removed."""

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"spec.autoscaling: minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})")
        return self


class BatchingSpec(ApiModel):
    """Triton dynamic batching: tuned live by Batchpilot (auto), as given (fixed), or none (off)."""

    model_config = cel("self.minQueueDelayMicroseconds <= self.maxQueueDelayMicroseconds",
                       "minQueueDelayMicroseconds must be <= maxQueueDelayMicroseconds")

    mode: Literal["auto", "fixed", "off"] = "auto"
    """auto: Batchpilot picks the queue delay within [minQueueDelayMicroseconds, maxQueueDelayMicroseconds] and
    applies it to running pods; fixed: Triton runs maxQueueDelayMicroseconds; off: no dynamic batching."""
    max_queue_delay_microseconds: Annotated[int, Field(ge=0, le=1_000_000)] = 2000
    """Longest Triton may hold a request to form a larger batch (fixed: the delay; auto: its upper bound and
    the delay new pods start with)."""
    min_queue_delay_microseconds: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """auto: the shortest delay Batchpilot may choose."""
    preferred_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] | None = None
    """Batch sizes Triton prefers to form (optional)."""
    instance_count: Annotated[int, Field(ge=1, le=16)] = 1
    """Model instances per GPU."""

    @model_validator(mode="after")
    def _ordered(self) -> BatchingSpec:
        if self.min_queue_delay_microseconds > self.max_queue_delay_microseconds:
            raise ValueError(
                f"spec.batching: minQueueDelayMicroseconds ({self.min_queue_delay_microseconds}) must be <= "
                f"maxQueueDelayMicroseconds ({self.max_queue_delay_microseconds})")
        return self


class InferenceServiceSpec(ApiModel):
    """A Triton inference service kept on its latency SLO at the lowest GPU cost."""

    model: ModelSpec
    """The model to serve."""
    slo: SloSpec
    """The latency objective."""
    runtime: RuntimeSpec = RuntimeSpec()
    """Triton pod settings."""
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    """Replica bounds and pacing."""
    batching: BatchingSpec = BatchingSpec()
    """Triton dynamic batching settings."""
    paused: bool = False
    """Freeze all scaling and tuning actions; keep observing."""
