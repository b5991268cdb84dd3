"""`batchpilot-sandbox`: start, check and stop the local sandbox in the background, or run the demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def _stack(args: argparse.Namespace) -> int:
    from batchpilot_sandbox.cluster.stack import cli

    return cli(args)


def _demo(args: argparse.Namespace) -> int:
    from batchpilot_sandbox.demo.run import run

    return run(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batchpilot-sandbox", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    for action, text in (("up", "start the control plane, sandbox kubelet, Prometheus and operator in the background"),
                         ("status", "show what runs and the KUBECONFIG to use"),
                         ("down", "stop a background sandbox")):
        s = sub.add_parser(action, help=text)
        s.add_argument("--workdir", type=Path, default=None, help="state directory (default ./.sandbox)")
        if action == "up":
            s.add_argument("--gpus", type=int, default=4, help="nvidia.com/gpu capacity of the sandbox node")
            s.add_argument("--no-operator", action="store_true", help="do not start the operator")
            s.add_argument("--keda", action="store_true", help="also run KEDA (needs `make keda`) to compare with")
            s.add_argument("--real-node", action="store_true",
                           help="also run a real node: containerd, kubelet, kube-scheduler (root; `make node-bins image`)")
        s.set_defaults(func=_stack)

    d = sub.add_parser("demo", help="bring the sandbox up, apply a sample service, run a load step, plot it")
    d.add_argument("--workdir", type=Path, default=None)
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="where the summary and plot go")
    d.add_argument("--schedule", default="40s@15,150s@120", help="load phases, duration@rate,...")
    d.add_argument("--gpus", type=int, default=4)
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))
