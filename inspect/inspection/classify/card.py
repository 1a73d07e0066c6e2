"""The model card (``model.json``): the one contract from training to the line.

Everything inference needs (classes, input size and layout, normalisation, thresholds) is read from the
card, and the card names the sha256 of its ONNX file, so a model cannot drift from how it was trained.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from inspection.measure import DifferenceSettings
from inspection.types import InspectionError, control_character

CARD_FORMAT = "wafer-inspect-model/1"
PREPROCESSING_VERSION = 1
"""Bumped whenever prepare.py changes what reaches the network; a card of another version is refused."""


class CardError(InspectionError, ValueError):
    """A model folder whose card is missing, invalid, or does not match its ONNX file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _sha256(text: str) -> str:
    if len(text) != 64 or any(char not in "0123456789abcdef" for char in text):
        raise ValueError(f"{text[:70]!r} is not a SHA-256 (64 lowercase hex digits)")
    return text


def _inside_folder(name: str) -> str:
    """A file the card names is a plain name inside the model's folder: no path, no way out of the folder."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{name!r} must be a file name inside the model folder (no folders, no '..')")
    return name


class InputSpec(_Strict):
    name: str = "images"
    layout: Literal["NCHW"] = "NCHW"
    channels: Literal[1, 3]
    height: int = Field(..., ge=8, le=4096)
    width: int = Field(..., ge=8, le=4096)
    dtype: Literal["float32"] = "float32"
    resize: Literal["area"] = "area"
    """cv2.INTER_AREA from the image's size to height x width."""
    channel_order: list[Annotated[str, Field(max_length=200)]] | None = None
    """What each input channel holds, in order (:func:`channel_order`; filled in when a card leaves it out)."""


class Normalisation(_Strict):
    scale: Literal["bit_depth"] = "bit_depth"
    """Pixels are divided by 2**bit_depth - 1 (the frame's stated bit depth) to lie in [0, 1]."""
    mean: list[Annotated[float, Field(ge=-10, le=10)]]
    std: list[Annotated[float, Field(ge=1e-3, le=100)]]
    """One per input channel, of pixels in [0, 1]; a tiny one would turn every input into infinities."""


class Thresholds(_Strict):
    good_class: str | None
    """The class that means 'no defect'; defect score = 1 - p(good_class)."""
    defect_score: Annotated[float, Field(ge=0, le=1)] | None = None
    """Parts with a defect score at or above this are defective (chosen on validation for the target recall)."""
    target_defect_recall: Annotated[float, Field(ge=0, le=1)] | None = None
    val_defect_recall: Annotated[float, Field(ge=0, le=1)] | None = None
    val_overkill: Annotated[float, Field(ge=0, le=1)] | None = None
    """The false-reject rate (good parts called defective) on validation at ``defect_score``."""


class Parity(_Strict):
    samples: int = Field(..., ge=1)
    max_abs_diff: float = Field(..., ge=0)
    argmax_agreement: float = Field(..., ge=0, le=1)
    tolerance: float = Field(..., gt=0)


class Int8Variant(_Strict):
    file: Annotated[str, AfterValidator(_inside_folder)]
    sha256: Annotated[str, AfterValidator(_sha256)]
    calibration_images: int = Field(..., ge=1)
    evaluated_on: str
    fp32: dict[str, float]
    int8: dict[str, float]
    quantiser: dict[str, Any] = Field(default_factory=dict)
    """ONNX Runtime's quantiser settings (format, activation and weight types, reduce_range, per_channel)."""
    measured_on: str = ""
    """The CPU the accuracies were measured on (INT8 kernels differ by CPU: VNNI or not)."""


class Fp16Variant(_Strict):
    """Half-precision weights and activations (inputs and outputs stay float32, so nothing around the model
    changes), for GPUs' tensor cores. Parity with the FP32 graph is measured on real images, and both precisions
    are evaluated on the same folder."""

    file: Annotated[str, AfterValidator(_inside_folder)]
    sha256: Annotated[str, AfterValidator(_sha256)]
    parity: Parity
    """FP16 against FP32, both on ONNX Runtime's CPU provider (which runs FP16 nodes it has no kernel for
    through float32 casts; a GPU runs them in half precision: the GPU tests check that parity)."""
    evaluated_on: str
    fp32: dict[str, float]
    fp16: dict[str, float]
    measured_on: str = ""


class CheckTolerance(_Strict):
    """How far a variant or a device may leave the FP32 outputs on the check inputs."""

    max_abs_diff: float = Field(..., gt=0)
    """Largest |output - FP32 output| on any element (a probability, or a cell of an anomaly score map)."""
    min_argmax_agreement: float = Field(1.0, ge=0, le=1)
    """Classifiers: the share of check inputs whose most likely class must be FP32's."""


DEFAULT_CHECK_TOLERANCE = {
    "fp32": CheckTolerance(max_abs_diff=1e-3, min_argmax_agreement=1.0),
    "fp16": CheckTolerance(max_abs_diff=2e-2, min_argmax_agreement=1.0),
    "int8": CheckTolerance(max_abs_diff=0.2, min_argmax_agreement=0.9),
}
"""The tolerance a new check set states per precision: FP32 on another CPU or a GPU differs by rounding only;
FP16 keeps 11 significant bits; INT8 moves probabilities by a few hundredths where its kernels are exact (seen at
most 0.05 on 900 dies) and by up to 1 where they saturate (the die model's U8S8 on a CPU without VNNI)."""


class CheckSet(_Strict):
    """Real inputs and the FP32 graph's outputs for them on ONNX Runtime's CPU provider, in ``file`` (npz:
    ``inputs`` float32 N x C x H x W, ``outputs`` float32 N x ...). A model variant (FP16, INT8) or a device
    (CPU, GPU) runs only after it has reproduced these outputs within ``tolerance`` on the machine at hand."""

    file: Annotated[str, AfterValidator(_inside_folder)] = "checks.npz"
    sha256: Annotated[str, AfterValidator(_sha256)]
    images: int = Field(..., ge=1)
    source: str
    """Where the inputs came from (a labelled folder, a data set)."""
    made_on: str
    """The CPU (and its VNNI / AVX-512 flags) that computed the FP32 outputs."""
    tolerance: dict[Literal["fp32", "fp16", "int8"], CheckTolerance]


class DetectorSettings(_Strict):
    """How candidates are made, cropped and boxed for a golden-template detector (PCB): the classifier was
    trained on exactly these candidates, so the settings travel with it."""

    band_px: int = Field(..., ge=0)
    tolerance_grey: float = Field(..., ge=0)
    open_px: int = Field(..., ge=0)
    close_px: int = Field(..., ge=0)
    min_area_px: int = Field(..., ge=1)
    min_side_px: int = Field(1, ge=1)
    """Candidates whose box is narrower than this either way are dropped before the classifier: on DeepPCB's 1,000
    trainval boards, 3 drops 4,451 of 6,944 false candidates (the strips a conductor's edge leaves) and leaves 18
    of 6,835 annotated defects without a candidate; F-score -0.0001 (benchmarks/README.md, "PCB line")."""
    edge_margin_px: int = Field(10, ge=0)
    """Candidates are sought this far inside the part of the image the registered template covers: along that
    edge, interpolation and a cut-off field of view make differences that are not defects."""
    edge_zone_px: int = Field(0, ge=0)
    edge_open_px: int = Field(0, ge=0)
    """Within edge_zone_px of the template's edges, candidates are opened by edge_open_px instead of open_px
    (edge_zone_px 0: no edge zone): scan-to-scan jitter of a conductor's edge leaves strips along it."""
    edge_keep_min_area_px: int = Field(0, ge=0)
    edge_keep_max_side_px: int = Field(0, ge=0)
    """Pieces of at least edge_keep_min_area_px and at most edge_keep_max_side_px along either axis are spared
    the edge zone's opening (edge_keep_max_side_px 0: none are): a shallow bite on an edge is short, a strip long."""
    crop_context: float = Field(..., ge=1.0)
    """A crop is a square of side crop_context x the candidate box's longer side (at least crop_min_side_px)."""
    crop_min_side_px: int = Field(..., ge=8)
    box_growth: dict[str, tuple[float, float]]
    """Per defect class: reported side = a x candidate side + b px (fitted to the annotators' boxes)."""
    nms_iou: float = Field(..., gt=0, le=1)
    min_score: float = Field(..., ge=0, le=1)
    """A candidate is reported when its most likely defect class has at least this probability."""
    fitted_on: str

    @property
    def difference(self) -> DifferenceSettings:
        """The comparison with the golden that makes these candidates (``measure.difference_regions``)."""
        return DifferenceSettings(
            band_px=self.band_px, tolerance_grey=self.tolerance_grey, open_px=self.open_px, close_px=self.close_px,
            min_area_px=self.min_area_px, min_side_px=self.min_side_px, edge_zone_px=self.edge_zone_px,
            edge_open_px=self.edge_open_px,
            edge_keep_min_area_px=self.edge_keep_min_area_px, edge_keep_max_side_px=self.edge_keep_max_side_px)

    @model_validator(mode="after")
    def _edge_zone_opens_more(self) -> DetectorSettings:
        if self.edge_zone_px > 0 and self.edge_open_px < self.open_px:
            raise ValueError(f"edge_open_px {self.edge_open_px} is below open_px {self.open_px}: the edge zone "
                             "would keep slivers the rest of the image drops")
        return self


class AnomalySettings(_Strict):
    """How an anomaly model's score map becomes regions; the threshold was chosen on held-out good images."""

    map_stride_px: int = Field(..., ge=1, le=64)
    """Image pixels per cell of the score map, along each axis."""
    binarise_at: float = Field(..., gt=0, lt=1)
    """The graph binarises its unit-range input at this level before anything else (scans of bare boards)."""
    threshold: float = Field(..., gt=0, lt=1)
    """A map cell scoring at or above this is anomalous; touching anomalous cells make one region."""
    target_false_alarms_per_image: float = Field(..., ge=0)
    val_false_alarms_per_image: float = Field(..., ge=0)
    """Regions per held-out good image at ``threshold`` (every one a false alarm)."""
    val_images: int = Field(..., ge=1)
    val_folder: str


class ModelCard(_Strict):
    format: Literal["wafer-inspect-model/1"] = CARD_FORMAT
    task: str
    arch: str
    class_names: list[str]
    input: InputSpec
    normalisation: Normalisation
    preprocessing_version: int = PREPROCESSING_VERSION
    output_name: str = "probabilities"
    thresholds: Thresholds
    opset: int = Field(..., ge=7, le=30)
    onnx_file: Annotated[str, AfterValidator(_inside_folder)] = "model.onnx"
    onnx_sha256: Annotated[str, AfterValidator(_sha256)]
    training: dict[str, Any]
    metrics: dict[str, Any]
    parity: Parity
    flops_per_image: int | None = Field(None, ge=1)
    """Multiply-adds x 2 of one forward pass (convolutions and linear layers), counted at export."""
    torch_weights: Annotated[str, AfterValidator(_inside_folder)] | None = None
    """The network's state dict beside the ONNX file, for retraining and eager benchmarks; the line never reads it."""
    int8: Int8Variant | None = None
    fp16: Fp16Variant | None = None
    detector: DetectorSettings | None = None
    anomaly: AnomalySettings | None = None
    """An anomaly model's map settings (task ``anomaly``; output: a score map, N x 1 x H/stride x W/stride)."""
    checks: CheckSet | None = None
    """The inputs every variant and device is checked against when it is loaded (``inspect export --checks``)."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.input.channel_order is None:  # a card written before cards said what each channel holds
            self.input.channel_order = channel_order(self.task, self.input.channels)
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be two or more distinct names, got {self.class_names}")
        good = self.thresholds.good_class
        if good is not None and good not in self.class_names:
            raise ValueError(f"thresholds.good_class {good!r} is not one of class_names {self.class_names}")
        for name, values in (("mean", self.normalisation.mean), ("std", self.normalisation.std)):
            if len(values) != self.input.channels:
                raise ValueError(f"normalisation.{name} has {len(values)} value(s) for {self.input.channels} "
                                 "input channel(s)")
        if (self.task == "anomaly") != (self.anomaly is not None):
            raise ValueError("an anomaly section belongs to a card of task 'anomaly', and such a card needs one")
        return self

    def variant(self, precision: Literal["fp32", "fp16", "int8"]) -> tuple[str, str] | None:
        """The ONNX file of ``precision`` and its sha256, as the card names them; None where it has no such
        variant."""
        if precision == "fp32":
            return self.onnx_file, self.onnx_sha256
        named = self.int8 if precision == "int8" else self.fp16
        return None if named is None else (named.file, named.sha256)

    @property
    def good_index(self) -> int | None:
        good = self.thresholds.good_class
        return self.class_names.index(good) if good is not None else None

    def write(self, folder: Path) -> Path:
        path = folder / "model.json"
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


WAFERMAP_STATE_CHANNEL = "die state in WM-811K's encoding times 127: 0 no die, 127 good, 254 failed"


def channel_order(task: str, channels: int) -> list[str]:
    """What each input channel of a model of ``task`` holds, in the order the model takes them.

    Every 3-channel classifier of this project is given the chain's crops (image, reference and their absolute
    difference as a BGR picture, turned to RGB, so the difference comes first), and a 3-channel wafer-map model
    the map's picture (``map_image``).

    Parameters
    ----------
    task : str
        The card's task (``classification``, ``wafermap``, ``anomaly``).
    channels : {1, 3}
        The input's channel count.

    Returns
    -------
    list of str
        One description per channel, in input order.
    """
    if task == "wafermap":
        return ["wafer footprint: 254 on the wafer, 0 off it", "failure density per cell, 0..254",
                WAFERMAP_STATE_CHANNEL] if channels == 3 else [WAFERMAP_STATE_CHANNEL]
    if channels == 1:
        return ["grey level"]
    return ["|image - reference|", "reference: the registered golden, or the wafer's median die", "image"]


def onnx_metadata(card: ModelCard) -> dict[str, str]:
    """The card's essentials as the ONNX file's ``metadata_props``, so that tools which read an ONNX file alone
    (as Ultralytics' runtimes read class names from it) learn the contract: values are JSON text."""
    return {
        "task": card.task,
        "arch": card.arch,
        "class_names": json.dumps(card.class_names),
        "names": json.dumps(dict(enumerate(card.class_names))),  # {index: name}, the Ultralytics convention
        "input": json.dumps(card.input.model_dump(mode="json")),
        "normalisation": json.dumps(card.normalisation.model_dump(mode="json")),
        "preprocessing_version": str(card.preprocessing_version),
        "thresholds": json.dumps(card.thresholds.model_dump(mode="json")),
        "training_data_hash": str(card.training.get("data_hash", "")),
        **({"anomaly": json.dumps(card.anomaly.model_dump(mode="json"))} if card.anomaly is not None else {}),
        # The keys generic loaders (Ultralytics' among them) look for. Not the date: the same training must give
        # the same bytes (the card's training.created says when it was made).
        "imgsz": json.dumps([card.input.height, card.input.width]),
        "stride": str(card.anomaly.map_stride_px if card.anomaly is not None else card.input.height),
        "author": "wafer-inspect",
        "license": "MIT",
        "version": f"wafer-inspect {_software_version()}",
    }


_CHECKED_METADATA = ("task", "class_names", "input", "normalisation", "preprocessing_version")
"""What the runtime compares with the card: what decides how inputs are prepared and outputs named."""


def check_onnx_metadata(card: ModelCard, metadata: dict[str, str], *, path: Path) -> None:
    """Refuse an ONNX file whose metadata says another contract than its card.

    Parameters
    ----------
    card : ModelCard
        The model folder's card.
    metadata : dict of str to str
        The ONNX file's ``metadata_props`` (``InferenceSession.get_modelmeta().custom_metadata_map``); a file
        exported before metadata was written has none, and is judged by its card alone.
    path : Path
        The ONNX file, named in the error.

    Raises
    ------
    CardError
        Naming the first field that differs, with both values.
    """
    expected = onnx_metadata(card)
    for key in _CHECKED_METADATA:
        if key not in metadata:
            continue
        said, wanted = metadata[key], expected[key]
        same = said == wanted if key in ("task", "preprocessing_version") else _comparable(_json(said)) == \
            _comparable(_json(wanted))
        if not same:
            raise CardError(f"{path}: its metadata says {key} = {said}, its card {wanted}: the ONNX file and "
                            "model.json are of different models")


def _software_version() -> str:
    try:
        return metadata.version("wafer-inspect")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _comparable(value: Any) -> Any:
    """A metadata value without what describes rather than decides (the channels' meaning, which files stamped
    before it was written leave out)."""
    return {k: v for k, v in value.items() if k != "channel_order"} if isinstance(value, dict) else value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def class_order(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """For each class of ``source`` (a baseline model's), its index among ``target`` (the evaluated model's):
    indexing with it puts the baseline's predictions in the model's class order. Models of other classes do
    not compare, and are refused with both class lists named."""
    if set(source) != set(target):
        raise CardError(f"the baseline's classes ({', '.join(source)}) are not the model's ({', '.join(target)}); "
                        "only models of the same classes compare")
    return np.array([list(target).index(name) for name in source])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(folder: Path, name: str, *, what: str) -> Path:
    """``folder / name`` where it is a file in ``folder`` once links are followed; a link out of the folder (to
    another model's file, or to /etc/passwd) is refused before anything is read."""
    path = folder / name
    home, target = folder.resolve(), path.resolve()
    if not target.is_relative_to(home):
        raise CardError(f"{path}: {what} is a link to {target}, outside the model folder {home}; refused (copy "
                        "the file into the folder)")
    if not target.is_file():
        raise CardError(f"{path}: {what} named by the card is missing")
    return path


def verified_bytes(folder: str | Path, name: str, sha256: str, *, what: str) -> bytes:
    """The bytes of a file the card names, checked against its ``sha256`` (read once: what is checked is what is
    used). An ONNX file must carry all its weights: external data (a ``.bin`` beside it) is not covered by the
    hash, so such a file is refused.

    Raises
    ------
    CardError
        Naming the file: a link out of the folder, missing, a hash that differs, or external data.
    """
    path = _inside(Path(folder), name, what=what)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise CardError(f"{path}: sha256 {actual[:12]}... does not match the card's {sha256[:12]}...: the {what} "
                        "was replaced or corrupted after export")
    if name.endswith(".onnx") and (outside := external_data(data)):
        raise CardError(f"{path}: its weights are partly in other files ({', '.join(sorted(outside)[:3])}), which "
                        "the card's hash does not cover; export the model as one file")
    return data


def _protobuf_fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited fields as views."""
    position = 0

    def varint() -> int:
        nonlocal position
        value, shift = 0, 0
        while True:
            if position >= len(data) or shift > 63:
                raise CardError("not an ONNX file (a protobuf varint runs past its message)")
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while position < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            length = varint()
            if position + length > len(data):
                raise CardError("not an ONNX file (a protobuf field runs past its message)")
            yield number, data[position : position + length]
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise CardError(f"not an ONNX file (protobuf wire type {wire})")


# ONNX's protobuf field numbers (onnx.proto): where tensors live, and how a tensor says its data is elsewhere.
_GRAPH_TENSORS, _GRAPH_SPARSE, _GRAPH_NODES = 5, 15, 1
_NODE_ATTRIBUTES, _FUNCTION_NODES = 5, 7
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11
_ATTRIBUTE_SPARSE, _ATTRIBUTE_SPARSES = 22, 23
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14


def external_data(onnx_bytes: bytes) -> set[str]:
    """The files an ONNX model's tensors keep their data in (ONNX external data), anywhere in the model: graph
    initializers, constants and subgraphs of nodes, and functions. Empty for a self-contained file."""
    found: set[str] = set()

    def tensor(data: memoryview) -> None:
        locations, external = [], False
        for number, value in _protobuf_fields(data):
            if number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
                entry = dict(_protobuf_fields(value))
                if bytes(entry.get(1, b"")) == b"location":  # type: ignore[arg-type]
                    locations.append(bytes(entry.get(2, b"")).decode("utf-8", "replace"))  # type: ignore[arg-type]
            elif number == _TENSOR_DATA_LOCATION and value == 1:
                external = True
        found.update(locations or (["(no location given)"] if external else []))

    def sparse(data: memoryview) -> None:
        for _, value in _protobuf_fields(data):
            if isinstance(value, memoryview):
                tensor(value)

    def nodes_of(data: memoryview, field: int) -> None:
        for number, value in _protobuf_fields(data):
            if number == field and isinstance(value, memoryview):
                node(value)

    def node(data: memoryview) -> None:
        for number, value in _protobuf_fields(data):
            if number != _NODE_ATTRIBUTES or not isinstance(value, memoryview):
                continue
            for kind, inner in _protobuf_fields(value):
                if not isinstance(inner, memoryview):
                    continue
                if kind in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
                    tensor(inner)
                elif kind in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
                    graph(inner)
                elif kind in (_ATTRIBUTE_SPARSE, _ATTRIBUTE_SPARSES):
                    sparse(inner)

    def graph(data: memoryview) -> None:
        for number, value in _protobuf_fields(data):
            if not isinstance(value, memoryview):
                continue
            if number == _GRAPH_TENSORS:
                tensor(value)
            elif number == _GRAPH_SPARSE:
                sparse(value)
            elif number == _GRAPH_NODES:
                node(value)

    for number, value in _protobuf_fields(memoryview(onnx_bytes)):
        if number == 7 and isinstance(value, memoryview):  # ModelProto.graph
            graph(value)
        elif number == 25 and isinstance(value, memoryview):  # ModelProto.functions
            nodes_of(value, _FUNCTION_NODES)
    return found


def read_card(folder: str | Path, *, precision: Literal["fp32", "fp16", "int8"] = "fp32"
              ) -> tuple[ModelCard, Path]:
    """The validated card of a model folder and the ONNX file of ``precision`` to run, checked against the card's
    sha256 (``verified_bytes``). Every file is read inside the folder: links out of it are refused."""
    card, path, _ = read_model(folder, precision=precision)
    return card, path


def read_model(folder: str | Path, *, precision: Literal["fp32", "fp16", "int8"] = "fp32"
               ) -> tuple[ModelCard, Path, bytes]:
    """``read_card`` and the ONNX file's bytes it checked: a session built from them runs what was checked, with
    the file read once."""
    folder = Path(folder)
    if not (folder / "model.json").exists() and not (folder / "model.json").is_symlink():
        raise CardError(f"{folder}: no model card (model.json); expected a folder written by `inspect train`")
    card_path = _inside(folder, "model.json", what="the model card")
    try:
        text = card_path.read_text(encoding="utf-8")
        if len(text) > MAX_CARD_BYTES:
            raise CardError(f"{card_path}: {len(text)} characters; a model card is at most {MAX_CARD_BYTES}")
        data = json.loads(text, parse_int=_bounded_int)
        if (found := control_character(data)) is not None:
            raise CardError(f"{card_path}: {found[0]}: control character U+{ord(found[2]):04X} in {found[1]!r}; "
                            "card values are printable text")
        card = ModelCard.model_validate(data)
    except UnicodeDecodeError as exc:
        raise CardError(f"{card_path}: not UTF-8 text (byte {exc.start}); the card is JSON") from None
    except RecursionError:
        raise CardError(f"{card_path}: nested too deep for a model card") from None
    except _LongNumber as exc:
        raise CardError(f"{card_path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{card_path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CardError(f"{card_path}: invalid model card: {problems}") from None
    if card.preprocessing_version != PREPROCESSING_VERSION:
        raise CardError(f"{card_path}: preprocessing_version {card.preprocessing_version}; this software "
                        f"prepares inputs as version {PREPROCESSING_VERSION}: re-export the model")
    named = card.variant(precision)
    if named is None:
        how = "--int8 --calib DIR" if precision == "int8" else "--fp16 --eval DIR"
        raise CardError(f"{card_path}: no {precision.upper()} variant; make one with `inspect export {folder} {how}`")
    return card, folder / named[0], verified_bytes(folder, named[0], named[1], what="ONNX file")


MAX_CARD_BYTES = 4_000_000
"""A card holds a training history and metrics: a few hundred kB at most."""


class _LongNumber(ValueError):
    pass


def _bounded_int(text: str) -> int:
    if len(text) > 30:  # Python refuses to parse past 4,300 digits with a traceback of its own
        raise _LongNumber(f"an integer of {len(text)} digits; expected an ordinary number")
    return int(text)


def read_checks(folder: Path, checks: CheckSet) -> tuple[np.ndarray, np.ndarray]:
    """The check inputs (N x C x H x W float32) and their FP32 outputs of a model folder, checked against the
    card's sha256."""
    path = Path(folder) / checks.file
    data = verified_bytes(folder, checks.file, checks.sha256, what="check set")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            inputs, outputs = arrays["inputs"].astype(np.float32), arrays["outputs"].astype(np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise CardError(f"{path}: not a check set (npz with arrays inputs and outputs): {exc}") from None
    if len(inputs) != checks.images or len(outputs) != len(inputs):
        raise CardError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs; the card says {checks.images}")
    return inputs, outputs
