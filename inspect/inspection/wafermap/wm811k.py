"""WM-811K as it is published: ``LSWMD.pkl``, a pickled pandas frame of 811,457 wafer maps.

A pickle can run any code it names, so this reader unpickles with a list of the few classes a pandas frame of
numpy arrays is made of (the frame, its index and block manager, numpy arrays and their dtypes) and refuses
any other name before it is loaded. The frame must then have WM-811K's columns: ``waferMap`` (a 2-D array of
0 no die, 1 good, 2 failed per map), ``failureType`` (a 1 x 1 array holding the pattern, or an empty array
for the 638,507 maps nobody labelled), ``trianTestLabel`` (``Training`` or ``Test``, or empty; the data set's
own spelling), and optionally ``lotName``, ``waferIndex`` and ``dieSize``. Reading needs pandas (the
``[wm811k]`` extra): the frame is pandas' own object.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.wafermap.formats import MapSet
from inspection.wafermap.maps import PATTERNS, WaferMapError, check_map

SPLITS = ("Training", "Test")
"""``trianTestLabel``'s values, as the data set spells them."""

_ALLOWED = {
    ("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame"), ("pandas", "Index"),
    ("pandas.core.indexes.base", "Index"), ("pandas.core.indexes.base", "_new_Index"), ("pandas", "RangeIndex"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"), ("pandas", "StringDtype"), ("pandas.arrays", "StringArray"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"), ("builtins", "bytes"), ("builtins", "object"), ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
}
"""The globals a pickled frame of numpy arrays names (pandas 1 to 3, numpy 1 and 2); nothing else loads."""

_RENAMED = {
    # pandas 0.x, which wrote LSWMD.pkl, kept these elsewhere (as pandas' own pickle compatibility maps them)
    ("pandas.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.indexes.range", "RangeIndex"): ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.internals", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("__builtin__", "slice"): ("builtins", "slice"), ("__builtin__", "bytes"): ("builtins", "bytes"),
    ("__builtin__", "object"): ("builtins", "object"), ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
}


@dataclass(frozen=True)
class Wm811k:
    """The maps of an ``LSWMD.pkl``, in its row order."""

    maps: list[np.ndarray]
    labels: list[str | None]
    """Each map's pattern (one of ``PATTERNS``), None where the data set has none."""
    splits: list[str | None]
    """``Training``, ``Test`` or None, as ``trianTestLabel`` says."""
    lot_names: list[str]
    wafer_index: np.ndarray
    """(N,) int: each map's wafer number in its lot (0 where the frame has none)."""


class _FrameUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, *, source: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")  # Python 2's strings, as pandas 0.x wrote them
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        module, name = _RENAMED.get((module, name), (module, name))
        if (module, name) not in _ALLOWED:
            raise WaferMapError(f"{self.source}: the pickle names {module}.{name}, which is not part of a pandas frame "
                                "of wafer maps; it is refused unloaded (a pickle can run any code it names)")
        return super().find_class(module, name)


def read_lswmd(path: str | Path, *, progress: bool = True) -> Wm811k:
    """Read WM-811K's ``LSWMD.pkl`` (or a frame of its layout) without running code the pickle brings.

    Parameters
    ----------
    path : str or Path
        The pickle, as published or as pandas writes a frame of the same columns.
    progress : bool, optional
        Show a progress bar over the maps.

    Returns
    -------
    Wm811k
        Every map with its label, split, lot and wafer number.

    Raises
    ------
    WaferMapError
        Naming the file and what is wrong: a name outside a frame of arrays, a missing column, a map that is
        not a die map, a label that is not a WM-811K pattern (with its row).
    """
    path = Path(path)
    try:
        import pandas
    except ImportError as exc:
        raise WaferMapError(f"{path}: reading a pandas pickle needs pandas: pip install -e '.[wm811k]' ({exc})") \
            from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WaferMapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        frame = _FrameUnpickler(data, source=path).load()
    except WaferMapError:
        raise
    except Exception as exc:  # a truncated or foreign pickle fails in pickle, numpy or pandas alike
        raise WaferMapError(f"{path}: not a readable pickle of a pandas frame ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(frame, pandas.DataFrame):
        raise WaferMapError(f"{path}: holds a {type(frame).__name__}, not a pandas frame of wafer maps")
    missing = [column for column in ("waferMap", "failureType", "trianTestLabel") if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise WaferMapError(f"{path}: no column {', '.join(missing)}; WM-811K's frame has waferMap, failureType, "
                            f"trianTestLabel (and lotName, waferIndex, dieSize); found {found}")
    maps, labels, splits = [], [], []
    rows = zip(frame["waferMap"], frame["failureType"], frame["trianTestLabel"], strict=True)
    bar = tqdm(rows, total=len(frame), desc="maps", disable=None if progress else True)  # None: only on a terminal
    for row, (wafer_map, failure, split) in enumerate(bar):
        if not isinstance(wafer_map, np.ndarray) or wafer_map.ndim != 2 or wafer_map.dtype.kind not in "iuf":
            raise WaferMapError(f"{path}: row {row}: waferMap is {type(wafer_map).__name__}, not a 2-D numeric array")
        maps.append(check_map(wafer_map.astype(np.uint8) if wafer_map.dtype.kind == "f" else wafer_map,
                              source=f"{path} row {row}"))
        label = _cell(failure, path=path, row=row, column="failureType")
        if label is not None and label not in PATTERNS:
            raise WaferMapError(f"{path}: row {row}: failureType {label!r} is not a WM-811K pattern "
                                f"({', '.join(PATTERNS)})")
        labels.append(label)
        spelled = _cell(split, path=path, row=row, column="trianTestLabel")
        if spelled is not None and spelled not in SPLITS:
            raise WaferMapError(f"{path}: row {row}: trianTestLabel {spelled!r}; expected {' or '.join(SPLITS)}")
        splits.append(spelled)
    lots = [str(name) for name in frame["lotName"]] if "lotName" in frame.columns else [""] * len(maps)
    index = (np.nan_to_num(np.asarray(frame["waferIndex"], float)).astype(np.int64) if "waferIndex" in frame.columns
             else np.zeros(len(maps), np.int64))
    return Wm811k(maps, labels, splits, lots, index)


def _cell(value: Any, *, path: Path, row: int, column: str) -> str | None:
    """A label cell: a string, a 1 x 1 array holding one (as published), or empty (no label)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size != 1:
            raise WaferMapError(f"{path}: row {row}: {column} holds {value.size} values; expected one label or none")
        value = value.reshape(-1)[0]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if not isinstance(value, str | bytes | np.str_):
        raise WaferMapError(f"{path}: row {row}: {column} is {type(value).__name__}; expected a label or none")
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def split_lswmd(data: Wm811k) -> dict[str, tuple[MapSet, dict[str, np.ndarray]]]:
    """WM-811K's maps by the data set's own split: ``train`` and ``test`` (labelled maps of each split),
    ``labelled-no-split`` (labelled maps without a split, if any) and ``unlabelled``.

    Parameters
    ----------
    data : Wm811k
        As :func:`read_lswmd` read it.

    Returns
    -------
    dict of str to (MapSet, dict)
        Per part, its maps and, per map, its ``lot_name`` and ``wafer_index`` (to store beside them).
    """
    groups: dict[str, list[int]] = {}
    for row, (label, split) in enumerate(zip(data.labels, data.splits, strict=True)):
        name = ("unlabelled" if label is None else "train" if split == "Training" else "test" if split == "Test"
                else "labelled-no-split")
        groups.setdefault(name, []).append(row)
    parts = {}
    for name, rows in groups.items():
        labels = (np.array([PATTERNS.index(str(data.labels[row])) for row in rows], np.int8)
                  if name != "unlabelled" else None)
        parts[name] = (MapSet([data.maps[row] for row in rows], labels, PATTERNS),
                       {"lot_name": np.array([data.lot_names[row] for row in rows]),
                        "wafer_index": data.wafer_index[rows]})
    return parts
