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
from inspection.chain.chain import AnomalyStages, Failed, InspectedPart, PartChain
from inspection.classify.anomaly import anomaly_regions
from inspection.classify.card import DetectorSettings
from inspection.classify.detect import as_hypotheses
from inspection.evaluate.anomaly import ScoredBoards, anomaly_report
from inspection.evaluate.pairs import PairResult, perturb, score_pairs
from inspection.preprocess import to_gray
from inspection.report import draw_anomaly_map, save_png
from inspection.types import Frame, InspectionError

CANDIDATE_SETTINGS = DetectorSettings(
    band_px=1, tolerance_grey=30, open_px=2, close_px=7, min_area_px=4, min_side_px=3, edge_margin_px=10,
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
    results, elapsed_s = inspect_pairs(chain, pairs, workers=workers, max_shift_px=max_shift_px,
                                       max_angle_deg=max_angle_deg, seed=seed)
    baseline_run = None if baseline is None else inspect_pairs(
        baseline, pairs, workers=workers, max_shift_px=max_shift_px, max_angle_deg=max_angle_deg, seed=seed)
    result = score_pairs(results, class_names=list(DEEPPCB_TYPES),
                         baseline=None if baseline_run is None else baseline_run[0])
    result.update({"images_per_s": round(len(pairs) / elapsed_s, 2), "pairs": len(pairs), "workers": workers,
                   "max_shift_px": max_shift_px, "max_angle_deg": max_angle_deg, "seed": seed})
    if baseline_run is not None:
        result["baseline"]["images_per_s"] = round(len(pairs) / baseline_run[1], 2)
    return result


def inspect_pairs(chain: PartChain, pairs: list[PcbPair], *, workers: int = 2, max_shift_px: float = 0.0,
                  max_angle_deg: float = 0.0, seed: int = 0) -> tuple[list[PairResult], float]:
    """Every board through ``chain`` against its template, optionally moved first.

    Parameters
    ----------
    chain : PartChain
        Built with ``rank_hypotheses=True``.
    pairs : list of PcbPair
    workers : int, optional
        Boards inspected at once.
    max_shift_px, max_angle_deg : float, optional
        Each test image (and its truth) is moved by a seeded random rigid transform within these (0: not moved).
    seed : int, optional

    Returns
    -------
    results : list of PairResult
        One per pair, in order.
    seconds : float
        The time it all took, reading included.
    """
    perturbations = np.random.default_rng(seed).spawn(len(pairs))

    def one(index: int) -> PairResult:
        pair = pairs[index]
        try:
            test, template = read_grey_frame(pair.test_path, index), read_grey_frame(pair.template_path, index)
        except InspectionError as exc:
            return PairResult(pair.name, pair.boxes, pair.kinds, failure=str(exc))
        truth_boxes, truth_kinds = pair.boxes, pair.kinds
        if max_shift_px or max_angle_deg:
            moved, truth_boxes, inside = perturb(test.image, truth_boxes, rng=perturbations[index],
                                                 max_shift_px=max_shift_px, max_angle_deg=max_angle_deg)
            test = replace(test, image=moved)
            truth_boxes = truth_boxes[inside]
            truth_kinds = tuple(kind for kind, keep in zip(truth_kinds, inside, strict=True) if keep)
        part = chain(test, reference=template)
        if isinstance(part, Failed):
            return PairResult(pair.name, truth_boxes, truth_kinds, failure=f"{pair.test_path}: {part.reason}")
        if part.named.hypotheses is None:
            raise ValueError("inspect_pairs needs a chain built with rank_hypotheses=True")
        return PairResult(pair.name, truth_boxes, truth_kinds, as_hypotheses(part.detections), part.named.hypotheses)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(one, range(len(pairs))), total=len(pairs), desc="inspecting pairs",
                            disable=None))
    return results, time.perf_counter() - started


def score_anomaly_pairs(chain: PartChain, pairs: list[PcbPair], *, workers: int = 2
                        ) -> tuple[ScoredBoards, float]:
    """Score maps of DeepPCB pairs through the chain a station without a golden runs: each test board scored alone
    (a defective board) and each template (a good board).

    Parameters
    ----------
    chain : PartChain
        A chain of the anomaly model alone (a ``pcb`` recipe with ``anomaly`` and no ``reference``).
    pairs : list of PcbPair
    workers : int, optional
        Images scored at once (through the chain's anomaly micro-batcher).

    Returns
    -------
    ScoredBoards
        The maps with the annotated boxes, at the card's threshold.
    float
        Milliseconds a test board took (reading, preparing and scoring).

    Raises
    ------
    InspectionError
        For a chain with a golden, or a board the model cannot take (another size, colour).
    """
    stages = chain.stages
    if not isinstance(stages, AnomalyStages):
        raise InspectionError(f"{chain.recipe.name}: evaluating the anomaly model alone needs a recipe without a "
                              "golden (reference), as pcb-anomaly")
    model = stages.anomalies.model

    def score(path: Path) -> np.ndarray:
        part = chain(read_grey_frame(path, 0))
        if isinstance(part, Failed) or part.anomaly_map is None:
            raise InspectionError(f"{path}: {part.reason}")
        return part.anomaly_map

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        defect_maps = list(tqdm(pool.map(score, [p.test_path for p in pairs]), total=len(pairs),
                                desc="scoring test boards", unit="image", disable=None))
        elapsed_s = time.perf_counter() - started
        good_maps = list(tqdm(pool.map(score, [p.template_path for p in pairs]), total=len(pairs),
                              desc="scoring good boards", unit="image", disable=None))
    spec, settings = model.card.input, model.settings
    boards = ScoredBoards(defect_maps, [p.boxes for p in pairs], [p.kinds for p in pairs], good_maps,
                          stride_px=settings.map_stride_px, image_shape=(spec.height, spec.width),
                          threshold=settings.threshold)
    return boards, 1000.0 * elapsed_s / len(pairs)


def evaluate_anomaly_pairs(chain: PartChain, pairs: list[PcbPair], *, workers: int = 2,
                           threshold: float | None = None, target_false_alarms_per_image: float = 1.0,
                           resamples: int = 1000, pictures: Path | None = None, picture_count: int = 6
                           ) -> dict[str, Any]:
    """An anomaly model on DeepPCB pairs without their templates, through the chain a station without a golden runs
    (:func:`score_anomaly_pairs`).

    Parameters
    ----------
    chain, pairs, workers
        As :func:`score_anomaly_pairs`'s.
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

    Raises
    ------
    InspectionError
        For a chain with a golden, or a board the model cannot take (another size, colour).
    """
    boards, ms_per_image = score_anomaly_pairs(chain, pairs, workers=workers)
    boards = replace(boards, threshold=threshold or boards.threshold)
    stages = chain.stages
    assert isinstance(stages, AnomalyStages)  # score_anomaly_pairs refuses any other chain
    model = stages.anomalies.model
    if pictures is not None:
        draw_score_maps(pictures, pairs[:picture_count], boards)
    report = anomaly_report(boards.defect_maps, boards.truth_boxes, boards.truth_kinds, boards.good_maps,
                            stride_px=boards.stride_px, image_shape=boards.image_shape, threshold=boards.threshold,
                            target_false_alarms_per_image=target_false_alarms_per_image, resamples=resamples)
    report.update({"groups": sorted({p.group for p in pairs}), "images_per_s": round(1000.0 / ms_per_image, 2),
                   "ms_per_image": round(ms_per_image, 2), "workers": workers,
                   "model_sha256": model.card.onnx_sha256})
    return report


def draw_score_maps(folder: Path, pairs: list[PcbPair], boards: ScoredBoards) -> None:
    """Draw each board with its score map, annotated boxes (green) and the regions found (red).

    Parameters
    ----------
    folder : Path
        Where the pictures go, one PNG per board named after its test image.
    pairs : list of PcbPair
        The boards to draw.
    boards : ScoredBoards
        The model's maps of these boards' test images (more maps than ``pairs`` are ignored); the regions are cut
        at its threshold.
    """
    for pair, score_map in zip(pairs, boards.defect_maps, strict=False):
        found = anomaly_regions(score_map, threshold=boards.threshold, stride_px=boards.stride_px,
                                image_shape=boards.image_shape, pixel_size_um=1.0)
        image = read_grey_frame(pair.test_path, 0).image
        save_png(folder / f"{pair.test_path.stem}.png", draw_anomaly_map(
            image, score_map, threshold=boards.threshold, truth_boxes=pair.boxes,
            found_boxes=np.array([r.box_xyxy_px for r in found], float).reshape(-1, 4),
            title=f"{pair.test_path.name}: {len(pair.kinds)} annotated (green), {len(found)} found (red)"))
