"""Die-level wafer maps: encoding checks, state-preserving resize, reading their files, root causes (the
writers of SINF, E142, npz and KLARF are in ``report``)."""

from pathlib import Path

import numpy as np

from inspection.wafermap.formats import MapSet, read_e142, read_npz, read_sinf
from inspection.wafermap.maps import (
    FAILED,
    GOOD,
    NO_DIE,
    PATTERNS,
    ROOT_CAUSES,
    WaferMapError,
    check_map,
    failure_density,
    resize_map,
    yield_fraction,
)

__all__ = [
    "FAILED", "GOOD", "NO_DIE", "PATTERNS", "ROOT_CAUSES", "MapSet", "WaferMapError", "check_map",
    "failure_density", "read_e142", "read_map_file", "read_npz", "read_sinf", "resize_map", "yield_fraction",
]


def read_map_file(path: str | Path, *, index: int | None = None) -> tuple[np.ndarray, str | None]:
    """A die map from a file, by its extension.

    Parameters
    ----------
    path : str or Path
        A .npz (WM-811K layout), .xml (SEMI E142) or SINF file.
    index : int, optional
        Which map of an npz (default the first).

    Returns
    -------
    die_map : (rows, cols) uint8 ndarray
        0 no die, 1 good, 2 failed.
    label : str or None
        The map's pattern label when the file carries one.
    """
    path = Path(path)
    if not path.is_file():
        raise WaferMapError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        map_set = read_npz(path)
        chosen = 0 if index is None else index
        if not 0 <= chosen < len(map_set.maps):
            raise WaferMapError(f"{path}: --index {chosen} is outside the {len(map_set.maps)} maps it holds")
        label = None if map_set.labels is None else map_set.label_names[int(map_set.labels[chosen])]
        return map_set.maps[chosen], label
    if suffix == ".xml":
        return read_e142(path)[0], None
    if suffix in (".pkl", ".pickle"):
        raise WaferMapError(f"{path}: a pickle is not read as a map; WM-811K's LSWMD.pkl becomes npz files with: "
                            f"inspect wafermap convert {path} --out DIR")
    return read_sinf(path)[0], None
