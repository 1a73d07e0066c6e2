"""Export a trained checkpoint to ONNX with its card, checking parity with torch on real validation images."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from inspection.acquire.folder import IMAGE_SUFFIXES, read_image
from inspection.acquire.labelled import LabelledImages, list_labelled_folder
from inspection.classify import Classifier
from inspection.classify.anomaly import AnomalyModel
from inspection.classify.card import (
    DEFAULT_CHECK_TOLERANCE,
    CheckSet,
    DetectorSettings,
    Fp16Variant,
    InputSpec,
    Int8Variant,
    ModelCard,
    Normalisation,
    Parity,
    Thresholds,
    onnx_metadata,
    read_card,
    sha256_of,
)
from inspection.classify.prepare import normalise
from inspection.classify.timing import cpu_description
from inspection.evaluate.folders import evaluate_folder
from inspection.evaluate.metrics import classification_report, confusion_matrix, operating_point
from inspection.report import draw_confusion, save_png
from inspection.train.curves import save_training_curves
from inspection.train.data import load_units
from inspection.train.models import build_model
from inspection.types import InspectionError

log = logging.getLogger("inspection.train")
OPSET = 17
PARITY_TOLERANCE = 1e-4
INT8_FILE = "model-int8.onnx"
FP16_FILE = "model-fp16.onnx"
FP16_PARITY_TOLERANCE = 2e-2
"""Largest |p(fp16) - p(fp32)| an FP16 variant may show on real images (half precision keeps 11 significant
bits); its argmax must agree on at least FP16_ARGMAX_AGREEMENT of them (a near-tie may flip)."""
FP16_ARGMAX_AGREEMENT = 0.999
INT8_QUANTISER = {"per_channel": True, "reduce_range": True}
"""7-bit weights (``reduce_range``): on x86 CPUs without VNNI, ONNX Runtime multiplies uint8 activations by int8
weights with VPMADDUBSW, whose int16 pair sums saturate; the die model lost 27 points of accuracy that way
(0.758 against 0.983, emulated AVX2) and none with 7-bit weights, which cannot saturate (ONNX Runtime's
quantisation guide)."""


WEIGHTS_FILE = "weights.pt"
CHECKS_FILE = "checks.npz"
CHECK_IMAGES = 32
"""Check inputs per model: enough for an INT8 variant that saturates (a quarter of its decisions wrong) to show
in every class, few enough to run in milliseconds whenever a variant is loaded."""
ANOMALY_CHECK_IMAGES = 2
"""An anomaly model takes whole images (640 x 640 for the PCB one): two keep its check set near 1 MB."""
CHECK_MIN_MARGIN = 0.2
"""Check inputs are preferably images FP32 decides by at least this much (top two probabilities): a near-tie
may flip under any honest rounding, and would make the check refuse a sound variant."""


def count_flops(network: nn.Module, spec: InputSpec) -> int:
    """FLOPs (2 x multiply-adds) of one image through the convolutions and linear layers."""
    total = 0

    def conv(module: nn.Conv2d, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * output[0].numel() * kernel

    def linear(module: nn.Linear, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        network.eval()(torch.zeros(1, spec.channels, spec.height, spec.width))
    for hook in hooks:
        hook.remove()
    return total


class ExportError(InspectionError, RuntimeError):
    """The exported graph does not reproduce the trained network (parity), or cannot be written."""


def _validation_set(checkpoint: dict[str, Any]) -> LabelledImages:
    data = checkpoint["data"]
    paths = tuple(Path(p) for p in data["val_paths"])
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ExportError(f"{len(missing)} validation image(s) used for the parity check are gone, e.g. {missing[0]}")
    labels = np.asarray(data["val_labels"], np.int64)
    return LabelledImages(Path(data["root"]), tuple(checkpoint["card"]["class_names"]), paths, labels,
                          np.full(len(paths), "val"), ())


def _batched_probabilities(model: nn.Module, session: ort.InferenceSession, batch: np.ndarray,
                           *, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    torch_out, onnx_out = [], []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            chunk = batch[start : start + batch_size]
            torch_out.append(model(torch.from_numpy(chunk)).numpy())
            onnx_out.append(session.run(["probabilities"], {"images": chunk})[0])
    return np.concatenate(torch_out), np.concatenate(onnx_out)


def export_model(model_dir: Path, *, opset: int = OPSET, detector: DetectorSettings | None = None) -> ModelCard:
    """Write ``model.onnx`` and ``model.json`` (+ confusion and curve pictures) from ``model_dir/best.pt``.

    ``detector`` puts a golden-template detector's settings into the card (PCB models); without it, a
    re-export keeps the detector section the folder's card already has.

    Validation metrics and the operating point are computed from the ONNX Runtime outputs, the numbers
    the line will see. Raises ExportError if ONNX Runtime and torch disagree beyond the tolerance.
    """
    source = model_dir / "best.pt"
    if not source.is_file():
        raise ExportError(f"{source}: no training checkpoint to export from (written by `inspect train`)")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a bad file
        reason = str(exc).splitlines()[0]
        raise ExportError(f"{source}: not a checkpoint written by `inspect train` ({reason})") from None
    base = checkpoint["card"]
    if detector is None and (model_dir / "model.json").is_file():
        detector = read_card(model_dir)[0].detector
    spec, normalisation = InputSpec(**base["input"]), Normalisation(**base["normalisation"])
    network = build_model(base["arch"], n_classes=len(base["class_names"]), in_channels=spec.channels)
    network.load_state_dict(checkpoint["model"])
    model = nn.Sequential(network, nn.Softmax(dim=1)).eval()
    torch.save(network.state_dict(), model_dir / WEIGHTS_FILE)

    onnx_path = model_dir / "model.onnx"
    partial = model_dir / ".model.onnx.partial"
    example = torch.zeros(2, spec.channels, spec.height, spec.width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; its output is what we check
        torch.onnx.export(model, (example,), str(partial), input_names=["images"], output_names=["probabilities"],
                          dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    os.replace(partial, onnx_path)

    validation = _validation_set(checkpoint)
    prepared = load_units(validation, spec=spec, label="parity check")
    batch = normalise(prepared.units, normalisation=normalisation)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    torch_probabilities, onnx_probabilities = _batched_probabilities(model, session, batch)
    max_abs_diff = float(np.abs(torch_probabilities - onnx_probabilities).max())
    agreement = float((torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).mean())
    if max_abs_diff > PARITY_TOLERANCE or agreement < 1.0:
        raise ExportError(f"{onnx_path}: ONNX Runtime differs from torch on {len(batch)} validation images: "
                          f"max |dp| {max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:.0e}), argmax agreement "
                          f"{agreement:.4%} (required 100%)")

    class_names = base["class_names"]
    confusion = confusion_matrix(prepared.labels, onnx_probabilities.argmax(1), n_classes=len(class_names))
    metrics = {"val": classification_report(confusion, class_names=class_names)}
    thresholds = Thresholds(good_class=base["good_class"])
    if base["good_class"] is not None:
        good = class_names.index(base["good_class"])
        point = operating_point(1.0 - onnx_probabilities[:, good], prepared.labels != good,
                                target_recall=base["target_recall"])
        thresholds = Thresholds(good_class=base["good_class"], defect_score=point["threshold"],
                                target_defect_recall=base["target_recall"], val_defect_recall=point["defect_recall"],
                                val_overkill=point["overkill"])
    card = ModelCard(
        task=base["task"], arch=base["arch"], class_names=class_names, input=spec, normalisation=normalisation,
        thresholds=thresholds, opset=opset, onnx_sha256=sha256_of(onnx_path), training=checkpoint["training"],
        metrics=metrics,
        parity=Parity(samples=len(batch), max_abs_diff=max_abs_diff, argmax_agreement=agreement,
                      tolerance=PARITY_TOLERANCE),
        flops_per_image=count_flops(network, spec), torch_weights=WEIGHTS_FILE, detector=detector,
    )
    card.onnx_sha256 = stamp_metadata(onnx_path, card)
    card.write(model_dir)
    write_checks(model_dir, batch, labels=prepared.labels, source=f"validation images of {validation.root}")
    Classifier(model_dir)  # the line's loader accepts it: sha256, input name and shape, dynamic batch, checks
    save_png(model_dir / "confusion.png", draw_confusion(confusion, class_names=class_names,
                                                         title=f"{base['arch']} validation (ONNX Runtime)"))
    training = checkpoint["training"]
    save_training_curves(training["history"], model_dir / "training.png", title=f"{base['arch']} training",
                         best_epoch=training["best_epoch"])
    return card


def stamp_metadata(onnx_path: Path, card: ModelCard) -> str:
    """Write the card's essentials into an ONNX file (``metadata_props``, ``doc_string``, ``model_version``),
    atomically; returns the file's new sha256 for the card.

    ``model_version`` is the N of a model folder named ``<task>-<arch>-v<N>`` (1 otherwise): the version the
    models folder gives it. Nothing of the moment of stamping goes in, so the same training gives the same bytes
    (the card's ``training.created`` keeps the time).
    """
    model = onnx.load(str(onnx_path))
    _sort_nodes(model.graph)
    del model.metadata_props[:]
    for key, value in onnx_metadata(card).items():
        model.metadata_props.add(key=key, value=value)
    output = ("output probabilities [batch, classes]" if card.anomaly is None else
              f"output {card.output_name} [batch, 1, height/{card.anomaly.map_stride_px}, "
              f"width/{card.anomaly.map_stride_px}], scores 0..1, threshold in the metadata")
    model.doc_string = (f"wafer-inspect {card.task} model ({card.arch}): classes {', '.join(card.class_names)}; "
                        f"input {card.input.name} [batch, {card.input.channels}, {card.input.height}, "
                        f"{card.input.width}] float32 scaled by the bit depth and normalised as the metadata says; "
                        f"{output}. Its card is model.json beside it.")
    numbered = re.search(r"-v(\d{1,9})$", onnx_path.resolve().parent.name)
    model.model_version = int(numbered.group(1)) if numbered else 1
    partial = onnx_path.with_name(f".{onnx_path.name}.partial")
    onnx.save(model, str(partial))
    os.replace(partial, onnx_path)
    return sha256_of(onnx_path)


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Put ``graph``'s nodes in topological order, in place (ONNX requires it; the FP16 converter appends the
    input casts after the nodes that read them, which ONNX Runtime accepts and ``onnx.checker`` does not)."""
    available = {value.name for value in (*graph.input, *graph.initializer)} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ExportError(f"graph {graph.name!r}: a cycle or an input no node makes, among "
                              f"{', '.join(node.name or node.op_type for node in pending[:5])}")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if all(node is not done for done in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def restamp(model_dir: Path) -> ModelCard:
    """Rewrite the metadata of every ONNX file of ``model_dir`` from its card (after an upgrade that writes more
    of it) and the card's sha256 values with them. The graphs' computation is unchanged: their nodes are only
    put in topological order."""
    card = read_card(model_dir)[0]
    card.onnx_sha256 = stamp_metadata(model_dir / card.onnx_file, card)
    for variant in (card.int8, card.fp16):
        if variant is not None:
            variant.sha256 = stamp_metadata(model_dir / variant.file, card)
    card.write(model_dir)
    return card


def write_checks(model_dir: Path, inputs: np.ndarray, *, source: str, labels: np.ndarray | None = None,
                 count: int = CHECK_IMAGES) -> CheckSet:
    """Choose a model's check inputs, compute FP32's outputs for them here, and record both in its card.

    Parameters
    ----------
    model_dir : Path
        A model folder with its FP32 ``model.onnx`` and card.
    inputs : (N, C, H, W) float32 array
        Prepared real inputs (normalised as the card says).
    source : str
        Where they came from, for the card.
    labels : (N,) int array, optional
        Their classes: the check set takes about as many of each (seeded), preferring inputs FP32 decides
        clearly (``CHECK_MIN_MARGIN``).
    count : int
        At most this many check inputs.

    Returns
    -------
    CheckSet
        As written into the card; the inputs (rounded to float16 to keep the file small, the outputs computed
        on exactly those values) and outputs are in ``checks.npz``.
    """
    fp32 = Classifier(model_dir, check=False)
    rounded = inputs.astype(np.float16)
    reference = np.concatenate([fp32.predict(rounded[i : i + 256].astype(np.float32))
                                for i in range(0, len(rounded), 256)])
    if labels is None:
        labels = np.zeros(len(inputs), np.int64)
    ranked = np.sort(reference, axis=1) if reference.ndim == 2 else None
    clear = (ranked[:, -1] - ranked[:, -2] >= CHECK_MIN_MARGIN) if ranked is not None and ranked.shape[1] > 1 else (
        np.ones(len(inputs), bool))
    rng = np.random.default_rng(0)
    classes = np.unique(labels)
    per_class = max(1, count // len(classes))
    chosen: list[int] = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        chosen += sorted(members, key=lambda i: not clear[i])[:per_class]
    chosen = sorted(chosen)[:count]
    path, partial = model_dir / CHECKS_FILE, model_dir / f".{CHECKS_FILE}.partial"
    with partial.open("wb") as file:
        np.savez_compressed(file, inputs=rounded[chosen], outputs=reference[chosen])
    os.replace(partial, path)
    card = fp32.card
    card.checks = CheckSet(file=CHECKS_FILE, sha256=sha256_of(path), images=len(chosen), source=source,
                           made_on=cpu_description(), tolerance=dict(DEFAULT_CHECK_TOLERANCE))
    card.write(model_dir)
    return card.checks


def add_checks(model_dir: Path, folder: Path) -> CheckSet:
    """``inspect export MODEL --checks FOLDER``: a check set from real images, for a model made before check sets
    existed or whose inputs should be others: a labelled folder for a classifier, a folder of good images for an
    anomaly model."""
    card = Classifier(model_dir, check=False).card
    if card.anomaly is not None:
        model = AnomalyModel(model_dir)
        paths = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES][:ANOMALY_CHECK_IMAGES]
        if not paths:
            raise ExportError(f"--checks {folder}: no image for the anomaly model's check set")
        inputs = [model.prepare(image, layout=layout, bit_depth=bits, source=str(path))
                  for path in paths for image, layout, bits in [read_image(path)]]
        return write_checks(model_dir, np.stack(inputs), source=str(folder), count=len(inputs))
    images = list_labelled_folder(folder, class_names=tuple(card.class_names), min_classes=1)
    prepared = load_units(images, spec=card.input, label="check inputs")
    return write_checks(model_dir, normalise(prepared.units, normalisation=card.normalisation),
                        labels=prepared.labels, source=str(folder))


def _at_most(images: LabelledImages, count: int) -> LabelledImages:
    """At most ``count`` of the images, drawn with seed 0 and kept in folder order."""
    chosen = np.random.default_rng(0).permutation(len(images.paths))[:count]
    return images.subset(np.isin(np.arange(len(images.paths)), chosen))


class _CalibrationReader:
    """Feeds ONNX Runtime's static quantiser prepared batches of calibration images."""

    def __init__(self, batch: np.ndarray, *, batch_size: int = 32) -> None:
        self.chunks = iter([batch[i : i + batch_size] for i in range(0, len(batch), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {"images": chunk}


def quantize_int8(model_dir: Path, *, calibration_folder: Path, eval_folder: Path | None = None,
                  max_calibration_images: int = 512) -> Int8Variant:
    """Static INT8 quantisation (QDQ, per-channel 7-bit weights) calibrated on real images, recorded in the card.

    Both precisions are evaluated on ``eval_folder`` (default: the calibration folder) so the accuracy
    change is stated beside the FP32 model, on the CPU named in the card; loading the variant checks it against
    the card's check inputs (made here from the calibration images when the card has none).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    fp32 = Classifier(model_dir)
    card = fp32.card
    calibration = list_labelled_folder(calibration_folder, class_names=tuple(card.class_names), min_classes=1)
    calibration = _at_most(calibration, max_calibration_images)
    prepared = load_units(calibration, spec=card.input, label="calibration")
    batch = normalise(prepared.units, normalisation=card.normalisation)
    preprocessed = model_dir / ".model-preprocessed.onnx"
    if card.checks is None:
        card.checks = write_checks(model_dir, batch, labels=prepared.labels, source=str(calibration_folder))
    quant_pre_process(str(fp32.onnx_path), str(preprocessed))
    output = model_dir / INT8_FILE
    quantize_static(str(preprocessed), str(output), _CalibrationReader(batch), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, **INT8_QUANTISER)
    preprocessed.unlink()
    evaluated_on = eval_folder or calibration_folder
    variant = Int8Variant(file=INT8_FILE, sha256=stamp_metadata(output, card), calibration_images=len(batch),
                          evaluated_on=str(evaluated_on), fp32={}, int8={},
                          quantiser={"format": "QDQ", "activations": "uint8", "weights": "int8", **INT8_QUANTISER},
                          measured_on=cpu_description())
    card.int8 = variant
    card.write(model_dir)
    card.int8 = variant.model_copy(update=_compare_precisions(model_dir, "int8", evaluated_on))
    card.write(model_dir)
    return card.int8


def _compare_precisions(model_dir: Path, precision: str, folder: Path) -> dict[str, dict[str, float]]:
    """Accuracy, macro-F1 and (for a card with a good class) the operating point's defect recall and overkill of
    FP32 and of ``precision``, on the same labelled folder."""
    results = {}
    for name in ("fp32", precision):
        report = evaluate_folder(Classifier(model_dir, precision=name), folder)  # type: ignore[arg-type]
        results[name] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        if "operating_point" in report:
            results[name].update({k: report["operating_point"][k] for k in ("defect_recall", "overkill")})
    return results


def convert_fp16(model_dir: Path, *, eval_folder: Path, max_parity_images: int = 2048) -> Fp16Variant:
    """An FP16 variant of a model folder's FP32 graph, checked against it on real images, recorded in the card.

    Weights and activations become float16; the graph's input and output stay float32 (Cast nodes at both ends),
    so the prepared batch and the probabilities are what every caller already has.

    Parameters
    ----------
    model_dir : Path
        A model folder with its FP32 ``model.onnx`` and card.
    eval_folder : Path
        Labelled real images (classes among the model's): the parity check runs on up to ``max_parity_images``
        of them, and both precisions are evaluated on all of them.

    Raises
    ------
    ExportError
        When FP16 differs from FP32 beyond ``FP16_PARITY_TOLERANCE`` or its argmax agrees on fewer than
        ``FP16_ARGMAX_AGREEMENT`` of the images; the card is then left as it was.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp32 = Classifier(model_dir)
    card = fp32.card
    images = list_labelled_folder(eval_folder, class_names=tuple(card.class_names), min_classes=1)
    images = _at_most(images, max_parity_images)
    prepared = load_units(images, spec=card.input, label="FP16 parity")
    batch = normalise(prepared.units, normalisation=card.normalisation)
    if card.checks is None:
        card.checks = write_checks(model_dir, batch, labels=prepared.labels, source=str(eval_folder))
    output = model_dir / FP16_FILE
    partial = model_dir / f".{FP16_FILE}.partial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about values it clamps to float16's range
        onnx.save(convert_float_to_float16(onnx.load(str(fp32.onnx_path)), keep_io_types=True), str(partial))
    half = ort.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
    reference = np.concatenate([fp32.predict(batch[i : i + 256]) for i in range(0, len(batch), 256)])
    halved = np.concatenate([half.run([card.output_name], {card.input.name: batch[i : i + 256]})[0]
                             for i in range(0, len(batch), 256)])
    max_abs_diff = float(np.abs(reference - halved).max())
    agreement = float((reference.argmax(1) == halved.argmax(1)).mean())
    if max_abs_diff > FP16_PARITY_TOLERANCE or agreement < FP16_ARGMAX_AGREEMENT:
        partial.unlink()
        raise ExportError(f"{output}: FP16 differs from FP32 on {len(batch)} images of {eval_folder}: max |dp| "
                          f"{max_abs_diff:.2e} (tolerance {FP16_PARITY_TOLERANCE:.0e}), argmax agreement "
                          f"{agreement:.4%} (required {FP16_ARGMAX_AGREEMENT:.1%}); the card is unchanged")
    os.replace(partial, output)
    parity = Parity(samples=len(batch), max_abs_diff=max_abs_diff, argmax_agreement=agreement,
                    tolerance=FP16_PARITY_TOLERANCE)
    variant = Fp16Variant(file=FP16_FILE, sha256=stamp_metadata(output, card), parity=parity,
                          evaluated_on=str(eval_folder), fp32={}, fp16={}, measured_on=cpu_description())
    card.fp16 = variant
    card.write(model_dir)
    card.fp16 = variant.model_copy(update=_compare_precisions(model_dir, "fp16", eval_folder))
    card.write(model_dir)
    return card.fp16


def normalise_graph() -> bytes:
    """The GPU core's pre-step (``inspection/classify/normalise_u8.onnx``): uint8 pixels (N x C x H x W) to the
    network's float32 input, in the same operations and order as :func:`inspection.classify.prepare.normalise`
    (x * unit_scale, - mean, * inv_std), so a batch crosses to the device as a quarter of its float32 bytes and
    is normalised there to the same values. The constants are inputs, bound once per model."""
    from onnx import TensorProto, helper

    channels = ["batch", "channels", "height", "width"]
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["unit_pixels"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["unit_pixels", "unit_scale"], ["scaled"]),
         helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
         helper.make_node("Mul", ["centred", "inv_std"], ["images"])],
        "normalise_u8",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, channels),
         helper.make_tensor_value_info("unit_scale", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, "channels", 1, 1]),
         helper.make_tensor_value_info("inv_std", TensorProto.FLOAT, [1, "channels", 1, 1])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, channels)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="wafer-inspect")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
