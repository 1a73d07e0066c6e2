"""PCB template/test pairs through the recipe's chain (wiring only): one board, or the DeepPCB metric over a list.

The ``pcb`` chain registers the template onto the board under test, finds where they differ with the model
card's detector settings, lets the CNN name each candidate (open, short, mousebite, spur, copper, pin-hole, or
a false alarm), joins the pieces of one broken defect, grows boxes to the annotators' size and suppresses
overlaps: the same chain ``inspect run`` runs on a camera's frames, here fed pairs whose template is given.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspection.acquire import read_image
from inspection.acquire.deeppcb import DEEPPCB_TYPES, PcbPair
from inspection.chain.chain import Failed, InspectedPart, PartChain
from inspection.classify import MicroBatcher
from inspection.classify.anomaly import AnomalyModel, anomaly_regions
from inspection.classify.card import DetectorSettings
from inspection.classify.detect import as_hypotheses
from inspection.evaluate.anomaly import anomaly_report
from inspection.evaluate.detection import Outcomes
from inspection.evaluate.pairs import matched, pairs_report, perturb
from inspection.preprocess import to_gray
from inspection.report import draw_anomaly_map, save_png
from inspection.types import Frame, InspectionError

CANDIDATE_SETTINGS = DetectorSettings(
    band_px=1, tolerance_grey=30, open_px=2, close_px=7, min_area_px=4, edge_margin_px=10,
    edge_zone_px=2, edge_open_px=3, edge_keep_min_area_px=6, edge_keep_max_side_px=12, crop_context=1.5,
    crop_min_side_px=32,
    box_growth={kind: (1.0, 22.0) for kind in DEEPPCB_TYPES}, nms_iou=0.15, min_score=0.5,
    fitted_on="defaults before fitting",
)
"""The candidate stage a new PCB model is trained on (datasets/deeppcb_crops.py fits the box growth)."""


def find_candidates(chain: PartChain, test: np.ndarray, template: np.ndarray) -> InspectedPart:
    """A grey test board and its template through a candidate chain (:func:`~inspection.chain.chain.candidate_chain`).

    Parameters
    ----------
    chain : PartChain
    test, template : (H, W) uint8 ndarray

    Returns
    -------
    InspectedPart
        With the template registered to the board (``aligned``) and the candidate ``regions``.

    Raises
    ------
    InspectionError
        When the board cannot be registered to its template.
    """
    part = chain(Frame(test, "mono", 8, "test", 0, 0.0), reference=Frame(template, "mono", 8, "template", 0, 0.0))
    if isinstance(part, Failed):
        raise part.error or InspectionError(part.reason)
    return part


def read_grey_frame(path: Path, counter: int) -> Frame:
    """A board image as a grey frame (DeepPCB stores some as RGB with equal channels), dtype kept.

    Parameters
    ----------
    path : Path
    counter : int
        The frame's counter.

    Returns
    -------
    Frame
    """
    image, layout, bit_depth = read_image(path)
    return Frame(to_gray(image, layout=layout), "mono", bit_depth, str(path), counter, time.time(), path=str(path))


def inspect_pair(chain: PartChain, test: Path, template: Path) -> InspectedPart:
    """One board against its template.

    Parameters
    ----------
    chain : PartChain
    test, template : Path
        The image files.

    Returns
    -------
    InspectedPart

    Raises
    ------
    InspectionError
        Naming the files, when the pair cannot be inspected.
    """
    part = chain(read_grey_frame(test, 0), reference=read_grey_frame(template, 0))
    if isinstance(part, Failed):
        raise InspectionError(f"{test} against {template}: {part.reason}")
    return part


def evaluate_pairs(chain: PartChain, pairs: list[PcbPair], *, workers: int = 2, max_shift_px: float = 0.0,
                   max_angle_deg: float = 0.0, seed: int = 0, baseline: PartChain | None = None) -> dict[str, Any]:
    """The DeepPCB metric over ``pairs``, its 95% bootstrap intervals over the pairs and the end-to-end speed.

    The speed includes image reading, registration, candidates, classification and NMS. Precision, recall and
    F-score count the reported detections; AP ranks every hypothesis.

    Parameters
    ----------
    chain : PartChain
        Built with ``rank_hypotheses=True``.
    pairs : list of PcbPair
    workers : int, optional
        Pairs inspected at once.
    max_shift_px, max_angle_deg : float, optional
        Each test image is moved by a seeded random rigid transform within these (0: not moved).
    seed : int, optional
    baseline : PartChain, optional
        A second model that inspects the same (equally moved) pairs.

    Returns
    -------
    dict
        The report of :func:`~inspection.evaluate.pairs.pairs_report` (with ``ci95``), ``images_per_s``, the
        settings and the pairs that failed; with ``baseline``, its figures, the difference (this model minus the
        baseline) and that difference's paired interval under ``baseline``.
    """
    outcomes, truth, failed, elapsed_s = _inspect_pairs(chain, pairs, workers=workers, max_shift_px=max_shift_px,
                                                        max_angle_deg=max_angle_deg, seed=seed)
    baseline_run = None if baseline is None else _inspect_pairs(
        baseline, pairs, workers=workers, max_shift_px=max_shift_px, max_angle_deg=max_angle_deg, seed=seed)
    result = pairs_report(outcomes, truth, class_names=list(DEEPPCB_TYPES),
                          baseline=None if baseline_run is None else baseline_run[0])
    result.update({"images_per_s": round(len(pairs) / elapsed_s, 2), "pairs": len(pairs), "workers": workers,
                   "max_shift_px": max_shift_px, "max_angle_deg": max_angle_deg, "seed": seed, "failed": failed})
    if baseline_run is not None:
        result["baseline"].update({"images_per_s": round(len(pairs) / baseline_run[3], 2),
                                   "failed": baseline_run[2]})
    return result


def _inspect_pairs(chain: PartChain, pairs: list[PcbPair], *, workers: int, max_shift_px: float,
                   max_angle_deg: float, seed: int) -> tuple[Outcomes, list[tuple[str, ...]], list[str], float]:
    """Per pair, what the model made of it (kept per pair so that intervals resample whole pairs), its
    ground-truth classes, the pairs that failed with their reasons, and the seconds it all took."""
    perturbations = np.random.default_rng(seed).spawn(len(pairs))

    def one(index: int) -> tuple[PcbPair, InspectedPart | str, np.ndarray, tuple[str, ...]]:
        pair = pairs[index]
        try:
            test, template = read_grey_frame(pair.test_path, index), read_grey_frame(pair.template_path, index)
        except InspectionError as exc:
            return pair, str(exc), pair.boxes, pair.kinds
        truth_boxes, truth_kinds = pair.boxes, pair.kinds
        if max_shift_px or max_angle_deg:
            moved, truth_boxes, inside = perturb(test.image, truth_boxes, rng=perturbations[index],
                                                 max_shift_px=max_shift_px, max_angle_deg=max_angle_deg)
            test = replace(test, image=moved)
            truth_boxes = truth_boxes[inside]
            truth_kinds = tuple(kind for kind, keep in zip(truth_kinds, inside, strict=True) if keep)
        part = chain(test, reference=template)
        if isinstance(part, Failed):
            return pair, f"{pair.test_path}: {part.reason}", truth_boxes, truth_kinds
        return pair, part, truth_boxes, truth_kinds

    detections: list[list[tuple[str, float, bool]]] = []
    ranked: list[list[tuple[str, float, bool]]] = []
    truth: list[tuple[str, ...]] = []
    failed: list[str] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for pair, result, truth_boxes, truth_kinds in tqdm(pool.map(one, range(len(pairs))), total=len(pairs),
                                                               desc="inspecting pairs", disable=None):
            truth.append(truth_kinds)
            if isinstance(result, str):
                failed.append(f"{pair.name}: {result}")
                detections.append([])
                ranked.append([])
                continue
            hypotheses = result.named.hypotheses
            if hypotheses is None:
                raise ValueError("evaluate_pairs needs a chain built with rank_hypotheses=True")
            detections.append(matched(as_hypotheses(result.detections), truth_boxes, truth_kinds))
            ranked.append(matched(hypotheses, truth_boxes, truth_kinds))
    return (detections, ranked), truth, failed, time.perf_counter() - started


def evaluate_anomaly_pairs(model: AnomalyModel, pairs: list[PcbPair], *, workers: int = 2, max_batch: int = 8,
                           threshold: float | None = None, target_false_alarms_per_image: float = 1.0,
                           resamples: int = 1000, pictures: Path | None = None, picture_count: int = 6
                           ) -> dict[str, Any]:
    """An anomaly model on DeepPCB pairs without their templates.

    Each board's test image is scored alone, each template (a good board) as a good image.

    Parameters
    ----------
    model : AnomalyModel
    pairs : list of PcbPair
    workers : int, optional
        Images scored at once (through one micro-batcher).
    max_batch : int, optional
    threshold : float, optional
        Replaces the card's operating threshold (None: the card's).
    target_false_alarms_per_image : float, optional
        The false-alarm rate at which recall is also reported.
    resamples : int, optional
        Bootstrap resamples of the intervals.
    pictures : Path, optional
        A folder for the first ``picture_count`` boards drawn with their score maps, annotated boxes and regions.
    picture_count : int, optional

    Returns
    -------
    dict
        The report of :func:`~inspection.evaluate.anomaly.anomaly_report` plus the speed (reading, preparing and
        scoring) and the groups evaluated.
    """
    settings = model.settings
    batcher = MicroBatcher(model.score_maps, max_batch=max_batch, max_wait_ms=2.0)

    def score(path: Path) -> np.ndarray:
        frame = read_grey_frame(path, 0)
        prepared = model.prepare(frame.image, layout="mono", bit_depth=frame.bit_depth, source=str(path))
        return batcher.run(prepared[None])[0].output[0]

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            defect_maps = list(tqdm(pool.map(score, [p.test_path for p in pairs]), total=len(pairs),
                                    desc="scoring test boards", unit="image", disable=None))
            elapsed_s = time.perf_counter() - started
            good_maps = list(tqdm(pool.map(score, [p.template_path for p in pairs]), total=len(pairs),
                                  desc="scoring good boards", unit="image", disable=None))
    finally:
        batcher.close()
    spec = model.card.input
    at = threshold or settings.threshold
    if pictures is not None:
        _draw_score_maps(pictures, pairs[:picture_count], defect_maps, model=model, threshold=at)
    report = anomaly_report(defect_maps, [p.boxes for p in pairs], [p.kinds for p in pairs], good_maps,
                            stride_px=settings.map_stride_px, image_shape=(spec.height, spec.width),
                            threshold=at,
                            target_false_alarms_per_image=target_false_alarms_per_image, resamples=resamples)
    report.update({"groups": sorted({p.group for p in pairs}), "images_per_s": round(len(pairs) / elapsed_s, 2),
                   "ms_per_image": round(1000.0 * elapsed_s / len(pairs), 2), "workers": workers,
                   "model_sha256": model.card.onnx_sha256})
    return report


def _draw_score_maps(folder: Path, pairs: list[PcbPair], score_maps: list[np.ndarray], *, model: AnomalyModel,
                     threshold: float) -> None:
    """Each board with its score map, annotated boxes (green) and the regions found (red), into ``folder``."""
    spec, settings = model.card.input, model.settings
    for pair, score_map in zip(pairs, score_maps, strict=False):
        found = anomaly_regions(score_map, threshold=threshold, stride_px=settings.map_stride_px,
                                image_shape=(spec.height, spec.width), pixel_size_um=1.0)
        image = read_grey_frame(pair.test_path, 0).image
        save_png(folder / f"{pair.test_path.stem}.png", draw_anomaly_map(
            image, score_map, threshold=threshold, truth_boxes=pair.boxes,
            found_boxes=np.array([r.box_xyxy_px for r in found], float).reshape(-1, 4),
            title=f"{pair.test_path.name}: {len(pair.kinds)} annotated (green), {len(found)} found (red)"))
