"""InferenceService spec (group batchpilot.dev, version v1alpha1)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from batchpilot.api.base import ApiModel, cel
from batchpilot.api.kube_types import (
    LABEL_VALUE_PATTERN,
    LIST_BY_NAME,
    OBJECT_NAME_PATTERN,
    QUALIFIED_NAME_PATTERN,
    RESOURCE_NAME_RULE,
    WHOLE_EXTENDED_RULE,
    EnvVar,
    KubeObject,
    LocalObjectReference,
    Quantity,
    Toleration,
    is_extended,
    quantity,
    resource_problem,
)

GROUP = "batchpilot.dev"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAMES = ["bpis"]

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
GPU_RESOURCE = "nvidia.com/gpu"
# A Kubernetes-style name: also what a Triton model directory may be called. Restricting it here keeps
# user strings out of PromQL and file paths.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
SERVICE_NAME_MAX = 63
"""metadata.name of an InferenceService names its Service (a DNS-1035 label) and is a label value: <= 63."""
# https://host/path, s3://bucket/prefix or gs://bucket/prefix; no whitespace, quotes or shell metacharacters.
STORAGE_URI_PATTERN = (r"^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+=,@:-]*)?"
                       r"|(s3|gs)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._~%/+=,@:-]*)?)$")


class PvcSource(ApiModel):
    """A PersistentVolumeClaim that holds the model directory."""

    claim_name: Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253)]
    """Name of the PersistentVolumeClaim in the service's namespace."""
    sub_path: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$",
                                   max_length=1024)] | None = None
    """Path of the model directory inside the volume, relative, no segment starting with a dot (default: the
    volume's root is the model directory)."""


class ModelRepository(ApiModel):
    """Where the model's files come from: exactly one of storageUri, pvc and configMap.

    storageUri and pvc hold the model directory (version folders such as `1/`); a configMap holds the files
    of version 1. A config.pbtxt found there is ignored: Batchpilot renders it from this spec."""

    model_config = cel(
        "[has(self.storageUri), has(self.pvc), has(self.configMap)].filter(x, x).size() == 1",
        "set exactly one of storageUri, pvc and configMap",
        "!has(self.credentialsSecret) || has(self.storageUri)",
        "credentialsSecret applies to storageUri only",
    )

    storage_uri: Annotated[str, Field(pattern=STORAGE_URI_PATTERN, max_length=2048)] | None = None
    """https://host/path/model.tar.gz (a .tar.gz, .tgz, .tar or .zip archive whose root holds the version folders
    such as 1/, or one folder that does; any other file becomes version 1), s3://bucket/prefix or gs://bucket/prefix
    (every object under the prefix is the model directory); fetched by an init container before Triton starts."""
    credentials_secret: Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253)] | None = None
    """Secret with the credentials for storageUri, passed to the fetcher as environment variables:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL (s3; gs through
    its S3-compatible API with HMAC keys), HTTP_AUTHORIZATION (https: the Authorization header), CA_BUNDLE (PEM
    of a private certificate authority)."""
    pvc: PvcSource | None = None
    """A PersistentVolumeClaim holding the model directory (its version folders), mounted read-only beside it;
    the fetch-model init container links the claim's entries into the model directory (nothing is copied)."""
    config_map: Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253)] | None = None
    """Name of a ConfigMap in the same namespace whose keys are the files of model version 1 (small models)."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelRepository:
        given = [n for n, v in (("storageUri", self.storage_uri), ("pvc", self.pvc), ("configMap", self.config_map))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"spec.model.repository: set exactly one of storageUri, pvc and configMap (got "
                             f"{', '.join(given) or 'none'})")
        if self.credentials_secret is not None and self.storage_uri is None:
            raise ValueError("spec.model.repository.credentialsSecret applies to storageUri only: remove it")
        return self


DataType = Literal["TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16",
                   "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]


class TensorSpec(ApiModel):
    """One input or output tensor of the model (rendered into config.pbtxt)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$", max_length=128)]
    """Tensor name as the model knows it."""
    data_type: DataType
    """Triton data type, e.g. TYPE_FP32."""
    dims: Annotated[list[Annotated[int, Field(ge=-1, le=1_000_000)]], Field(max_length=16)]
    """Shape without the batch dimension; -1 for a variable size."""


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

    model_config = cel(
        "!(has(self.backend) && has(self.platform))", "set backend or platform, not both",
        "!((has(self.platform) && self.platform == 'pytorch_libtorch') || (has(self.backend) && "
        "self.backend == 'pytorch')) || (has(self.inputs) && size(self.inputs) > 0 && has(self.outputs) && "
        "size(self.outputs) > 0)",
        "pytorch_libtorch needs inputs and outputs: a TorchScript model does not declare them to Triton "
        "(batchpilot export prints them)",
    )

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    """Triton model name (the model directory in the repository)."""
    repository: ModelRepository
    """Where the model files come from."""
    backend: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)] | None = None
    """Triton backend (python, onnxruntime, tensorrt, pytorch, ...); leave both backend and platform out to let
    Triton derive it from the model files."""
    platform: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)] | None = None
    """Triton platform (tensorrt_plan, onnxruntime_onnx, pytorch_libtorch, tensorflow_savedmodel, ...); set
    backend or platform, not both."""
    max_batch_size: Annotated[int, Field(ge=0, le=4096)] = 32
    """Largest batch Triton may form; 0 disables batching for the model (spec.batching then does not apply)."""
    inputs: Annotated[list[TensorSpec], Field(max_length=64)] | None = None
    """Input tensors (optional where the backend reports them itself)."""
    outputs: Annotated[list[TensorSpec], Field(max_length=64)] | None = None
    """Output tensors (optional where the backend reports them itself)."""
    profile: ComputeProfile | None = None
    """Optional offline profile that seeds the capacity model; without it the model is learned from traffic."""

    @model_validator(mode="after")
    def _backend_or_platform(self) -> ModelSpec:
        if self.backend is not None and self.platform is not None:
            raise ValueError(f"spec.model: set backend ({self.backend!r}) or platform ({self.platform!r}), not both")
        if (self.platform == "pytorch_libtorch" or self.backend == "pytorch") and not (self.inputs and self.outputs):
            raise ValueError("spec.model: pytorch_libtorch needs inputs and outputs: a TorchScript model does not "
                             "declare them to Triton (batchpilot export prints them)")
        return self


ResourceMap = Annotated[dict[str, Quantity], Field(max_length=7, json_schema_extra={"x-kubernetes-validations": [
    {"rule": RESOURCE_NAME_RULE, "message": "resource names are cpu, memory, ephemeral-storage or a qualified "
                                            "extended resource such as nvidia.com/gpu"},
    {"rule": WHOLE_EXTENDED_RULE, "message": "extended resources such as nvidia.com/gpu take whole numbers"}]})]


class ResourceRequirements(ApiModel):
    """Compute resources of the Triton container, as in a Pod (nvidia.com/gpu in limits)."""

    model_config = cel(
        "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
        "!quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
        "each request must be <= its limit",
        # Extended resources are whole numbers (WHOLE_EXTENDED_RULE): int() compares them, at a lower CEL cost.
        "!has(self.requests) || self.requests.all(k, !k.contains('/') || (has(self.limits) && k in self.limits && "
        "int(string(self.requests[k])) == int(string(self.limits[k]))))",
        "an extended resource (nvidia.com/gpu) requested must have an equal limit",
    )

    requests: ResourceMap | None = None
    """Minimum resources, e.g. cpu: "1", memory: 2Gi."""
    limits: ResourceMap | None = None
    """Maximum resources; nvidia.com/gpu here is the GPUs each replica takes."""

    @model_validator(mode="after")
    def _consistent(self) -> ResourceRequirements:
        for where, values in (("requests", self.requests), ("limits", self.limits)):
            problem = resource_problem(values)
            if problem is not None:
                raise ValueError(f"spec.runtime.resources.{where}: {problem}")
        limits = self.limits or {}
        for name, value in (self.requests or {}).items():
            if name in limits and quantity(value) > quantity(limits[name]):
                raise ValueError(f"spec.runtime.resources: requests.{name} ({value}) must be <= limits.{name} "
                                 f"({limits[name]})")
            if is_extended(name) and (name not in limits or quantity(value) != quantity(limits[name])):
                raise ValueError(f"spec.runtime.resources: requests.{name} ({value}) needs an equal limits.{name}")
        return self

    @property
    def gpus(self) -> int:
        """GPUs per replica (nvidia.com/gpu in limits, else requests)."""
        value = (self.limits or {}).get(GPU_RESOURCE, (self.requests or {}).get(GPU_RESOURCE, 0))
        return int(quantity(value))


DEFAULT_RESOURCES = ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"},
                                         limits={"memory": "2Gi", GPU_RESOURCE: 1})


class RuntimeSpec(ApiModel):
    """How each Triton pod runs."""

    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s]+$")] = DEFAULT_TRITON_IMAGE
    """Triton server container image."""
    resources: ResourceRequirements = DEFAULT_RESOURCES
    """Resources per replica (default: 1 CPU and 2Gi requested, a 2Gi memory limit, one nvidia.com/gpu). Setting
    it replaces the whole default, as in a Pod: include nvidia.com/gpu in limits to get a GPU."""
    node_selector: Annotated[
        dict[str, Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]],
        Field(max_length=32, json_schema_extra={"x-kubernetes-validations": [
            {"rule": f"self.all(k, k.size() <= 316 && k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
             "message": "keys must be label keys: an optional DNS prefix and '/', then up to 63 letters, digits, "
                        "'-', '_' or '.'"}]}),
    ] | None = None
    """Labels a node must have to run the pods, e.g. nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Extra tolerations (one for nvidia.com/gpu:NoSchedule is added whenever the pods take GPUs)."""
    affinity: KubeObject | None = None
    """Pod affinity, as in a Pod spec (nodeAffinity, podAffinity, podAntiAffinity)."""
    env: Annotated[list[EnvVar], Field(max_length=128, json_schema_extra=LIST_BY_NAME)] | None = None
    """Environment of the Triton container, as in a Pod spec."""
    service_account_name: Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253)] | None = None
    """ServiceAccount the pods run as (the namespace's default when unset)."""
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(max_length=16, json_schema_extra=LIST_BY_NAME)] | None = None
    """Secrets for pulling the image from a private registry."""

    @model_validator(mode="after")
    def _keys_and_names(self) -> RuntimeSpec:
        for field, items in (("env", self.env), ("imagePullSecrets", self.image_pull_secrets)):
            names = [i.name for i in items or []]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"spec.runtime.{field}: each name once (given twice: {', '.join(twice)})")
        for key in self.node_selector or {}:
            if len(key) > 316 or not re.fullmatch(QUALIFIED_NAME_PATTERN, key):
                raise ValueError(f"spec.runtime.nodeSelector: {key!r} is not a label key (an optional DNS prefix and "
                                 "'/', then up to 63 letters, digits, '-', '_' or '.')")
        return self

    @property
    def gpus(self) -> int:
        return self.resources.gpus


class SloSpec(ApiModel):
    """The latency objective Batchpilot keeps."""

    latency_ms: Annotated[float, Field(gt=0, le=600000)]
    """Target server-side latency in milliseconds at the given percentile."""
    percentile: Literal[95, 99] = 95
    """Which percentile the target applies to."""


class ScaleUpSpec(ApiModel):
    """How fast replicas are added."""

    cooldown_seconds: Annotated[int, Field(ge=0, le=3600)] = 10
    """Least time between planned scale-ups, so the arrival estimate settles (an SLO breach ignores it)."""
    max_step: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Most replicas added by one decision (default: as many as the plan needs)."""


class ScaleDownSpec(ApiModel):
    """How cautiously replicas are removed."""

    stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    """Fewer replicas must be predicted to meet the SLO with margin this long before any is removed."""
    max_step_percent: Annotated[int, Field(ge=1, le=100)] = 50
    """Most replicas removed by one decision, in percent of the current count (at least one)."""
    burst_memory_seconds: Annotated[int, Field(ge=0, le=86400)] = 1800
    """After the SLO was missed while replicas were starting less than this long after a scale-down that followed the
    load down (a burst came back faster than a pod starts), no replica is removed below what the bursts' highest
    arrival rate needs, taken no lower than the rate the removed replicas had been added for (the planner's count for
    it, once every replica is ready; the running count under the reactive rule), until this long has passed without
    such a miss, or without the bursts' rate coming back while it held. 0: never hold."""


class MetricsOutageSpec(ApiModel):
    """What to do while Prometheus has no fresh Triton metrics for the service."""

    model_config = cel("self.policy != 'fallback' || has(self.fallbackReplicas)",
                       "policy fallback needs fallbackReplicas")

    policy: Literal["hold", "fallback"] = "hold"
    """hold: keep the current replicas and batching; fallback: go to fallbackReplicas (never fewer than now)."""
    fallback_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Replicas to run while blind with policy fallback (kept within min/maxReplicas)."""
    stale_after_seconds: Annotated[int, Field(ge=10, le=3600)] = 60
    """Samples older than this count as missing."""

    @model_validator(mode="after")
    def _fallback(self) -> MetricsOutageSpec:
        if self.policy == "fallback" and self.fallback_replicas is None:
            raise ValueError("spec.autoscaling.metricsOutage: policy fallback needs fallbackReplicas")
        return self


class AutoscalingSpec(ApiModel):
    """Bounds and pacing of replica changes."""

    model_config = cel("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas")

    mode: Literal["batchpilot", "external"] = "batchpilot"
    """Who owns the replica count. batchpilot: the control loop plans it. external: an HPA or a KEDA
    ScaledObject targeting the Triton Deployment owns it; Batchpilot never writes replicas (the Deployment is
    applied without them) and still tunes batching for whatever count runs. The bounds below then only bound the
    plan Batchpilot reports; set the HPA's own."""
    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 4
    """Most replicas (each takes runtime.resources' nvidia.com/gpu GPUs)."""
    target_utilization: Annotated[float, Field(ge=0.2, le=0.95)] = 0.85
    """Plan each replica up to this share of its capacity at the chosen batching, up and down; at a steady load, a
    running count measured within the SLO is kept, and one replica fewer tried, up to halfway from this to 1."""
    scale_up: ScaleUpSpec = ScaleUpSpec()
    """Pacing of scale-up."""
    scale_down: ScaleDownSpec = ScaleDownSpec()
    """Pacing of scale-down."""
    metrics_outage: MetricsOutageSpec = MetricsOutageSpec()
    """Behaviour while metrics are missing or stale."""

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"spec.autoscaling: minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})")
        return self


class BatchingSpec(ApiModel):
    """Triton dynamic batching: tuned live by Batchpilot (auto), as given (fixed), or none (off)."""

    model_config = cel("self.minQueueDelayMicroseconds <= self.maxQueueDelayMicroseconds",
                       "minQueueDelayMicroseconds must be <= maxQueueDelayMicroseconds",
                       "!has(self.maxInstanceCount) || self.instanceCount <= self.maxInstanceCount",
                       "instanceCount must be <= maxInstanceCount",
                       "!self.rejectLateRequests || self.mode != 'off'",
                       "rejectLateRequests needs dynamic batching: mode auto or fixed")

    mode: Literal["auto", "fixed", "off"] = "auto"
    """auto: Batchpilot picks the queue delay within [minQueueDelayMicroseconds, maxQueueDelayMicroseconds] and
    applies it to running pods; fixed: Triton runs maxQueueDelayMicroseconds; off: no dynamic batching."""
    max_queue_delay_microseconds: Annotated[int, Field(ge=0, le=1_000_000)] = 2000
    """Longest Triton may hold a request to form a larger batch (fixed: the delay; auto: its upper bound and
    the delay new pods start with)."""
    min_queue_delay_microseconds: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """auto: the shortest delay Batchpilot may choose."""
    preferred_batch_sizes: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(max_length=16)] | None = None
    """Batch sizes Triton prefers to form (optional)."""
    instance_count: Annotated[int, Field(ge=1, le=16)] = 1
    """Model instances per pod (Triton's instance_group count): batches one pod runs at once (fixed and off:
    the count; auto: the count new pods start with)."""
    max_instance_count: Annotated[int, Field(ge=1, le=16)] | None = None
    """auto: the most instances per pod Batchpilot may run. Before adding a replica it tries one instance more
    and keeps it only if Triton's measured compute times show the pod serving more. Unset: instanceCount."""
    reject_late_requests: bool = False
    """Triton rejects a request that has waited in its queue longer than slo.latencyMs less a full batch's
    compute time (from spec.model.profile, required): it could only miss the SLO. During a burst the pods then
    serve the requests that can still meet the SLO instead of a backlog that misses it; the rejected ones fail
    at once (UNAVAILABLE) and the client may retry. Off: every request is served, however late."""

    @model_validator(mode="after")
    def _ordered(self) -> BatchingSpec:
        if self.min_queue_delay_microseconds > self.max_queue_delay_microseconds:
            raise ValueError(
                f"spec.batching: minQueueDelayMicroseconds ({self.min_queue_delay_microseconds}) must be <= "
                f"maxQueueDelayMicroseconds ({self.max_queue_delay_microseconds})")
        if self.max_instance_count is not None and self.instance_count > self.max_instance_count:
            raise ValueError(f"spec.batching: instanceCount ({self.instance_count}) must be <= maxInstanceCount "
                             f"({self.max_instance_count})")
        if self.reject_late_requests and self.mode == "off":
            raise ValueError("spec.batching: rejectLateRequests needs dynamic batching: set mode auto or fixed, "
                             "or rejectLateRequests false")
        return self


class PrometheusSpec(ApiModel):
    """Where this service's Triton metrics are read."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
    """Prometheus base URL, overriding the operator's BATCHPILOT_PROMETHEUS_URL for this service."""


class InferenceServiceSpec(ApiModel):
    """A Triton inference service kept on its latency SLO at the lowest GPU cost."""

    model_config = cel("!has(self.batching) || !has(self.batching.rejectLateRequests) || "
                       "!self.batching.rejectLateRequests || (self.model.maxBatchSize > 0 && has(self.model.profile))",
                       "batching.rejectLateRequests needs model.maxBatchSize > 0 and model.profile (a full batch's "
                       "compute time sets the queue timeout)",
                       "!has(self.replicas) || !has(self.autoscaling) || !has(self.autoscaling.mode) || "
                       "self.autoscaling.mode != 'external'",
                       "replicas pins the count, but autoscaling.mode external hands it to an HPA or KEDA: remove "
                       "one of them",
                       "!has(self.batching) || !has(self.batching.preferredBatchSizes) || self.model.maxBatchSize == 0 "
                       "|| self.batching.preferredBatchSizes.all(b, b <= self.model.maxBatchSize)",
                       "batching.preferredBatchSizes must be <= model.maxBatchSize (Triton refuses to load the model)")

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
    prometheus: PrometheusSpec | None = None
    """Per-service Prometheus (default: the operator's)."""
    replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Manual replica count (what `kubectl scale` sets): while set, the control loop keeps this count (within
    min/maxReplicas) and still tunes batching; remove it to hand replicas back to the loop."""
    paused: bool = False
    """Freeze all scaling and tuning actions; keep observing."""

    @model_validator(mode="after")
    def _one_owner_of_replicas(self) -> InferenceServiceSpec:
        if self.replicas is not None and self.autoscaling.mode == "external":
            raise ValueError(f"spec.replicas ({self.replicas}) pins the count, but spec.autoscaling.mode external "
                             "hands it to an HPA or KEDA: remove spec.replicas or set the mode to batchpilot")
        return self

    @model_validator(mode="after")
    def _preferred_sizes_fit_the_model(self) -> InferenceServiceSpec:
        # Triton's ValidateModelConfig (core/src/model_config_utils.cc) refuses a larger preferred size.
        too_big = [b for b in self.batching.preferred_batch_sizes or [] if b > self.model.max_batch_size]
        if self.model.max_batch_size > 0 and too_big:
            raise ValueError(f"spec.batching.preferredBatchSizes {too_big} must be <= spec.model.maxBatchSize "
                             f"({self.model.max_batch_size}): Triton refuses to load the model otherwise")
        return self

    @model_validator(mode="after")
    def _late_requests_need_a_full_batch_time(self) -> InferenceServiceSpec:
        if self.batching.reject_late_requests and (self.model.max_batch_size == 0 or self.model.profile is None):
            raise ValueError("spec.batching.rejectLateRequests needs spec.model.maxBatchSize > 0 and "
                             "spec.model.profile (a full batch's compute time sets Triton's queue timeout): add the "
                             "profile or set rejectLateRequests false")
        return self

