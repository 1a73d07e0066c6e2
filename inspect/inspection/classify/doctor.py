"""What this installation runs models with (``inspect doctor``): the ONNX Runtime build actually imported, its
providers, the GPU, the versions of the modules loaded, and a model run on each device asked for."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from inspection.classify.card import read_card
from inspection.classify.runtime import (
    TENSORRT_ADVICE,
    TENSORRT_LIBRARIES,
    Classifier,
    Device,
    DeviceError,
    Precision,
    onnxruntime,
    tensorrt_libraries,
)
from inspection.classify.timing import nvidia_gpus
from inspection.types import InspectionError

ONNXRUNTIME_BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
                      "ort-nightly", "ort-nightly-gpu")
"""Distributions that each install the ``onnxruntime`` module: two of them in one environment overwrite each
other's files, and which providers survive depends on which was installed last."""


def onnxruntime_builds() -> list[str]:
    """The installed distributions that provide the ``onnxruntime`` module, with their versions."""
    found = []
    for name in ONNXRUNTIME_BUILDS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def loaded_versions() -> dict[str, str]:
    """Versions of the modules this process has imported (what runs), and of torch as installed (the inference
    path never imports it)."""
    import cv2

    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        versions["wafer-inspect"] = metadata.version("wafer-inspect")
    except metadata.PackageNotFoundError:
        versions["wafer-inspect"] = "not installed (source tree)"
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["torch (installed, not imported)"] = metadata.version("torch")
    return versions


def check_device(model_dir: Path, device: Device, *, batch_size: int = 64) -> dict[str, Any]:
    """Run ``model_dir`` on ``device`` and on the CPU with the same seeded batch: the providers that ran it and
    how far its probabilities are from the CPU's (what a line's decisions would see)."""
    try:
        on_device = Classifier(model_dir, device=device)
    except InspectionError as exc:
        return {"device": device, "ok": False, "error": str(exc)}
    card = on_device.card
    batch = np.random.default_rng(0).standard_normal(
        (batch_size, card.input.channels, card.input.height, card.input.width), dtype=np.float32)
    expected, found = Classifier(model_dir).predict(batch), on_device.predict(batch)
    max_abs_diff = float(np.abs(expected - found).max())
    agreement = float((expected.argmax(1) == found.argmax(1)).mean())
    return {"device": device, "ok": agreement == 1.0 and max_abs_diff <= 1e-3,
            "providers": on_device.session.get_providers(), "model": str(model_dir), "images": batch_size,
            "max_abs_diff_vs_cpu": max_abs_diff, "argmax_agreement_vs_cpu": agreement,
            "pinned_host_memory": on_device.pinned_host_memory}


def check_variants(models: Sequence[Path], *, devices: Sequence[Device] = ("cpu",)) -> list[dict[str, Any]]:
    """Load every variant of each model (FP32, and the card's FP16 and INT8) on each device, as a line would:
    each runs the card's check inputs (``Classifier.check``). INT8 is a CPU variant and runs on the CPU only.

    Returns
    -------
    list of dict
        One per model, precision and device: ``ok``, and the check's figures or the ``error`` that refused it.
    """
    rows = []
    for model_dir in models:
        try:
            card, _ = read_card(model_dir)
        except InspectionError as exc:
            rows.append({"model": str(model_dir), "ok": False, "error": str(exc)})
            continue
        precisions: list[Precision] = [p for p in ("fp32", "fp16", "int8") if card.variant(p) is not None]
        for device in devices:
            for precision in precisions:
                if precision == "int8" and device != "cpu":
                    continue
                row = {"model": str(model_dir), "precision": precision, "device": device}
                try:
                    loaded = Classifier(model_dir, precision=precision, device=device)
                except InspectionError as exc:
                    rows.append({**row, "ok": False, "error": str(exc)})
                    continue
                rows.append({**row, "ok": True, "check": loaded.check_report,
                             "tuning": f"{loaded.tuning.name} ({loaded.tuning_source})"})
    return rows


def diagnose(*, devices: tuple[Device, ...] = (), model_dir: Path | None = None,
             variant_models: Sequence[Path] = ()) -> dict[str, Any]:
    """The installation's inference set-up and its problems (each with how to fix it).

    Parameters
    ----------
    devices : tuple of {"cpu", "cuda", "trt", "auto"}
        Devices to run ``model_dir`` on, each compared with the CPU.
    model_dir : Path, optional
        The model those checks run (required when ``devices`` is not empty).
    variant_models : sequence of Path
        Models whose every variant is loaded and checked on the CPU and each of ``devices``
        (:func:`check_variants`).

    Returns
    -------
    dict
        ``onnxruntime`` (version, file, builds installed, providers), ``tensorrt`` (where its libraries were
        found), ``gpus``, ``versions``, ``checks``, ``variants`` and ``problems`` (empty when all is well).
    """
    problems: list[str] = []
    builds = onnxruntime_builds()
    if len(builds) > 1:
        problems.append(f"{' and '.join(builds)} are all installed: they overwrite each other's files. Keep one: "
                        f"pip uninstall -y {' '.join(b.split('==')[0] for b in builds)} && pip install "
                        "-e '.[gpu]' (or -e '.[cpu]')")
    try:
        runtime = onnxruntime()
        imported = {"version": runtime.__version__, "file": str(Path(runtime.__file__).parent),
                    "builds_installed": builds, "providers": runtime.get_available_providers(),
                    "device": runtime.get_device()}
    except DeviceError as exc:
        problems.append(str(exc))
        imported = {"builds_installed": builds}
    tensorrt = None
    if "TensorrtExecutionProvider" in imported.get("providers", []):
        tensorrt = tensorrt_libraries() or f"not installed: the provider is listed, but {TENSORRT_LIBRARIES[0]} is " \
            f"missing, so --device trt is refused ({TENSORRT_ADVICE})"
    gpus = nvidia_gpus()
    if gpus and "CUDAExecutionProvider" not in imported.get("providers", []):
        problems.append(f"{gpus[0]['name']} is here but ONNX Runtime has no CUDA provider: pip uninstall -y "
                        "onnxruntime && pip install -e '.[gpu]'")
    checks = []
    for device in devices:
        assert model_dir is not None
        check = check_device(model_dir, device)
        checks.append(check)
        if "error" in check:
            problems.append(check["error"])
        elif not check["ok"]:
            problems.append(f"--device {device}: max |dp| {check['max_abs_diff_vs_cpu']:.2e} and argmax agreement "
                            f"{check['argmax_agreement_vs_cpu']:.2%} against the CPU (expected <= 1e-3 and 100%)")
    variants = check_variants(variant_models, devices=tuple(dict.fromkeys(("cpu", *devices))))
    problems += [row["error"] for row in variants if not row["ok"]]
    return {"onnxruntime": imported, "tensorrt": tensorrt, "gpus": gpus, "versions": loaded_versions(),
            "checks": checks, "variants": variants,
            "problems": list(dict.fromkeys(problems))}  # a device missing for every model: said once
