"""The operator package and the sandbox harness stay apart (issue 13 item 5), read from the source itself.

`batchpilot` never imports `batchpilot_sandbox`; the operator's runtime dependencies (pyproject's
[project].dependencies) are exactly what its runtime code imports; the sandbox's own dependencies live in
sandbox/pyproject.toml. The simulator (sim/) and `batchpilot export` (export/) are in the operator package but
run on their extras, so their imports are checked against those instead.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "batchpilot"
EXTRA_DIRS = {"sim": "sim", "export": "export"}
"""Sub-packages of batchpilot that run on an extra, not on the runtime dependencies."""
PROVIDES = {"pyyaml": {"yaml"}, "boto3": {"boto3", "botocore"}, "prometheus-api-client": {"prometheus_api_client"},
            "pydantic-settings": {"pydantic_settings"}, "prometheus-client": {"prometheus_client"},
            "matplotlib": {"matplotlib", "mpl_toolkits"}, "nvidia-pytriton": {"pytriton"}}
"""Distribution -> the top-level modules it installs, where the name alone does not say (boto3 brings botocore)."""


def _dist(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()


def _modules(requirements: list[str]) -> set[str]:
    out: set[str] = set()
    for dist in map(_dist, requirements):
        out |= PROVIDES.get(dist, {dist.replace("-", "_")})
    return out


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _third_party(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it."""
    seen: dict[str, set[str]] = {}
    for path in paths:
        for module in _imports(path) - set(sys.stdlib_module_names) - {"__future__", "batchpilot"}:
            seen.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return seen


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _operator_files(part: str | None) -> list[Path]:
    files = sorted(OPERATOR.rglob("*.py"))
    if part is None:
        return [f for f in files if f.relative_to(OPERATOR).parts[0] not in EXTRA_DIRS]
    return [f for f in files if f.relative_to(OPERATOR).parts[0] == part]


def test_the_operator_never_imports_the_sandbox() -> None:
    offenders = sorted(f for m, fs in _third_party(sorted(OPERATOR.rglob("*.py"))).items()
                       if m == "batchpilot_sandbox" for f in fs)
    assert not offenders, f"batchpilot must not import batchpilot_sandbox (the harness): {offenders}"
    assert not (OPERATOR / "sandbox").exists(), "the sandbox lives in sandbox/batchpilot_sandbox, not in the operator"


def test_the_runtime_dependencies_are_what_the_operator_imports() -> None:
    declared = _modules(_project(ROOT / "pyproject.toml")["dependencies"])
    imported = _third_party(_operator_files(None))
    undeclared = {m: sorted(fs) for m, fs in imported.items() if m not in declared}
    assert not undeclared, f"imported by the operator but not in [project].dependencies: {undeclared}"
    unused = declared - set(imported)
    assert not unused, f"in [project].dependencies but imported by no runtime module of batchpilot: {sorted(unused)}"


def test_the_extras_cover_what_sim_and_export_import() -> None:
    project = _project(ROOT / "pyproject.toml")
    runtime = _modules(project["dependencies"])
    for part, extra in EXTRA_DIRS.items():
        available = runtime | _modules(project["optional-dependencies"][extra])
        missing = {m: sorted(fs) for m, fs in _third_party(_operator_files(part)).items() if m not in available}
        assert not missing, f"batchpilot/{part} imports what neither the runtime nor the {extra!r} extra gives: {missing}"


def test_the_sandbox_declares_its_own_dependencies() -> None:
    sandbox = _project(ROOT / "sandbox" / "pyproject.toml")
    available = _modules(sandbox["dependencies"]) | _modules(_project(ROOT / "pyproject.toml")["dependencies"])
    imported = _third_party(sorted((ROOT / "sandbox" / "batchpilot_sandbox").rglob("*.py")))
    imported.pop("batchpilot_sandbox", None)
    imported.pop("triton_python_backend_utils", None)  # provided by Triton's Python backend to gpu_emulator/model.py
    missing = {m: sorted(fs) for m, fs in imported.items() if m not in available}
    assert not missing, f"the sandbox imports what sandbox/pyproject.toml does not give: {missing}"
    assert "batchpilot" in {_dist(r) for r in sandbox["dependencies"]}
