"""Every parser of outside data, fed mutated and random input: a valid result or one clean, named error (an
InspectionError), never another exception, and quickly (hypothesis' deadline)."""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.acquire import open_camera, read_image
from inspection.acquire.headers import image_size_px
from inspection.acquire.lot import read_lot
from inspection.classify.card import read_card
from inspection.recipe import load_recipe
from inspection.report.klarf import write_klarf
from inspection.report.maps import write_e142, write_sinf
from inspection.types import InspectionError
from inspection.wafermap.formats import read_e142, read_npz, read_sinf
from inspection.wafermap.klarf import Klarf, read_klarf
from tests.conftest import REPO_ROOT

EXAMPLES = settings(max_examples=80, deadline=3000, suppress_health_check=[HealthCheck.too_slow])

# Edits to a valid file: (position as a share of its length, bytes written there, bytes cut there).
EDITS = st.lists(st.tuples(st.floats(0, 1), st.binary(max_size=12), st.integers(0, 16)), min_size=1, max_size=8)


def _mutated(base: bytes, edits: list[tuple[float, bytes, int]]) -> bytes:
    data = bytearray(base)
    for share, insert, cut in edits:
        at = min(len(data), int(share * len(data)))
        data[at : at + cut] = insert
    return bytes(data)


def _clean(parse: Callable[[Path], Any], data: bytes, suffix: str) -> None:
    """``parse`` reads ``data`` from a file: it returns, or raises an InspectionError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        try:
            parse(path)
        except InspectionError as exc:
            assert str(exc).strip() and "\n" not in str(exc).split(":", 1)[0]


def _valid_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        die_map = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 2, 0]], np.uint8)
        np.savez(root / "maps.npz", flat=die_map.ravel(), offsets=np.array([0, die_map.size]),
                 shapes=np.array([die_map.shape]), label=np.array([0]))
        write_sinf(root / "w.sinf", die_map, wafer_id="W1")
        write_e142(root / "w.xml", die_map, substrate_id="W1")
        klarf = Klarf("LOT", "W1", 1, (8000.0, 8000.0), (0.0, 0.0), {0: "good", 1: "particle"}, [(0, 0), (1, 0)],
                      [{"DEFECTID": 1, "XREL": 1.0, "YREL": 2.0, "XINDEX": 1, "YINDEX": 0, "XSIZE": 5.0,
                        "YSIZE": 5.0, "DEFECTAREA": 25.0, "DSIZE": 5.0, "CLASSNUMBER": 1, "TEST": 1,
                        "CLUSTERNUMBER": 0, "ROUGHBINNUMBER": 1, "FINEBINNUMBER": 1, "REVIEWSAMPLE": 0,
                        "IMAGECOUNT": 0}])
        write_klarf(root / "w.klarf", klarf, station="s", recipe="r", moment=datetime(2026, 12, 1, tzinfo=UTC))
        return {name: (root / name).read_bytes() for name in ("maps.npz", "w.sinf", "w.xml", "w.klarf")}


VALID = _valid_files()
RECIPE = (REPO_ROOT / "inspect" / "inspection" / "recipes" / "wafer-die.yaml").read_bytes()
MANIFEST = b"image,wafer_id,lot_id,slot,truth_pattern,truth_dies\nw1.png,w1,LOT,1,Center,\nw2.png,w2,LOT,2,,\n"


@EXAMPLES
@given(EDITS)
def test_recipes(edits: list[tuple[float, bytes, int]]) -> None:
    _clean(load_recipe, _mutated(RECIPE, edits), ".yaml")


@EXAMPLES
@given(EDITS)
def test_lot_manifests(edits: list[tuple[float, bytes, int]]) -> None:
    _clean(read_lot, _mutated(MANIFEST, edits), ".csv")


@pytest.mark.parametrize(("name", "parse"), [("maps.npz", read_npz), ("w.sinf", read_sinf), ("w.xml", read_e142),
                                             ("w.klarf", read_klarf)])
@EXAMPLES
@given(edits=EDITS)
def test_wafer_map_and_klarf_files(name: str, parse: Callable[[Path], Any],
                                   edits: list[tuple[float, bytes, int]]) -> None:
    _clean(parse, _mutated(VALID[name], edits), Path(name).suffix)


MAGICS = [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff\xc0", b"BM", b"II*\x00", b"MM\x00*", b""]


@EXAMPLES
@given(st.sampled_from(MAGICS), st.binary(max_size=64), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_image_headers(magic: bytes, tail: bytes, width: int, height: int) -> None:
    data = magic + struct.pack(">II", width, height) + tail
    size = image_size_px(data)
    assert size is None or all(isinstance(v, int) and v >= 0 for v in size)
    _clean(read_image, data, ".png")


CAMERA_KEYS = ["glob", "watch", "settle_s", "bit_depth", "max_pixels", "serial", "pixel_format", "latest", "buffer",
               "fps", "seed", "defect_rate", "size", "bogus"]
CAMERA_VALUES = st.one_of(st.sampled_from(["1", "0", "-1", "nan", "inf", "1e400", "", "x", "8", "12", "99999999999"]),
                          st.text(max_size=8))


@EXAMPLES
@given(st.sampled_from(["folder", "genicam", "pylon", "opencv", "sim", "http", ""]),
       st.sampled_from(["", "wafer", "pcb", "/nonexistent", "0", "emu"]),
       st.lists(st.tuples(st.sampled_from(CAMERA_KEYS), CAMERA_VALUES), max_size=4))
def test_camera_uris(scheme: str, target: str, options: list[tuple[str, str]]) -> None:
    query = "&".join(f"{key}={value}" for key, value in options)
    uri = f"{scheme}:{target}" + (f"?{query}" if query else "")
    with contextlib.suppress(InspectionError):
        open_camera(uri)  # parsing and option checks only; opening would need the device


CARD = json.loads((REPO_ROOT / "models" / "die-patchnet-v1" / "model.json").read_text())
CARD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                        st.text(max_size=12), st.lists(st.floats(-2, 2), max_size=4), st.just("../model.onnx"))


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from(["onnx_file", "class_names", "input.height", "input.channels",
                                           "normalisation.std", "normalisation.mean", "thresholds.good_class",
                                           "thresholds.defect_score", "opset", "int8.file", "preprocessing_version"]),
                          CARD_VALUES), min_size=1, max_size=3))
def test_model_cards(changes: list[tuple[str, Any]]) -> None:
    card = json.loads(json.dumps(CARD))
    for dotted, value in changes:
        *parents, last = dotted.split(".")
        target = card
        for key in parents:
            target = target[key] if isinstance(target.get(key), dict) else target.setdefault(key, {})
        target[last] = value
    with tempfile.TemporaryDirectory() as folder:
        model = Path(shutil.copytree(REPO_ROOT / "models" / "die-patchnet-v1", Path(folder) / "m"))
        (model / "model.json").write_text(json.dumps(card))
        with contextlib.suppress(InspectionError):
            read_card(model)


@EXAMPLES
@given(EDITS)
def test_model_card_bytes(edits: list[tuple[float, bytes, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        model = Path(shutil.copytree(REPO_ROOT / "models" / "die-patchnet-v1", Path(folder) / "m"))
        (model / "model.json").write_bytes(_mutated((model / "model.json").read_bytes(), edits))
        with contextlib.suppress(InspectionError):
            read_card(model)


# Structure-aware inputs: valid-looking files whose fields lie (sizes, digit counts, depth, encodings, NUL bytes),
# the classes a byte-level mutation rarely reaches.
HUGE_NUMBERS = st.one_of(st.integers(-(10**40), 10**40).map(str), st.sampled_from(
    ["9" * 5000, "-1", "0x1", "0_2", "1e-300", "1e300", "nan", "inf", "\u00b2", "1\x00", "", " ", "F" * 30]))
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["W\n1", "W\x001", "\uff1d1+1", "W;1", 'W"1', "{", "}"]))


@EXAMPLES
@given(rows=HUGE_NUMBERS, cols=HUGE_NUMBERS, bins=st.lists(HUGE_NUMBERS, max_size=6), wafer=TEXT)
def test_sinf_fields_that_lie(rows: str, cols: str, bins: list[str], wafer: str) -> None:
    text = f"WAFER:{wafer}\nROWCT:{rows}\nCOLCT:{cols}\nBCEQU:01\nRowData:{' '.join(bins)}\n"
    _clean(read_sinf, text.encode("utf-8", "surrogatepass"), ".sinf")


@EXAMPLES
@given(encoding=st.sampled_from(["utf-8", "x-no-such", "utf-16", "ascii", "latin-1", ""]), x=HUGE_NUMBERS,
       y=HUGE_NUMBERS, code=st.sampled_from(["ZZ", "FF", "01", "-1", "0x", "\x00\x00", "GG01"]), defs=st.booleans())
def test_e142_fields_that_lie(encoding: str, x: str, y: str, code: str, defs: bool) -> None:
    text = VALID["w.xml"].decode().replace('X="4"', f'X="{x}"', 1).replace('Y="3"', f'Y="{y}"', 1)
    text = text.replace("<BinCode>FF0101FF</BinCode>", f"<BinCode>{code * 4}</BinCode>", 1)
    if not defs:
        text = text.replace("<BinDefinitions>", "<Ignored>").replace("</BinDefinitions>", "</Ignored>")
    if encoding:
        text = text.replace("encoding='utf-8'", f"encoding='{encoding}'").replace('encoding="utf-8"',
                                                                                 f'encoding="{encoding}"')
    _clean(read_e142, text.encode("utf-8", "surrogatepass"), ".xml")


@EXAMPLES
@given(slot=HUGE_NUMBERS, pitch=HUGE_NUMBERS, spec=st.sampled_from(["XINDEX YINDEX", "XINDEX", "XREL YREL", ""]),
       wafer=TEXT)
def test_klarf_fields_that_lie(slot: str, pitch: str, spec: str, wafer: str) -> None:
    from inspection.wafermap.klarf import klarf_die_map

    columns = ["DEFECTID", *spec.split()]
    text = (f'FileVersion 1 2;\nLotID "L";\nWaferID "{wafer}";\nSlot {slot};\nDiePitch {pitch} 8000;\n'
            f"DefectRecordSpec {len(columns)} {' '.join(columns)};\nDefectList\n {' '.join(['1'] * len(columns))};\n"
            "EndOfFile;\n")
    _clean(lambda path: klarf_die_map(read_klarf(path)), text.encode("utf-8", "surrogatepass"), ".klarf")


@EXAMPLES
@given(shape=st.lists(st.integers(0, 2**41), min_size=1, max_size=3),
       dtype=st.sampled_from(["<u1", "<i8", "|O", "<f8", "<U9"]), name=st.sampled_from(["flat", "shapes", "label"]))
def test_npz_headers_that_lie(shape: list[int], dtype: str, name: str) -> None:
    """An npz member whose header declares a size it does not hold (a few bytes claiming terabytes)."""
    import io
    import zipfile

    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 64
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with zipfile.ZipFile(io.BytesIO(VALID["maps.npz"])) as valid:
            for item in valid.namelist():
                if item != f"{name}.npy":
                    archive.writestr(item, valid.read(item))
        archive.writestr(f"{name}.npy", member)
    _clean(read_npz, buffer.getvalue(), ".npz")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 20_000), digits=st.integers(1, 6000), nul=st.booleans())
def test_deep_long_and_nul_cards_and_recipes(depth: int, digits: int, nul: bool) -> None:
    """JSON nested thousands deep, integers thousands of digits long, NUL bytes: model cards and recipes."""
    card = json.loads((REPO_ROOT / "models" / "die-patchnet-v1" / "model.json").read_text())
    card["training"] = "DEEP"
    with tempfile.TemporaryDirectory() as folder:
        model = Path(shutil.copytree(REPO_ROOT / "models" / "die-patchnet-v1", Path(folder) / "m"))
        text = json.dumps(card).replace('"DEEP"', "[" * depth + "]" * depth)
        if digits > 30:
            text = text.replace('"opset": 17', f'"opset": {"9" * digits}')
        (model / "model.json").write_text(text.replace('"task"', '"ta\\u0000sk"') if nul else text)
        with contextlib.suppress(InspectionError):
            read_card(model)
    recipe = RECIPE.decode() + "\nextra: " + "[" * min(depth, 5000) + "]" * min(depth, 5000) + "\n"
    if nul:
        recipe = recipe.replace("golden:", "golden: \x00x #", 1)
    _clean(load_recipe, recipe.encode(), ".yaml")
