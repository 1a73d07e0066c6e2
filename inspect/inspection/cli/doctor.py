"""``inspect doctor``: the ONNX Runtime build, providers, GPU and versions this installation runs models with."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inspection.classify.doctor import diagnose
from inspection.cli.common import model_folder
from inspection.model_paths import installed_models


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = diagnose(devices=tuple(args.device or ()), model_dir=args.model,
                      variant_models=[] if args.no_variants else [
                          path for _, path in installed_models() if (path / "model.onnx").is_file()])
    if args.json:
        print(json.dumps(report))
        return 1 if report["problems"] else 0
    runtime = report["onnxruntime"]
    if "version" in runtime:
        print(f"ONNX Runtime {runtime['version']} from {runtime['file']} ({', '.join(runtime['builds_installed'])})")
        print(f"  providers: {', '.join(runtime['providers'])}")
    else:
        print("ONNX Runtime: not installed")
    for gpu in report["gpus"] or [{"name": "none found (nvidia-smi)"}]:
        print("GPU: " + ", ".join(f"{key} {value}" if key != "name" else value for key, value in gpu.items()))
    if report["tensorrt"]:
        print(f"  TensorRT libraries: {report['tensorrt']}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()))
    for row in report["variants"]:
        if not row["ok"]:
            continue  # printed with the problems
        check = row["check"]
        figures = (f"max |dp| {check['max_abs_diff']:.2e} (tolerance {check['tolerance']['max_abs_diff']:g}), "
                   f"argmax agreement {check['argmax_agreement']:.0%} on {check['images']} check inputs"
                   if check else "the reference itself (no check set)")
        print(f"variant ok: {Path(row['model']).name} {row['precision']} on {row['device']}: {figures}; tuning "
              f"{row['tuning']}")
    for check in report["checks"]:
        if "error" in check:
            print(f"FAILED: {check['error']}")
            continue
        print(f"--device {check['device']}: {'ok' if check['ok'] else 'FAILED'}: {check['model']} ran on "
              f"{check['providers'][0]}, max |dp| {check['max_abs_diff_vs_cpu']:.2e} and argmax agreement "
              f"{check['argmax_agreement_vs_cpu']:.2%} against the CPU on {check['images']} images"
              + ("; batches from pinned host memory" if check["pinned_host_memory"] else ""))
    failed = {check["error"] for check in report["checks"] if "error" in check}
    for problem in report["problems"]:
        if problem not in failed:  # said once, as FAILED, above
            print(f"PROBLEM: {problem}")
    return 1 if report["problems"] else 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    doctor = commands.add_parser(
        "doctor", help="the ONNX Runtime build, providers, GPU and versions in use; a model run on each --device",
        description="Prints the ONNX Runtime actually imported (version, folder, which of its builds are "
                    "installed: two builds overwrite each other's files), its execution providers, the GPUs "
                    "nvidia-smi lists and the versions of the modules loaded; loads every variant (FP32, FP16, "
                    "INT8) of every installed model on the CPU and each --device, each checked against its card's "
                    "check inputs. With --device, runs --model on that device and on the CPU and compares them. "
                    "Exits 1 when it finds a problem.")
    doctor.add_argument("--device", action="append", choices=("cpu", "cuda", "trt", "auto"),
                        help="run the model on this device too (repeatable)")
    doctor.add_argument("--model", type=model_folder, default="die-patchnet-v1",
                        help="the model the device checks run (default die-patchnet-v1, installed with the package)")
    doctor.add_argument("--no-variants", action="store_true", help="skip loading every installed model's "
                        "variants on each device against its check inputs")
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.set_defaults(handler=_cmd_doctor)
