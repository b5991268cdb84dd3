"""The InferenceService API: pydantic models that are the single source of the CRD schema."""

from batchpilot.api.spec import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
    AutoscalingSpec,
    BatchingSpec,
    InferenceServiceSpec,
    ModelRepository,
    ModelSpec,
    RuntimeSpec,
    SloSpec,
)

__all__ = [
    "GROUP", "KIND", "PLURAL", "SHORT_NAMES", "VERSION", "AutoscalingSpec", "BatchingSpec",
    "InferenceServiceSpec", "ModelRepository", "ModelSpec", "RuntimeSpec", "SloSpec",
]
