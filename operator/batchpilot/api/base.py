"""Shared pydantic configuration: camelCase on the wire, snake_case in Python, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    def to_wire(self) -> dict[str, object]:
        """The object as it appears in Kubernetes (camelCase keys, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(*rules_and_messages: str) -> ConfigDict:
    """Model config adding CEL rules (rule, message, rule, message, ...), so the API server itself refuses the
    object (x-kubernetes-validations)."""
    pairs = zip(rules_and_messages[::2], rules_and_messages[1::2], strict=True)
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]})
