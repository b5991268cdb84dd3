"""`batchpilot export`: the arguments to an exported model directory and the spec.model fields to paste."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a PyTorch module as a Triton model directory (TorchScript or ONNX) with its "
                                      "config.pbtxt and the spec.model fields to paste",
                       description="Export a PyTorch module for Triton: OUT/NAME/1/model.pt (pytorch_libtorch) or "
                                   "model.onnx (onnxruntime_onnx, dynamic batch axis) and OUT/NAME/config.pbtxt; "
                                   "prints the spec.model fields (platform, maxBatchSize, inputs, outputs). Needs "
                                   "the export extra (torch, onnx, onnxruntime).")
    p.add_argument("--factory", required=True, metavar="MODULE:FUNCTION",
                   help="import path of a function returning the torch.nn.Module (or of the module itself)")
    p.add_argument("--input-shape", required=True, metavar="D1,D2,...", help="one input's shape without the batch")
    p.add_argument("--input-dtype", default="float32", help="torch dtype of the input (default float32)")
    p.add_argument("--name", required=True, help="the Triton model name (the directory under --out)")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("models"), help="the model repository to write into")
    p.add_argument("--python-backend", action="store_true",
                   help="also write a Python-backend model.py that runs the artifact, for a Triton with only the "
                        "Python backend (the sandbox's); config.pbtxt then names backend python")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batchpilot.api.spec import NAME_PATTERN
    from batchpilot.export.torch_model import ExportError, export, load_factory

    try:
        if not re.fullmatch(NAME_PATTERN, args.name):
            raise ExportError(f"--name {args.name!r}: a Triton model name here is lowercase letters, digits, '-', '_' and '.' "
                              f"(pattern {NAME_PATTERN})")
        try:
            shape = [int(d) for d in args.input_shape.split(",")]
        except ValueError:
            raise ExportError(f"--input-shape {args.input_shape!r}: whole numbers separated by commas, e.g. 3,32,32") \
                from None
        module = load_factory(args.factory)
        exported = export(module, args.name, args.format, shape, args.out, args.input_dtype, args.max_batch_size,
                          args.python_backend)
    except ExportError as e:
        print(f"batchpilot export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / exported.artifact} and {args.out / args.name / 'config.pbtxt'}"
          f"{' (Python backend wrapper)' if args.python_backend else ''}; checked at batch sizes 2 and 3. "
          f"spec.model fields:", file=sys.stderr)
    sys.stdout.write(exported.spec_yaml())
    return 0
