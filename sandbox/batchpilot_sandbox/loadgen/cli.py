"""Open-loop Poisson load generator for Triton's HTTP (KServe v2) infer endpoint, and its CLI.

Requests leave on a Poisson schedule whether or not earlier ones have answered (open loop), so a slow
server shows up as queueing latency and errors instead of a politely lower send rate.

    python -m batchpilot_sandbox.loadgen --target 127.0.0.2:8000 --model m --schedule 30s@20,2m@150
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from batchpilot_sandbox.loadgen.runner import InferInput, LoadReport, Targets, run_load
from batchpilot_sandbox.loadgen.stats import WindowReport, parse_schedule
from batchpilot_sandbox.loadgen.targets import PodTargets, discover_targets

__all__ = [
    "InferInput",
    "LoadReport",
    "PodTargets",
    "WindowReport",
    "discover_targets",
    "main",
    "parse_schedule",
    "run_load",
]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m batchpilot_sandbox.loadgen", description=__doc__)
    p.add_argument(
        "--target", action="append", default=[], help="ip:port of a Triton HTTP endpoint (repeatable)"
    )
    p.add_argument("--kubeconfig", help="find targets: ready pods of --inferenceservice in --namespace")
    p.add_argument("--namespace", default="default")
    p.add_argument("--inferenceservice")
    p.add_argument("--model", required=True, help="Triton model name")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="requests/s, constant for --duration")
    load.add_argument("--schedule", help='phases "DURATION@RATE,...", e.g. "30s@20,2m@150"')
    p.add_argument("--duration", type=float, default=60.0, help="seconds, with --rate (default 60)")
    p.add_argument("--interval", type=float, default=5.0, help="report every N seconds (default 5)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s (default 10)")
    p.add_argument("--max-in-flight", type=int, default=1000, help="open requests cap; more are dropped")
    p.add_argument("--input-name", default="INPUT")
    p.add_argument("--shape", default="1,4", help="input shape, comma separated (default 1,4)")
    p.add_argument("--datatype", default="FP32")
    args = p.parse_args(argv)
    if bool(args.target) == bool(args.kubeconfig):
        p.error("give either --target (repeatable) or --kubeconfig with --inferenceservice")
    if args.kubeconfig and not args.inferenceservice:
        p.error("--kubeconfig needs --inferenceservice")
    return args


async def _main(args: argparse.Namespace) -> LoadReport:
    phases = parse_schedule(args.schedule) if args.schedule else [(args.duration, args.rate)]
    targets: Targets = args.target
    lister = PodTargets(args.kubeconfig, args.namespace, args.inferenceservice) if args.kubeconfig else None
    if lister is not None:
        targets = lister
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def emit(report: WindowReport, kind: str = "interval") -> None:
        print(json.dumps({"type": kind, **report.to_dict()}) if args.json else report.line(), flush=True)

    try:
        shape = tuple(int(x) for x in args.shape.split(","))
        report = await run_load(
            targets,
            args.model,
            phases,
            interval_s=args.interval,
            on_interval=emit,
            stop=stop,
            seed=args.seed,
            timeout_s=args.timeout,
            max_in_flight=args.max_in_flight,
            infer_input=InferInput(args.input_name, shape, args.datatype),
        )
    finally:
        if lister is not None:
            lister.close()
    if not args.json:
        print("total:", end=" ")
    emit(report.total, "total")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 1 when any request failed."""
    args = _parse_args(argv)
    try:
        report = asyncio.run(_main(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if report.total.error_count else 0

