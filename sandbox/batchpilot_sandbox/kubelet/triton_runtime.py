"""Run the real Triton server that ships inside the nvidia-pytriton wheel, on CPU.

The wheel holds `tritonserver`, its shared libraries (`nvidia_pytriton.libs/`), the Python backend and one
backend stub per Python version. Found empirically: the stub embeds Python and locates its `sys.prefix` by
looking up `python3` on PATH, so putting this interpreter's bin directory first on PATH makes the stub see
this virtualenv's site-packages (numpy, batchpilot); the libpython it links must be the same build, so its
directory goes first on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install the sandbox: `pip install -e ./sandbox` (make deps; brings nvidia-pytriton)"
STUB_NAME = "triton_python_backend_stub"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonNotFoundError(RuntimeError):
    """The wheel that carries tritonserver is missing or incomplete."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one tritonserver distribution inside the nvidia-pytriton wheel."""

    binary: Path
    lib_dir: Path
    python_backend_dir: Path
    stub: Path
    python_version: str

    def backend_files(self) -> list[Path]:
        return [self.python_backend_dir / name for name in PYTHON_BACKEND_FILES]


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_triton() -> TritonInstall:
    """Locate tritonserver, its libraries, the Python backend and the stub for this interpreter."""
    try:
        import pytriton
    except ImportError as exc:
        raise TritonNotFoundError(f"nvidia-pytriton is not installed; {INSTALL_HINT}") from exc
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    version = _python_version()
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        lib_dir=root.parent.parent / "nvidia_pytriton.libs",
        python_backend_dir=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / STUB_NAME,
        python_version=version,
    )
    required = [install.binary, install.lib_dir, install.stub, *install.backend_files()]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise TritonNotFoundError(
            f"nvidia-pytriton at {root.parent} lacks {', '.join(missing)} "
            f"(Python {version} needs a stub for its version); {INSTALL_HINT}"
        )
    return install


def prepare_backend_dir(dest: Path, install: TritonInstall | None = None) -> Path:
    """Build `<dest>/python/` (backend .so, utils .py, stub for this Python) and return dest.

    Pass the result as `--backend-directory`. Idempotent: existing files are replaced.
    """
    install = install or find_triton()
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in [*install.backend_files(), install.stub]:
        shutil.copy2(src, python_dir / src.name)
    return dest


def _python_lib_dir() -> Path | None:
    """Directory of the shared libpython of this interpreter, or None when it is statically linked."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    return Path(libdir) if libdir else None


def _prepend(value: str | None, *paths: str) -> str:
    parts = [p for p in paths if p]
    if value:
        parts.extend(p for p in value.split(os.pathsep) if p and p not in parts)
    return os.pathsep.join(parts)


def triton_env(
    base_env: Mapping[str, str] | None = None, install: TritonInstall | None = None
) -> dict[str, str]:
    """Environment for tritonserver and its Python stubs: libraries, this venv's python and site-packages."""
    install = install or find_triton()
    env = dict(os.environ if base_env is None else base_env)
    libpython = _python_lib_dir()
    env["LD_LIBRARY_PATH"] = _prepend(
        env.get("LD_LIBRARY_PATH"), str(libpython) if libpython else "", str(install.lib_dir)
    )
    # Unresolved on purpose: a venv's bin/python3 is a symlink, and the stub must find pyvenv.cfg beside it.
    env["PATH"] = _prepend(env.get("PATH", "/usr/bin:/bin"), str(Path(sys.executable).parent))
    site_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env["PYTHONPATH"] = _prepend(env.get("PYTHONPATH"), *sorted(site_dirs))
    env.pop("PYTHONHOME", None)
    return env


OVERRIDDEN_FLAGS = (
    "--backend-directory",
    "--allow-gpu-metrics",
    "--http-address",
    "--grpc-address",
    "--metrics-address",
)


def _without_flags(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """args minus `--flag=value` and `--flag value` pairs for the given flags."""
    out: list[str] = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip_next = "=" not in arg
            continue
        out.append(arg)
    return out


def server_argv(install: TritonInstall, backend_dir: Path, address: str, args: list[str]) -> list[str]:
    """tritonserver argv: the given args with our backend directory, CPU-only metrics and bind address.

    Those flags replace any the caller gave: the image's paths and 0.0.0.0 mean nothing on this host, and each
    pod must bind the standard ports on its own loopback IP.
    """
    extra = [f"--backend-directory={backend_dir}", "--allow-gpu-metrics=false"]
    extra += [f"--{kind}-address={address}" for kind in ("http", "grpc", "metrics")]
    return [str(install.binary), *_without_flags(args, OVERRIDDEN_FLAGS), *extra]
