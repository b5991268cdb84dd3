"""Export a PyTorch module (from an import path to a factory) as TorchScript or ONNX, checked before it is written.

Checks what users get wrong, each refused with the fix: a factory that does not import or does not return a
module; an output whose first dimension is not the batch; a batch dimension fixed somewhere in the model (the
exported artifact is run at another batch size than the example's and must match the module); an ONNX graph
without a dynamic batch axis or with other tensor names than the configuration's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from batchpilot.api.spec import TensorSpec
from batchpilot.export.layout import Exported, Format

EXAMPLE_BATCH = 2
"""Rows of the example the module is traced (or exported) with."""
CHECK_BATCH = 3
"""Rows the exported artifact is run with afterwards: another size than the example's, so a fixed batch shows."""
OPSET = 17


class ExportError(ValueError):
    """The module cannot be exported as asked; the message says why and what to change."""


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ExportError("batchpilot export needs torch: pip install 'batchpilot[export]'") from None
    return torch


def triton_type(dtype: Any) -> str:
    torch = _torch()
    types = {torch.float32: "TYPE_FP32", torch.float16: "TYPE_FP16", torch.bfloat16: "TYPE_BF16",
             torch.float64: "TYPE_FP64", torch.int64: "TYPE_INT64", torch.int32: "TYPE_INT32",
             torch.int16: "TYPE_INT16", torch.int8: "TYPE_INT8", torch.uint8: "TYPE_UINT8", torch.bool: "TYPE_BOOL"}
    if dtype not in types:
        raise ExportError(f"tensor type {dtype} has no Triton type; return one of {sorted(map(str, types))}")
    return types[dtype]


def load_factory(path: str) -> Any:
    """The module a factory `package.module:function` returns, in eval mode."""
    torch = _torch()
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ExportError(f"--factory {path!r}: expected package.module:function, e.g. examples.cifar_cnn:build")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` would
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ExportError(f"--factory {path!r}: cannot import {module_name!r}: {e}") from None
    except AttributeError:
        raise ExportError(f"--factory {path!r}: {module_name!r} has no {attr!r}") from None
    module = factory
    if callable(factory) and not isinstance(factory, torch.nn.Module):
        try:
            module = factory()
        except Exception as e:  # the user's code: report it, do not crash with a traceback
            raise ExportError(f"--factory {path!r}: calling it without arguments failed ({type(e).__name__}: {e}); "
                              f"point it at a function that builds the module with no arguments") from e
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"--factory {path!r} gave a {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


def _example(shape: Sequence[int], dtype: str, rows: int, seed: int) -> Any:
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    kind = getattr(torch, dtype, None)
    if not isinstance(kind, torch.dtype):
        raise ExportError(f"--input-dtype {dtype!r} is not a torch dtype (float32, float16, int64, ...)")
    if kind.is_floating_point:
        return torch.randn(rows, *shape, generator=generator).to(kind)
    return torch.randint(0, 100, (rows, *shape), generator=generator).to(kind)


def _outputs(result: Any) -> list[Any]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _spec(name: str, tensor: Any, rows: int, what: str) -> TensorSpec:
    if tensor.dim() == 0 or tensor.shape[0] != rows:
        raise ExportError(f"{what} has shape {tuple(tensor.shape)} for {rows} input rows: Triton batches along the "
                          f"first dimension, so every output must have one row per input row")
    return TensorSpec.model_validate({"name": name, "dataType": triton_type(tensor.dtype), "dims": list(tensor.shape[1:])})


def _same(expected: list[Any], got: Sequence[Any], how: str) -> None:
    torch = _torch()
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        g = torch.as_tensor(g)
        if tuple(e.shape) != tuple(g.shape) or not torch.allclose(e.float(), g.float(), rtol=1e-3, atol=1e-4):
            raise ExportError(f"output {i} of the {how} at batch size {CHECK_BATCH} differs from the module's (shape "
                              f"{tuple(g.shape)} vs {tuple(e.shape)}): the batch size is fixed somewhere in the model "
                              f"(x.view({EXAMPLE_BATCH}, -1) or a constant shape); use x.flatten(1) or "
                              f"x.view(x.size(0), -1)")


def _run(call: Callable[[], Sequence[Any]], how: str) -> Sequence[Any]:
    try:
        return call()
    except Exception as e:  # whatever the runtime raises, the user needs the cause and the fix
        raise ExportError(f"the {how} does not run at batch size {CHECK_BATCH} ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}): the batch size is fixed "
                          f"somewhere in the model (x.view({EXAMPLE_BATCH}, -1) or a constant shape); use "
                          f"x.flatten(1) or x.view(x.size(0), -1)") from e


def export(module: Any, name: str, fmt: Format, input_shape: Sequence[int], out_dir: Path,
           input_dtype: str = "float32", max_batch_size: int = 32, python_backend: bool = False) -> Exported:
    """Write out_dir/NAME/1/<artifact> and out_dir/NAME/config.pbtxt (and model.py with python_backend)."""
    torch = _torch()
    if max_batch_size < 1:
        raise ExportError(f"--max-batch-size {max_batch_size}: at least 1 (batching is what Batchpilot tunes)")
    example, check = _example(input_shape, input_dtype, EXAMPLE_BATCH, 0), _example(input_shape, input_dtype,
                                                                                    CHECK_BATCH, 1)
    with torch.inference_mode():
        outs, expected = _outputs(module(example)), _outputs(module(check))
    for i, o in enumerate(expected):
        _spec(f"OUTPUT__{i}", o, CHECK_BATCH, f"output {i}")
    exported = Exported(name, fmt, max_batch_size,
                        (_spec("INPUT__0", example, EXAMPLE_BATCH, "the input"),),
                        tuple(_spec(f"OUTPUT__{i}", o, EXAMPLE_BATCH, f"output {i}") for i, o in enumerate(outs)))
    artifact = out_dir / exported.artifact
    artifact.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "torchscript":
            with torch.no_grad():
                torch.jit.trace(module, example).save(str(artifact))
            with torch.inference_mode():
                _same(expected, _run(lambda: _outputs(torch.jit.load(str(artifact))(check)), "TorchScript"),
                      "TorchScript")
        else:
            _onnx(module, example, exported, artifact, expected, check)
    except ExportError:
        artifact.unlink(missing_ok=True)  # no artifact that failed its check is left where Triton would load it
        raise
    for path, text in exported.files(python_backend).items():
        (out_dir / path).write_text(text)
    return exported


def _onnx(module: Any, example: Any, exported: Exported, artifact: Path, expected: list[Any], check: Any) -> None:
    torch = _torch()
    import onnx
    import onnxruntime

    inputs, outputs = [t.name for t in exported.inputs], [t.name for t in exported.outputs]
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(artifact), input_names=inputs, output_names=outputs,
                          dynamic_axes={n: {0: "batch"} for n in inputs + outputs}, opset_version=OPSET, dynamo=False)
    graph = onnx.load(str(artifact)).graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names != (inputs, outputs):
        raise ExportError(f"the ONNX graph's tensors are {names}, the configuration's {(inputs, outputs)}")
    for tensor in [*graph.input, *graph.output]:
        first = tensor.type.tensor_type.shape.dim[0]
        if not first.dim_param:
            raise ExportError(f"the ONNX graph's {tensor.name} has a fixed first dimension ({first.dim_value}), not a "
                              f"dynamic batch axis: Triton could not batch it")
    session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    how = "ONNX graph (onnxruntime)"
    _same(expected, _run(lambda: session.run(outputs, {inputs[0]: check.numpy()}), how), how)

