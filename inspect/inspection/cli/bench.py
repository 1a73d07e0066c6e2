"""``inspect bench``: the inference core against PyTorch."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from pathlib import Path

from inspection.classify.bench import TorchSide
from inspection.classify.card import read_card
from inspection.cli.common import (
    UsageError,
    model_folder,
    number,
)
from inspection.report.records import record_path, write_record


def _torch_side(model_dir: Path, *, compile: bool) -> TorchSide | None:
    """PyTorch on the model's weights, when torch is installed and the card names its state dict."""
    card, _ = read_card(model_dir)
    if card.torch_weights is None or importlib.util.find_spec("torch") is None:
        return None
    from inspection.train.eager import matmul_peak_gflops, measure_torch  # the worker processes run them

    return TorchSide(measure_torch, matmul_peak_gflops, compile=compile)


def _cmd_bench(args: argparse.Namespace) -> int:
    from inspection.classify.bench import format_table, run_bench

    try:
        batch_sizes = tuple(int(size) for size in args.batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r}: expected integers such as 1,8,32") from None
    if not batch_sizes or min(batch_sizes) < 1:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r}: every batch size must be at least 1")
    precisions = ("fp32", *(["fp16"] if args.fp16 else []), *(["int8"] if args.int8 else []))
    path = record_path(args.out, name=f"bench-{args.model.name}-{args.device}", host=platform.node())
    print(f"inspect: recording in {path} as each configuration finishes", file=sys.stderr)
    try:
        record = run_bench(args.model, device=args.device, batch_sizes=batch_sizes, seconds=args.seconds,
                           precisions=precisions, cuda_graph=args.cuda_graph, stream_fps=args.stream_fps,
                           torch=_torch_side(args.model, compile=args.compile), tune=args.tune,
                           config_limit_s=args.config_limit, progress=lambda partial: write_record(partial, path))
    except BaseException:
        if path.stat().st_size == 0:  # failed before its first configuration: no record to keep
            path.unlink()
        raise
    if args.json:
        print(json.dumps(record))
    else:
        print(format_table(record))
    print(f"inspect: recorded in {path}", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    bench = commands.add_parser(
        "bench", help="throughput and latency of the inference core vs plain PyTorch, on CPU or GPU",
        description="For each batch size and precision: images/s, p50/p99 latency and peak memory of the ONNX "
                    "Runtime core and of PyTorch (eager one at a time and batched, and compiled with --compile, "
                    "when torch is installed) on the same model and inputs; the best core against the best "
                    "batched PyTorch; each precision's GFLOP/s against the device's own GEMM peak measured in the "
                    "same run; and a simulated camera stream through the micro-batcher. Each configuration runs in "
                    "its own process within --config-limit; the record in benchmarks/results/ is rewritten after "
                    "each, so a stopped run keeps what it measured.",
    )
    bench.add_argument("model", type=model_folder, help="model folder (model.onnx + model.json)")
    bench.add_argument("--device", choices=("cpu", "cuda", "trt", "auto"), default="cpu",
                       help="where the core runs")
    bench.add_argument("--batch-sizes", default="1,8,32,128", metavar="A,B", help="default 1,8,32,128")
    bench.add_argument("--seconds", type=number(0.01, 3600), default=3.0,
                       help="measuring time per configuration (default 3)")
    bench.add_argument("--fp16", action="store_true", help="also the FP16 variant (inspect export --fp16), and "
                       "PyTorch in FP16 on a GPU")
    bench.add_argument("--int8", action="store_true", help="also the INT8 variant (inspect export --int8)")
    bench.add_argument("--cuda-graph", action="store_true", help="on a GPU, also each core configuration with CUDA "
                       "graphs")
    bench.add_argument("--compile", action="store_true", help="also PyTorch through torch.compile at the largest "
                       "batch size (its compile time, about 30 s on a 2-core CPU, is recorded apart from its run)")
    bench.add_argument("--stream-fps", type=number(0.1, 100_000), default=200.0,
                       help="simulated camera rate (default 200)")
    bench.add_argument("--tune", action="store_true", help="first run the core with each of its provider's "
                       "settings (GPU: layout, and lanes: sessions that run a batch's chunks side by side; CPU: "
                       "NCHWc or NCHW) and record the fastest per "
                       "precision for this machine, where every later session of the model finds it")
    bench.add_argument("--config-limit", type=number(1, 86_400), default=120.0, metavar="S",
                       help="stop a configuration "
                       "after S seconds, start-up and compiling included, and record it as timed out (default 120)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where the record is written")
    bench.set_defaults(handler=_cmd_bench)
