"""Measure, on a real GPU, what the simulator and the GPU emulator take as given: the batch curve and the
contention between Triton instances. Needs PyTorch with CUDA (and transformers for the BERT-like encoder); it is
not run by `make test` or `make bench` (CI has no GPU): run it where a GPU is, then copy the profiles it writes
into operator/batchpilot/sim/profiles.

    python3 bench/gpu_profile.py OUT_DIR [--parts curves,busy,contention] [--quick]
    python3 bench/gpu_profile.py OUT_DIR --from-measurements bench/measurements/h200-2026-12-04.json

The second form needs no GPU: it writes the profiles again from a `gpu_profile.json` measured before.

It writes, into OUT_DIR:
- `<gpu>-<model>.json`: one profile per model in the format of sim/profiles (median compute time per batch
  size), measured as the H100 profiles were: PyTorch eager, fp16, CUDA events around each batch, 5 warm-ups and 30
  timed runs per batch size, the median kept. On a slow host this is launch-bound (flat up to a batch of 32-64).
- `<gpu>-<model>-kernels.json`: the sum of the kernel times per batch (PyTorch's profiler): what the GPU itself
  needs, close to what a backend with no launch gaps pays (CUDA graphs, TensorRT). sim/profiles'
  h200-*-kernels.json were written so. Where the `contention` part was measured, both profiles carry it too:
  per batch size, the coefficient fitted over the instance counts measured (contention_points()), which the
  simulator applies to batches in flight together (sim/batcher.py).
- `gpu_profile.json`: everything measured, with the hardware and software named (bench/measurements/ keeps the
  H200 runs of 2026-12-04):
  - `eager` and `graph`: per model and batch size, the median ms in eager mode and with the whole forward pass
    replayed as one CUDA graph (no Python launch overhead: closer to what Triton's C++ backends pay);
  - `fp32`: ResNet-50 in fp32 at a few batch sizes, against fp16;
  - `busy`: per model and batch size, the kernel time and the number of kernels launched per forward pass;
  - `contention`: k model instances, each its own copy of the weights and its own CUDA stream as Triton's instances
    are, each replaying its graph back to back; per batch size and k, the ms per batch with k batches in flight, the
    throughput against one instance, and the contention coefficient the planner and the simulator use,
    `c = (t_k / t_1 - 1) / (k - 1)` (0: instances never slow each other, 1: they take turns, no gain).

Each part is written as soon as it is measured, so a run cut short still returns what it has.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENTION_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
PARTS = ("curves", "busy", "contention")
INSTANCE_COUNTS = (1, 2, 4)
FP32_BATCH_SIZES = (1, 32, 256)
WARMUPS, TIMED = 5, 30
SEQUENCE_LENGTH = 128


def _models(torch: Any) -> dict[str, Any]:
    """Model name -> a function (batch size) -> (module, input), both fp16 on the GPU, random weights (the compute
    time of a dense network does not depend on its weights)."""
    import torchvision  # type: ignore[import-untyped]

    def resnet50(batch: int, dtype: Any = torch.float16) -> tuple[Any, Any]:
        module = torchvision.models.resnet50(weights=None).eval().to("cuda", dtype)
        return module, torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)

    def bert(batch: int, dtype: Any = torch.float16) -> tuple[Any, Any]:
        from transformers import BertConfig, BertModel  # type: ignore[import-not-found]

        module = BertModel(BertConfig()).eval().to("cuda", dtype)
        return module, torch.randint(0, 30000, (batch, SEQUENCE_LENGTH), device="cuda")

    return {"resnet50-fp16": resnet50, "bert-base-seq128-fp16": bert}


def _eager_ms(torch: Any, module: Any, x: Any) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(WARMUPS + TIMED):
        start.record()
        module(x)
        end.record()
        torch.cuda.synchronize()
        if i >= WARMUPS:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def _busy(torch: Any, module: Any, x: Any) -> tuple[float, float]:
    """(ms of kernels per batch, kernels per batch) in eager mode, from PyTorch's profiler: the GPU's busy time
    without the gaps where it waits for Python to launch the next kernel."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(WARMUPS):
        module(x)
    torch.cuda.synchronize()
    runs = 10
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            module(x)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    return sum(e.time_range.elapsed_us() for e in kernels) / 1000.0 / runs, len(kernels) / runs


def _graph(torch: Any, module: Any, x: Any, stream: Any) -> Any:
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        module(x)
    torch.cuda.synchronize()
    return graph


def _graph_ms(torch: Any, graph: Any) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(WARMUPS + TIMED):
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        if i >= WARMUPS:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def _concurrent_ms(torch: Any, graphs: list[Any], streams: list[Any], rounds: int) -> float:
    """Wall ms per batch while every graph replays `rounds` times back to back on its own stream (median of 5)."""
    walls = []
    for _ in range(6):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(rounds):
            for graph, stream in zip(graphs, streams, strict=True):
                with torch.cuda.stream(stream):
                    graph.replay()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1000.0 / rounds)
    return statistics.median(walls[1:])


def _hardware(torch: Any) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    return {
        "gpu": props.name, "multiprocessors": props.multi_processor_count, "nvidia_smi": smi,
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "measured": time.strftime("%Y-%m-%d"),
    }


class Report:
    def __init__(self, out: Path, hardware: dict[str, Any]) -> None:
        self.out, self.data = out, {"hardware": hardware, "eager": {}, "graph": {}, "fp32": {}, "busy": {}, "contention": {}}

    def put(self, part: str, model: str, key: str, value: Any) -> None:
        self.data[part].setdefault(model, {})[key] = value
        (self.out / "gpu_profile.json").write_text(json.dumps(self.data, indent=1) + "\n")
        print(f"{part:10} {model:22} {key:>8}: {value}", flush=True)

    def write_profile(self, model: str, part: str) -> None:
        """`<gpu>-<model>.json` from the eager curve, `<gpu>-<model>-kernels.json` from the kernel times."""
        hw = self.data["hardware"]
        accelerator = hw["gpu"].lower().replace("nvidia ", "nvidia-").replace(" ", "-")
        measured = self.data.get(part, {}).get(model, {})
        if part == "busy":
            points = [{"batch_size": int(b), "latency_ms": round(v["kernel_ms"], 3)} for b, v in measured.items()
                      if isinstance(v, dict)]
            method = (f"eager: the sum of the forward pass's kernel times (PyTorch profiler, mean of 10 runs after "
                      f"{WARMUPS} warm-ups), the time the GPU is busy without waiting for launches")
        else:
            points = [{"batch_size": int(b), "latency_ms": round(ms, 3)} for b, ms in measured.items()]
            method = f"eager, CUDA events, {TIMED} timed runs after {WARMUPS} warm-ups per batch size, the median"
        if not points:
            return
        profile: dict[str, Any] = {
            "description": f"GPU compute time per batch of {model} on one {hw['gpu']} ({hw['multiprocessors']} SMs), "
            f"PyTorch {hw['torch']} {method}. Measured {hw['measured']} by bench/gpu_profile.py.",
            "model": model, "accelerator": accelerator, "points": points,
        }
        contention = contention_points(self.data.get("contention", {}).get(model, {}))
        if contention:
            profile["description"] += (
                " contention: per batch size, c of `t_n = t_1 * (1 + c * (n - 1))` with n batches in flight on "
                "one GPU, fitted over the instance counts measured (CUDA graphs on their own streams, back to back).")
            profile["contention"] = contention
        short = accelerator.split("-")[1] if accelerator.startswith("nvidia-") else accelerator
        suffix = "-kernels" if part == "busy" else ""
        (self.out / f"{short}-{model}{suffix}.json").write_text(json.dumps(profile, indent=1) + "\n")


def contention_points(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """Per batch size, the coefficient c that fits `t_k / t_1 - 1 = c * (k - 1)` best over every k measured (least
    squares: the k=4 run weighs 9x the k=2 run, it says 3x as much about c); batch sizes without a measured k > 1
    are left out. E.g. resnet50 on H200 at batch 1: k=2 0.287, k=4 0.239 -> 0.244."""
    points = []
    for size, row in measured.items():
        if not isinstance(row, dict):
            continue
        ks = [(int(k[1:]), v["contention"]) for k, v in row.items()
              if k.startswith("k") and isinstance(v, dict) and v.get("contention") is not None]
        if ks:
            c = sum((k - 1) ** 2 * ck for k, ck in ks) / sum((k - 1) ** 2 for k, _ in ks)
            points.append({"batch_size": int(size), "coefficient": round(c, 3)})
    return sorted(points, key=lambda p: p["batch_size"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    parser.add_argument("--quick", action="store_true", help="two batch sizes, one instance count: a smoke run")
    parser.add_argument("--from-measurements", type=Path, metavar="GPU_PROFILE_JSON",
                        help="write the profiles from a gpu_profile.json measured before (no GPU needed)")
    args = parser.parse_args(argv)
    if args.from_measurements is not None:
        return _rewrite(args.out, args.from_measurements)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: run this where a GPU is", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    batch_sizes = (1, 32) if args.quick else BATCH_SIZES
    report = Report(args.out, _hardware(torch))
    print(json.dumps(report.data["hardware"]), flush=True)
    parts = set(args.parts.split(","))
    with torch.no_grad():
        for model, make in _models(torch).items() if "busy" in parts else ():
            for b in batch_sizes:
                module, x = make(b)
                try:
                    ms, count = _busy(torch, module, x)
                    report.put("busy", model, str(b), {"kernel_ms": round(ms, 4), "kernels": count})
                except Exception as error:  # noqa: BLE001 - the profiler is a lead, not a requirement
                    report.put("busy", model, str(b), f"not profiled: {error}")
                del module, x
            report.write_profile(model, "busy")
        for model, make in _models(torch).items() if "curves" in parts else ():
            for b in batch_sizes:
                module, x = make(b)
                report.put("eager", model, str(b), round(_eager_ms(torch, module, x), 4))
                try:
                    report.put("graph", model, str(b), round(_graph_ms(torch, _graph(torch, module, x, torch.cuda.Stream())), 4))
                except Exception as error:  # noqa: BLE001 - a model that cannot be captured still has its eager curve
                    report.put("graph", model, str(b), f"not captured: {error}")
                del module, x
                torch.cuda.empty_cache()
            report.write_profile(model, "eager")
        make = _models(torch)["resnet50-fp16"]
        for b in () if "curves" not in parts else (1,) if args.quick else FP32_BATCH_SIZES:
            module, x = make(b, torch.float32)
            report.put("fp32", "resnet50-fp32", str(b), round(_eager_ms(torch, module, x), 4))
        for model, make in _models(torch).items() if "contention" in parts else ():
            for b in (1,) if args.quick else CONTENTION_BATCH_SIZES:
                instances = [make(b) for _ in range(max(INSTANCE_COUNTS))]
                streams = [torch.cuda.Stream() for _ in instances]
                graphs = [_graph(torch, m, x, s) for (m, x), s in zip(instances, streams, strict=True)]
                single = _graph_ms(torch, graphs[0])
                rounds = max(10, int(200 / max(single, 0.1)))
                t1 = _concurrent_ms(torch, graphs[:1], streams[:1], rounds)
                row: dict[str, Any] = {"graph_ms": round(single, 4), "rounds": rounds}
                for k in (1, 2) if args.quick else INSTANCE_COUNTS:
                    tk = t1 if k == 1 else _concurrent_ms(torch, graphs[:k], streams[:k], rounds)
                    row[f"k{k}"] = {
                        "ms_per_batch": round(tk, 4), "throughput_vs_1": round(k * t1 / tk, 3),
                        "contention": None if k == 1 else round((tk / t1 - 1) / (k - 1), 3),
                    }
                report.put("contention", model, str(b), row)
                del instances, graphs
                torch.cuda.empty_cache()
            for part in ("busy", "eager"):  # the profiles measured above, now with their contention
                report.write_profile(model, part)
    return 0


def _rewrite(out: Path, measurements: Path) -> int:
    data = json.loads(measurements.read_text())
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, data["hardware"])
    report.data = data
    for part in ("busy", "eager"):
        for model in data.get(part, {}):
            report.write_profile(model, part)
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.json')))} into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
