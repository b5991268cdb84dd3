"""`batchpilot profile`: the arguments to a profile, printed or written as YAML or a merge patch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batchpilot.adapters.triton import TritonAdmin, TritonError
from batchpilot.build.names import HTTP_PORT
from batchpilot.profiling.files import (
    ProfileError,
    as_patch,
    as_yaml,
    from_model_analyzer,
    from_perf_analyzer,
    profile,
)
from batchpilot.profiling.measure import measure


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="spec.model.profile: measured on a running Triton, or read from "
                                       "perf_analyzer or Model Analyzer CSVs",
                       description="Write spec.model.profile (compute time per batch size) as YAML to paste under "
                                   "spec.model, or as a merge patch for kubectl patch --type merge --patch-file.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--triton", metavar="HOST[:PORT]",
                        help=f"measure on this Triton's HTTP endpoint (port {HTTP_PORT} by default); nothing else "
                             "should send to the model meanwhile")
    source.add_argument("--perf-analyzer", nargs="+", metavar="BATCH=FILE",
                        help="CSVs of `perf_analyzer -b BATCH -f FILE`, one per batch size")
    source.add_argument("--model-analyzer", metavar="FILE", type=Path,
                        help="Model Analyzer's metrics-model-inference.csv with the server compute columns")
    p.add_argument("--model", help="the Triton model name (with --triton)")
    p.add_argument("--model-config", help="with --model-analyzer: the Model Config Path whose rows to use")
    p.add_argument("--batch-sizes", help="with --triton: comma-separated sizes (default: powers of two up to the "
                                         "model's max_batch_size, and it)")
    p.add_argument("--repeats", type=int, default=20, help="with --triton: executions per batch size (default 20)")
    p.add_argument("--shape", action="append", default=[], metavar="INPUT=D1,D2,...",
                   help="with --triton: dims (without the batch dimension) of an input with variable dims")
    p.add_argument("--format", choices=["yaml", "patch"], default="yaml")
    p.add_argument("--output", type=Path, help="write here instead of standard output")
    p.set_defaults(func=run)


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, rest = v.partition("=")
        if not sep or not key or not rest:
            raise ProfileError(f"{flag} {v!r}: expected NAME=VALUE, e.g. {flag} 8=perf_b8.csv")
        out.append((key, rest))
    return out


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProfileError(f"{what} {text!r}: expected whole numbers separated by commas, e.g. 1,8,32") from None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ProfileError(f"cannot read {path}: {e.strerror}") from None


def run(args: argparse.Namespace) -> int:
    try:
        if args.triton:
            if not args.model:
                raise ProfileError("--triton needs --model (the model's name in Triton)")
            host, _, port = args.triton.partition(":")
            admin = TritonAdmin(host, int(port) if port else HTTP_PORT)
            shapes = {name: _ints(dims, f"--shape {name}") for name, dims in _pairs(args.shape, "--shape")}
            sizes = _ints(args.batch_sizes, "--batch-sizes") if args.batch_sizes else None
            points = measure(admin, args.model, sizes, args.repeats, shapes,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
        elif args.perf_analyzer:
            points = [from_perf_analyzer(_ints(b, "--perf-analyzer batch size")[0], _read(Path(f)), f)
                      for b, f in _pairs(args.perf_analyzer, "--perf-analyzer")]
        else:
            points = from_model_analyzer(_read(args.model_analyzer), args.model_config, str(args.model_analyzer))
        text = (as_patch if args.format == "patch" else as_yaml)(profile(points))
    except (ProfileError, TritonError) as e:
        print(f"batchpilot profile: error: {e}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(profile(points).points)} points)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
