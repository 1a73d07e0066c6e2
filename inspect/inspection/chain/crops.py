"""Cutting a station's candidates into a folder to label (wiring only): frames through the recipe's chain up to
its candidates, each candidate saved as the crop the line's classifier is given.

The candidates are those of the recipe's model card (its ``detector`` section), or of the recipe's own
``inspect`` band when it has no classifier, so a model trained on the sorted folder (``inspect train FOLDER
--for RECIPE``) sees on the line exactly what it was trained on. With ``presort``, the recipe's current model
puts each crop into the folder of the class it names, for a person to check and correct.
"""

from __future__ import annotations

import csv
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection.acquire import Camera, SkippedInput, stream_frames
from inspection.acquire.labelled import UNSORTED
from inspection.chain.chain import (
    ClassifyCandidates,
    Failed,
    InspectedPart,
    build_chain,
    candidate_chain,
    classical_detector,
)
from inspection.classify import Classifier
from inspection.classify.card import DetectorSettings
from inspection.measure import background_boxes, candidate_crops
from inspection.recipe import Recipe
from inspection.report import save_png
from inspection.types import InspectionError

GOOD = "good"
CROPS_TABLE = "crops.csv"
DETECTOR_FILE = "detector.json"


@dataclass
class CutSummary:
    """What :func:`cut_candidates` wrote."""

    frames: int = 0
    not_registered: Counter[str] = field(default_factory=Counter)
    """Frames the chain could not register to the golden, by reason (no crops cut from them)."""
    crops: Counter[str] = field(default_factory=Counter)
    """Crops per folder (``unsorted``, or each class the model named; ``good``)."""
    agreeing: int = 0
    """Of the ``good`` crops, those of random boxes where frame and golden agree (not candidates)."""
    skipped: list[SkippedInput] = field(default_factory=list)
    detector: DetectorSettings | None = None


def station_detector(recipe: Recipe) -> tuple[DetectorSettings, Classifier | None]:
    """The candidate settings ``recipe``'s line uses, and its classifier when it has one.

    Parameters
    ----------
    recipe : Recipe

    Returns
    -------
    detector : DetectorSettings
        The model card's ``detector`` section, else the recipe's own ``inspect`` band.
    classifier : Classifier or None
    """
    if recipe.classify is not None:
        with build_chain(recipe) as chain:  # checks the model against the recipe as the line does
            name = chain.stages.name
            if isinstance(name, ClassifyCandidates):
                return name.detector, name.classifier
    return classical_detector(recipe), None


def cut_candidates(camera: Camera, recipe: Recipe, out: Path, *, max_frames: int | None = None,
                   presort: bool = False, good_per_frame: int = 1, seed: int = 0, timeout_s: float = 5.0,
                   progress: bool = True) -> CutSummary:
    """Cut every candidate of ``camera``'s frames as ``recipe``'s line cuts it, into ``out``.

    Parameters
    ----------
    camera : Camera
        Opened; read until it ends or ``max_frames``.
    recipe : Recipe
        A wafer-die or pcb recipe with a golden reference.
    out : Path
        A new or empty folder: ``out/unsorted/*.png`` (or ``out/<class>/*.png`` with ``presort``), each crop
        (image, golden, \\|difference\\|) as the BGR channels of a PNG; ``out/crops.csv`` (each crop's file, frame
        and box in pixels); ``out/detector.json`` (the candidate settings, for the card of the model trained).
    max_frames : int, optional
        Stop after this many frames.
    presort : bool, optional
        Put each crop into the folder of the class the recipe's model names (a recipe with a classifier only).
    good_per_frame : int, optional
        Also cut this many random boxes per frame that touch no candidate into ``out/good/``: where frame and
        golden agree, so no defect (a station with few false alarms has no other ``good`` examples).
    seed : int, optional
        Seeds those boxes, so the same frames give the same folder.
    timeout_s : float, optional
        Give up when the camera delivers no frame for this long, in seconds.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    CutSummary
        Frames read, crops written per folder, frames not registered, inputs the camera skipped.

    Raises
    ------
    InspectionError
        A recipe without a golden reference, a folder that is not empty, presorting without a classifier, or
        frames whose size does not fit the golden.
    """
    if recipe.reference is None:
        raise InspectionError(f"{recipe.source_path or recipe.name}: recipe {recipe.name!r} has no reference "
                              "(golden): its candidates are anomaly regions, not crops against a golden")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InspectionError(f"{out}: not empty; crops go into a new or empty folder")
    detector, classifier = station_detector(recipe)
    if presort and classifier is None:
        raise InspectionError(f"{recipe.source_path or recipe.name}: no classify section, so no model to presort "
                              "by; leave out --presort")
    chain = candidate_chain(recipe, detector)
    summary = CutSummary(detector=detector)
    stop = threading.Event()
    rows: list[tuple[str, str, int, int, int, int, int]] = []
    frames = stream_frames(camera, timeout_s=timeout_s, stop=stop, max_frames=max_frames,
                           give_up_after_s=timeout_s, on_skipped=summary.skipped.append)
    try:
        for frame in tqdm(frames, total=max_frames, desc="frames", unit="frame", disable=None if progress else True):
            if not summary.frames:
                chain.check_frame_size(frame, camera=camera.uri)
            summary.frames += 1
            part = chain(frame)
            if isinstance(part, Failed):
                summary.not_registered[str(part.error or part.reason)] += 1
                continue
            rows += _cut_part(part, out, summary, detector=detector, sorter=classifier if presort else None,
                              good_per_frame=good_per_frame, seed=seed)
    finally:
        chain.close()
    out.mkdir(parents=True, exist_ok=True)
    with (out / CROPS_TABLE).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("crop", "frame", "frame_counter", "x0_px", "y0_px", "x1_px", "y1_px"),
                                      *rows])
    (out / DETECTOR_FILE).write_text(detector.model_dump_json(indent=2) + "\n")
    return summary


def _cut_part(part: InspectedPart, out: Path, summary: CutSummary, *, detector: DetectorSettings,
              sorter: Classifier | None, good_per_frame: int, seed: int
              ) -> list[tuple[str, str, int, int, int, int, int]]:
    """Save one registered part's candidate crops (into the folder ``sorter`` names, else ``unsorted``) and
    ``good_per_frame`` crops where frame and golden agree (into ``good``); returns their rows of the table."""
    aligned, frame = part.aligned, part.frame
    if aligned is None:
        return []
    candidates = np.array([region.box_xyxy_px for region in part.regions], float).reshape(-1, 4)
    agreeing = background_boxes(aligned.image.shape, candidates, good_per_frame, valid=aligned.valid,
                                rng=np.random.default_rng([seed, summary.frames]))
    summary.agreeing += len(agreeing)
    boxes = np.concatenate([candidates, agreeing])
    crops = candidate_crops(aligned.image, aligned.reference, boxes, context=detector.crop_context,
                            min_side_px=detector.crop_min_side_px)  # cut once, named below
    folders = [UNSORTED] * len(candidates)
    if sorter is not None and len(candidates):
        probabilities = sorter.classify([(crop, "bgr", 8) for crop in crops[:len(candidates)]])
        folders = [sorter.class_names[int(k)] for k in probabilities.argmax(1)]
    folders += [GOOD] * len(agreeing)
    rows = []
    for number, (crop, folder, box) in enumerate(zip(crops, folders, boxes, strict=True)):
        name = f"{summary.frames - 1:06d}_{number:03d}.png"  # frame order, from 0
        save_png(out / folder / name, crop)
        summary.crops[folder] += 1
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        rows.append((f"{folder}/{name}", str(frame.path or frame.source_id), frame.frame_counter, x0, y0, x1, y1))
    return rows
