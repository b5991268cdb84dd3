"""The examples a model owner applies parse as the operator parses them, full.yaml shows every spec field, and
the README's API section documents every field."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from batchpilot.api.parse import parse_spec
from batchpilot.api.spec import KIND, InferenceServiceSpec, ModelRepository
from batchpilot.api.status import InferenceServiceStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# Fields that exclude each other, so full.yaml cannot set them all: it names them in its comments and another
# example sets each.
ALTERNATIVES = {"model.repository.pvc", "model.repository.pvc.claimName", "model.repository.pvc.subPath",
                "model.repository.configMap", "model.platform"}


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every camelCase field path of a model tree, through optionals, lists and dict values."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        out.add(path)
        for sub in _models(field.annotation):
            out |= field_paths(sub, f"{path}.")
    return out


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated, list, dict):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def yaml_paths(node: Any, prefix: str = "") -> set[str]:
    """Every key path of a YAML document (list items share their list's path)."""
    if isinstance(node, list):
        return {p for item in node for p in yaml_paths(item, prefix)}
    if not isinstance(node, dict):
        return set()
    out: set[str] = set()
    for key, value in node.items():
        out.add(f"{prefix}{key}")
        out |= yaml_paths(value, f"{prefix}{key}.")
    return out


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def services(path: Path) -> list[dict[str, Any]]:
    return [d for d in documents(path) if d["kind"] == KIND]


def api_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## The API\n")
    return readme[start:readme.index("\n## ", start + 1)]


SPEC_PATHS = field_paths(InferenceServiceSpec)


def test_the_expected_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"minimal.yaml", "full.yaml", "fixed-batching.yaml", "paused.yaml", "s3-model.yaml",
            "pvc-model.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_parses_as_the_operator_parses_it(path: Path) -> None:
    docs = documents(path)
    assert services(path), f"{path.name} holds no InferenceService"
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) in {("batchpilot.dev/v1alpha1", KIND), ("v1", "Secret")}, doc
        assert doc["metadata"]["name"]
        if doc["kind"] == KIND:
            parse_spec(doc["spec"])


def test_the_walker_reaches_list_items_and_kube_types() -> None:
    assert {"model.inputs.dataType", "model.profile.points.latencyMs", "runtime.tolerations.tolerationSeconds",
            "runtime.env.valueFrom", "runtime.imagePullSecrets.name", "autoscaling.metricsOutage.policy"} <= SPEC_PATHS


def test_full_sets_every_spec_field_but_the_alternatives() -> None:
    (full,) = services(ROOT / "examples" / "full.yaml")
    missing = SPEC_PATHS - ALTERNATIVES - yaml_paths(full["spec"])
    assert not missing, f"full.yaml does not set: {sorted(missing)}"


def test_full_names_the_alternatives_and_other_examples_set_them() -> None:
    text = (ROOT / "examples" / "full.yaml").read_text()
    elsewhere = set().union(*(yaml_paths(s["spec"]) for p in EXAMPLES if p.name != "full.yaml" for s in services(p)))
    for path in ALTERNATIVES:
        assert path.rsplit(".", 1)[-1] in text, f"full.yaml does not mention {path}"
        assert path in elsewhere, f"no example sets {path}"


def test_the_minimal_example_sets_only_model_name_repository_and_slo() -> None:
    (minimal,) = services(ROOT / "examples" / "minimal.yaml")
    assert yaml_paths(minimal["spec"]) - {"model.repository.storageUri"} == {
        "model", "model.name", "model.repository", "slo", "slo.latencyMs"}


def test_fixed_and_paused_examples_show_what_they_are_named_for() -> None:
    (fixed,) = services(ROOT / "examples" / "fixed-batching.yaml")
    (paused,) = services(ROOT / "examples" / "paused.yaml")
    (pvc,) = services(ROOT / "examples" / "pvc-model.yaml")
    assert parse_spec(fixed["spec"]).batching.mode == "fixed"
    assert parse_spec(paused["spec"]).paused is True
    assert parse_spec(pvc["spec"]).model.repository.pvc is not None


def test_the_s3_example_pairs_its_secret_with_documented_variable_names() -> None:
    docs = documents(ROOT / "examples" / "s3-model.yaml")
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (svc,) = [d for d in docs if d["kind"] == KIND]
    repository = parse_spec(svc["spec"]).model.repository
    assert repository.storage_uri is not None and repository.storage_uri.startswith("s3://")
    assert repository.credentials_secret == secret["metadata"]["name"]
    documented = ModelRepository.model_fields["credentials_secret"].description or ""
    for key in secret["stringData"]:
        assert key in documented, f"{key} is not a variable the fetcher reads"


def undocumented(paths: set[str]) -> set[str]:
    """Paths whose leaf the README's API section never shows as a field (`leaf`, leaf: or leaf.)."""
    section = api_section()
    return {p for p in paths if not re.search(rf"(?<![A-Za-z]){re.escape(p.rsplit('.', 1)[-1])}[`:.]", section)}


def test_the_readme_documents_every_spec_field() -> None:
    missing = undocumented(SPEC_PATHS)
    assert not missing, f"README '## The API' does not document: {sorted(missing)}"


def test_the_readme_documents_every_status_field() -> None:
    missing = undocumented(field_paths(InferenceServiceStatus))
    assert not missing, f"README '## The API' does not document: {sorted(missing)}"


def test_the_readme_minimal_example_is_examples_minimal() -> None:
    block = re.search(r"```yaml\n(.*?)```", api_section(), re.S)
    assert block is not None
    assert yaml.safe_load(block.group(1)) == services(ROOT / "examples" / "minimal.yaml")[0]


def test_the_readme_names_every_condition_and_printer_column() -> None:
    section = api_section()
    for word in ("Ready", "MetricsAvailable", "Autoscaling", "SLOMet", "Desired", "Latency-ms", "SLO-ms",
                 "Delay-us", "Batch", "Replicas-By", "Status", "Age", "kubectl scale"):
        assert word in section, word
    for path in EXAMPLES:
        assert f"examples/{path.name}" in section, path.name
