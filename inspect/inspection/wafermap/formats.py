"""Wafer-map files: the WM-811K npz layout, SINF text bin maps, and SEMI E142 XML substrate maps."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.wafermap.maps import FAILED, GOOD, MAX_MAP_SIDE, PATTERNS, WaferMapError, check_map

E142_NAMESPACE = "urn:semi-org:xsd.E142-1.V1005.SubstrateMap"


@dataclass(frozen=True)
class MapSet:
    """Wafer maps with optional integer labels into ``label_names``."""

    maps: list[np.ndarray]
    labels: np.ndarray | None
    label_names: tuple[str, ...]


def read_npz(path: str | Path) -> MapSet:
    """Wafer maps in the npz layout of ../shared/data/wm811k.

    Parameters
    ----------
    path : str or Path
        An npz with ``flat``, ``offsets``, ``shapes`` and optionally ``label`` and ``label_names``; pickled
        objects are refused.

    Returns
    -------
    MapSet
        The maps (views into ``flat``) and their labels.
    """
    path = Path(path)
    try:
        _check_npz_sizes(path)
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise WaferMapError(f"{path}: a single array, not an npz archive of flat, offsets and shapes")
        with data:
            missing = {"flat", "offsets", "shapes"} - set(data.files)
            if missing:
                raise WaferMapError(f"{path}: missing array(s) {', '.join(sorted(missing))}; expected flat, offsets, "
                                    "shapes (and optionally label, label_names)")
            arrays = {name: data[name] for name in ("flat", "offsets", "shapes", "label", "label_names")
                      if name in data.files}
    except WaferMapError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        # not npz, truncated, object arrays, zip features an npz never uses (encryption, other compressions)
        raise WaferMapError(f"{path}: not a readable npz file of numeric arrays ({exc})") from None
    flat, offsets, shapes = arrays["flat"], arrays["offsets"], arrays["shapes"]
    for name, array, ndim in (("flat", flat, 1), ("offsets", offsets, 1), ("shapes", shapes, 2)):
        if array.dtype.kind not in "iu" or array.ndim != ndim:
            raise WaferMapError(f"{path}: {name} must be a {ndim}-D integer array, got {array.dtype} with shape "
                                f"{array.shape}")
    if len(shapes) == 0 or shapes.shape[1] != 2:
        raise WaferMapError(f"{path}: shapes must hold (rows, cols) of at least one map, got shape {shapes.shape}")
    if (shapes < 1).any() or (shapes > MAX_MAP_SIDE).any():
        raise WaferMapError(f"{path}: map shapes must be within 1..{MAX_MAP_SIDE} dies a side")
    if len(offsets) != len(shapes) + 1 or offsets[0] != 0 or offsets[-1] != len(flat) or (np.diff(offsets) < 0).any():
        raise WaferMapError(f"{path}: offsets ({len(offsets)}) must rise from 0, be one longer than shapes "
                            f"({len(shapes)}) and end at len(flat) ({len(flat)})")
    maps = []
    for index, (start, end, shape) in enumerate(zip(offsets[:-1], offsets[1:], shapes, strict=True)):
        if end - start != int(shape[0]) * int(shape[1]):
            raise WaferMapError(f"{path}: map {index} has {end - start} values for shape {tuple(shape)}")
        maps.append(check_map(flat[start:end].reshape(shape), source=f"{path} map {index}"))
    if "label" in arrays and (arrays["label"].dtype.kind not in "iu" or arrays["label"].ndim != 1):
        raise WaferMapError(f"{path}: label must be a 1-D integer array, got {arrays['label'].dtype}")
    labels = arrays["label"].astype(np.int64) if "label" in arrays else None
    names = tuple(str(n) for n in arrays["label_names"]) if "label_names" in arrays else PATTERNS
    if labels is not None and (len(labels) != len(maps) or labels.min() < 0 or labels.max() >= len(names)):
        raise WaferMapError(f"{path}: {len(labels)} labels for {len(maps)} maps, or a label outside "
                            f"0..{len(names) - 1}")
    return MapSet(maps, labels, names)


MAX_NPZ_ARRAY_BYTES = 4 << 30
"""The largest array an npz may declare (WM-811K's 811,457 maps hold about 1.3 GB of dies)."""
MAX_TEXT_MAP_BYTES = 64 << 20
"""The largest SINF or E142 file read (a map of 5,000 x 5,000 dies in SINF's 3 characters a die is 75 MB)."""


def _check_npz_sizes(path: Path) -> None:
    """Refuse an npz whose members declare more than ``MAX_NPZ_ARRAY_BYTES`` (or a non-numeric dtype) from their
    headers, before any member is decompressed: a few kB can declare 2**40 elements, and a deflate bomb takes
    minutes to inflate."""
    if not zipfile.is_zipfile(path):
        return  # np.load says what it is (or is not)
    try:
        _check_members(path)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
        # zipfile refuses features an npz never uses (encryption, other compressions, newer versions) this way
        raise WaferMapError(f"{path}: not a readable npz archive ({exc})") from None


def _check_members(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            with archive.open(member) as handle:
                try:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                                   np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                except (ValueError, OSError, EOFError) as exc:
                    raise WaferMapError(f"{path}: member {member.filename}: not a numpy array ({exc})") from None
            if dtype.hasobject:
                raise WaferMapError(f"{path}: member {member.filename} holds Python objects; pickles are refused")
            elements = int(np.prod(shape, dtype=object)) if shape else 1
            if elements * dtype.itemsize > MAX_NPZ_ARRAY_BYTES:
                raise WaferMapError(f"{path}: member {member.filename} declares {shape} of {dtype} "
                                    f"({elements * dtype.itemsize / 1e9:.3g} GB); at most "
                                    f"{MAX_NPZ_ARRAY_BYTES / 1e9:.3g} GB is read")


def _check_text_size(path: Path, *, what: str) -> None:
    """Refuse a text map file larger than any map of ``MAX_MAP_SIDE`` dies a side, before it is read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WaferMapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_TEXT_MAP_BYTES:
        raise WaferMapError(f"{path}: {size / 1e6:.1f} MB; a {what} map of at most {MAX_MAP_SIDE} dies a side is "
                            f"under {MAX_TEXT_MAP_BYTES / 1e6:.0f} MB")


def read_sinf(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """A SINF text bin map.

    Parameters
    ----------
    path : str or Path
        The file: header lines, then ``RowData:`` lines of hexadecimal bins; ``__`` is no die.

    Returns
    -------
    die_map : (rows, cols) uint8 ndarray
        0 no die, 1 good (a bin listed in BCEQU), 2 failed.
    bins : (rows, cols) int ndarray
        The bin codes (-1 for no die).
    header : dict of str to str
        The header's fields.

    Raises
    ------
    WaferMapError
        Naming the file (and line) when a line is not KEY:VALUE, a bin is not hexadecimal, or rows or columns
        disagree with the header.
    """
    path = Path(path)
    header: dict[str, str] = {}
    rows: list[list[str]] = []
    _check_text_size(path, what="SINF")
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise WaferMapError(f"{path}:{number}: expected KEY:VALUE, got {line[:40]!r}")
        if key.strip().upper() == "ROWDATA":
            rows.append(value.split())
        else:
            header[key.strip().upper()] = value.strip()
    for key in ("ROWCT", "COLCT"):
        text = header.get(key, "")
        if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= MAX_MAP_SIDE:
            raise WaferMapError(f"{path}: header {key} {text[:20]!r}; expected a whole number of dies within "
                                f"1..{MAX_MAP_SIDE}")
    row_count, col_count = int(header["ROWCT"]), int(header["COLCT"])
    if len(rows) != row_count:
        raise WaferMapError(f"{path}: ROWCT says {row_count} rows, the file has {len(rows)} RowData lines")
    for index, row in enumerate(rows):
        if len(row) != col_count:
            raise WaferMapError(f"{path}: RowData line {index + 1} has {len(row)} dies; COLCT says {col_count}")
    good_bins = {code.upper() for code in header.get("BCEQU", "01").split()}
    bins = np.full((row_count, col_count), -1, np.int32)
    states = np.zeros((row_count, col_count), np.uint8)
    for r, row in enumerate(rows):
        for c, code in enumerate(row):
            if re.fullmatch(r"_+|@+", code):  # no die
                continue
            if not re.fullmatch(r"[0-9A-Fa-f]{1,4}", code):  # int(code, 16) takes -1, 0x1 and 0_2 too
                raise WaferMapError(f"{path}: RowData line {r + 1}, die {c + 1}: {code[:20]!r} is not a bin code "
                                    "(1-4 hex digits, or __ for no die)")
            bins[r, c] = int(code, 16)
            states[r, c] = GOOD if code.upper() in good_bins else FAILED
    return check_map(states, source=str(path)), bins, header


def _map_dimension(root: ET.Element, ns: dict[str, str], prefix: str, bin_map: ET.Element | None) -> ET.Element | None:
    """The ``Dimension`` of the layout the bin map is of: the layout the substrate map's ``LayoutSpecifier`` names
    (its last part), followed down its ``ChildLayout``s to the device grid; failing that, the layout whose rows
    match the bin map's, else the first."""
    layouts = {layout.get("LayoutId", ""): layout for layout in root.iterfind(f".//{prefix}Layout", ns)}
    rows = str(len(bin_map.findall(f"{prefix}BinCode", ns))) if bin_map is not None else ""
    substrate_map = root.find(f".//{prefix}SubstrateMap", ns)
    layout = layouts.get((substrate_map.get("LayoutSpecifier", "") if substrate_map is not None else "").split("/")[-1])
    for _ in range(len(layouts)):  # down the child layouts (bounded: a cycle of ids ends here)
        child = layout.find(f".//{prefix}ChildLayout", ns) if layout is not None else None
        if child is None or child.get("LayoutId") not in layouts:
            break
        layout = layouts[child.get("LayoutId", "")]
    named = layout.find(f"{prefix}Dimension", ns) if layout is not None else None
    if named is not None and named.get("Y") == rows:
        return named
    dimensions = [d for candidate in layouts.values() if (d := candidate.find(f"{prefix}Dimension", ns)) is not None]
    return next((d for d in dimensions if d.get("Y") == rows), named if named is not None else
                (dimensions[0] if dimensions else None))


def read_e142(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """A SEMI E142 substrate map (hexadecimal BinCodeMap with Pass/Fail bin definitions).

    Parameters
    ----------
    path : str or Path
        The XML file; external entities and DTDs are refused.

    Returns
    -------
    die_map : (rows, cols) uint8 ndarray
        0 no die (the null bin), 1 pass, 2 fail.
    info : dict of str to str
        ``substrate_id`` and ``lot_id`` (empty when the file has none).

    Raises
    ------
    WaferMapError
        Naming the file and what disagrees (rows or columns against the layout, an unknown bin).
    """
    path = Path(path)
    _check_text_size(path, what="E142")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise WaferMapError(f"{path}: not well-formed XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # encoding="x-no-such", or an encoding Python cannot decode
        raise WaferMapError(f"{path}: not readable XML ({exc})") from None
    namespace = re.match(r"\{(.*)\}", root.tag)
    ns = {"e": namespace.group(1)} if namespace else {"e": ""}
    prefix = "e:" if namespace else ""
    bin_map = root.find(f".//{prefix}BinCodeMap", ns)
    dimension = _map_dimension(root, ns, prefix, bin_map)
    if dimension is None or bin_map is None:
        raise WaferMapError(f"{path}: no Layout Dimension or BinCodeMap element; not an E142 substrate map")
    size = (dimension.get("X", ""), dimension.get("Y", ""))
    if not all(re.fullmatch(r"[0-9]{1,6}", text) and 1 <= int(text) <= MAX_MAP_SIDE for text in size):
        raise WaferMapError(f"{path}: Dimension X={size[0][:20]!r} Y={size[1][:20]!r}; expected whole numbers within "
                            f"1..{MAX_MAP_SIDE}")
    columns, row_count = int(size[0]), int(size[1])
    null_bin = bin_map.get("NullBin", "FF").upper()
    width = len(null_bin)
    definitions = {d.get("BinCode", "").upper(): d.get("BinQuality", "").lower()
                   for d in bin_map.iterfind(f".//{prefix}BinDefinition", ns)}
    passing = {code for code, quality in definitions.items() if quality == "pass"}
    rows = [(row.text or "").strip().upper() for row in bin_map.iterfind(f"{prefix}BinCode", ns)]
    if len(rows) != row_count:
        raise WaferMapError(f"{path}: Dimension Y={row_count} but the BinCodeMap has {len(rows)} BinCode rows")
    states = np.zeros((row_count, columns), np.uint8)
    for r, row in enumerate(rows):
        if len(row) != columns * width:
            raise WaferMapError(f"{path}: BinCode row {r + 1} holds {len(row) // width} dies; Dimension X={columns}")
        for c in range(columns):
            code = row[c * width : (c + 1) * width]
            if code == null_bin:
                continue
            if not definitions and not re.fullmatch(r"[0-9A-F]+", code):
                raise WaferMapError(f"{path}: BinCode row {r + 1}, die {c + 1}: {code!r} is not a hexadecimal bin "
                                    "and the map has no BinDefinitions")
            if definitions and code not in definitions:  # as the SINF reader refuses a bin it cannot read
                raise WaferMapError(f"{path}: BinCode row {r + 1}, die {c + 1}: bin {code!r} is not among the "
                                    f"BinDefinitions ({', '.join(sorted(definitions))}) nor the NullBin {null_bin!r}")
            states[r, c] = GOOD if code in passing else FAILED
    substrate = root.find(f".//{prefix}SubstrateMap", ns)
    lot = root.find(f".//{prefix}Substrate/{prefix}LotId", ns)
    info = {"substrate_id": substrate.get("SubstrateId", "") if substrate is not None else "",
            "lot_id": (lot.text or "") if lot is not None else ""}
    return check_map(states, source=str(path)), info


