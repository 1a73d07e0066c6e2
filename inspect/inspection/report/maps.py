"""Wafer-map files written from graded wafers: the WM-811K npz layout, SINF text bin maps and SEMI E142 XML
substrate maps. Their readers and the :class:`~inspection.wafermap.formats.MapSet` record are in
:mod:`inspection.wafermap.formats`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from inspection.wafermap.formats import E142_NAMESPACE, MapSet
from inspection.wafermap.maps import FAILED, GOOD, NO_DIE, WaferMapError, check_map


def write_npz(path: str | Path, map_set: MapSet, *, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write maps in the npz layout :func:`read_npz` reads.

    Parameters
    ----------
    path : str or Path
        The npz to write.
    map_set : MapSet
        Maps and their labels.
    extra : dict of str to ndarray, optional
        More per-map arrays to store beside them (numbers or text; a lot's names, say), which readers may ignore.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = np.array([m.shape for m in map_set.maps], np.int32).reshape(-1, 2)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in map_set.maps])]).astype(np.int64)
    arrays = {"flat": np.concatenate([m.ravel() for m in map_set.maps]).astype(np.uint8), "offsets": offsets,
              "shapes": shapes, "label_names": np.array(map_set.label_names)}
    if map_set.labels is not None:
        arrays["label"] = np.asarray(map_set.labels, np.int8)
    np.savez_compressed(path, **arrays, **(extra or {}))
    return path


def write_sinf(path: str | Path, die_map: np.ndarray, *, wafer_id: str, lot: str = "", device: str = "",
               die_size_mm: tuple[float, float] | None = None) -> Path:
    """Write a SINF bin map: good dies bin 01 (BCEQU), failed dies bin 02, no die ``__``.

    The map is notch down, as the maps are drawn and the KLARF says (``FNLOC:180``); ``XDIES``/``YDIES`` are
    the die pitch in millimetres (``DUTMS:mm``) when it is known.

    Parameters
    ----------
    path : str or Path
        The file to write.
    die_map : (rows, cols) ndarray
        0 no die, 1 good, 2 failed.
    wafer_id : str
        The wafer's id (``WAFER``).
    lot : str, optional
        The lot's id (``LOT``).
    device : str, optional
        The product (``DEVICE``).
    die_size_mm : tuple of float, optional
        The die pitch (x, y) in millimetres; without it, 1 x 1.

    Returns
    -------
    Path
        ``path``.
    """
    die_map = check_map(die_map, source=str(path))
    for key, value in (("DEVICE", device), ("LOT", lot), ("WAFER", wafer_id)):
        if any(not char.isprintable() for char in value):  # a newline would forge a header or RowData line
            raise WaferMapError(f"{path}: SINF {key} {value[:40]!r} holds a control character; expected one line "
                                "of printable text")
    codes = {NO_DIE: "__", GOOD: "01", FAILED: "02"}
    size_x, size_y = die_size_mm or (1.0, 1.0)
    lines = [f"DEVICE:{device}", f"LOT:{lot}", f"WAFER:{wafer_id}", "FNLOC:180", f"ROWCT:{die_map.shape[0]}",
             f"COLCT:{die_map.shape[1]}", "BCEQU:01", "REFPX:0", "REFPY:0", "DUTMS:mm", f"XDIES:{size_x:.4f}",
             f"YDIES:{size_y:.4f}"]
    lines += ["RowData:" + " ".join(codes[int(v)] for v in row) for row in die_map]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # ASCII ids as before; any other kept whole
    return path


def _e142(tag: str) -> str:
    return f"{{{E142_NAMESPACE}}}{tag}"


def write_e142(path: str | Path, die_map: np.ndarray, *, substrate_id: str, lot_id: str | None = None,
               slot: int | None = None, die_size_mm: tuple[float, float] | None = None,
               wafer_diameter_mm: float | None = None) -> Path:
    """Write a SEMI E142 substrate map: bins 01 (Pass), 02 (Fail), null bin FF for positions without a die.

    The layout is the one community writers emit: a top-level wafer layout (one position, the wafer's size)
    whose child layout ``Devices`` holds the die grid; the map's first row is the top one (``OriginLocation
    UpperLeft``, ``AxisDirection DownRight``) with the notch down (``Orientation 180``).

    Parameters
    ----------
    path : str or Path
        The XML file to write.
    die_map : (rows, cols) ndarray
        0 no die, 1 good, 2 failed.
    substrate_id : str
        The wafer's id.
    lot_id : str, optional
        The wafer's lot (the substrate's ``LotId``).
    slot : int, optional
        The wafer's slot in its carrier (``SlotNumber``).
    die_size_mm : tuple of float, optional
        The die pitch (x, y) in millimetres (``DeviceSize`` of the device layout).
    wafer_diameter_mm : float, optional
        The wafer's diameter (``DeviceSize`` of the wafer layout).

    Returns
    -------
    Path
        ``path``.
    """
    die_map = check_map(die_map, source=str(path))
    ET.register_namespace("", E142_NAMESPACE)
    root = ET.Element(_e142("MapData"))
    layouts = ET.SubElement(root, _e142("Layouts"))
    wafer = ET.SubElement(layouts, _e142("Layout"), LayoutId="WaferLayout", DefaultUnits="mm", TopLevel="true")
    ET.SubElement(wafer, _e142("Dimension"), X="1", Y="1")
    if wafer_diameter_mm:
        ET.SubElement(wafer, _e142("DeviceSize"), X=f"{wafer_diameter_mm:g}", Y=f"{wafer_diameter_mm:g}")
    ET.SubElement(ET.SubElement(wafer, _e142("ChildLayouts")), _e142("ChildLayout"), LayoutId="Devices")
    devices = ET.SubElement(layouts, _e142("Layout"), LayoutId="Devices", DefaultUnits="mm")
    ET.SubElement(devices, _e142("Dimension"), X=str(die_map.shape[1]), Y=str(die_map.shape[0]))
    if die_size_mm:
        ET.SubElement(devices, _e142("DeviceSize"), X=f"{die_size_mm[0]:g}", Y=f"{die_size_mm[1]:g}")
        ET.SubElement(devices, _e142("StepSize"), X=f"{die_size_mm[0]:g}", Y=f"{die_size_mm[1]:g}")
    substrate = ET.SubElement(ET.SubElement(root, _e142("Substrates")), _e142("Substrate"), SubstrateType="Wafer",
                              SubstrateId=substrate_id)
    if lot_id is not None:
        ET.SubElement(substrate, _e142("LotId")).text = lot_id
    if slot is not None:
        ET.SubElement(substrate, _e142("SlotNumber")).text = str(slot)
    substrate_map = ET.SubElement(ET.SubElement(root, _e142("SubstrateMaps")), _e142("SubstrateMap"),
                                  SubstrateType="Wafer", SubstrateId=substrate_id,
                                  LayoutSpecifier="WaferLayout/Devices", OriginLocation="UpperLeft",
                                  AxisDirection="DownRight", Orientation="180")
    overlay = ET.SubElement(substrate_map, _e142("Overlay"), MapName="BinMap", MapVersion="1")
    bin_map = ET.SubElement(overlay, _e142("BinCodeMap"), BinType="HexaDecimal", NullBin="FF")
    definitions = ET.SubElement(bin_map, _e142("BinDefinitions"))
    for code, quality, state in (("01", "Pass", GOOD), ("02", "Fail", FAILED)):
        ET.SubElement(definitions, _e142("BinDefinition"), BinCode=code, BinQuality=quality,
                      BinCount=str(int((die_map == state).sum())), BinDescription=quality.lower())
    codes = {NO_DIE: "FF", GOOD: "01", FAILED: "02"}
    for row in die_map:
        ET.SubElement(bin_map, _e142("BinCode")).text = "".join(codes[int(v)] for v in row)
    path = Path(path)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
