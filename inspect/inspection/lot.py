"""Offline grading of wafer lots (wiring only): the per-wafer chain and the run over a lot.

Per wafer: read -> preprocess -> wafer edge and notch -> canonical turn -> die grid (checked against the
recipe) -> die crops -> batched die classifier (ONNX) -> defect position in each failed die (difference from
the wafer's median die) -> die map -> wafer-map pattern and root cause -> verdict from the recipe's rules.
:class:`WaferGrader` is built from the recipe alone and called per wafer, so the local process pool and Ray
run exactly the same code; only the driver writes results, one transaction per wafer.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from inspection.acquire.folder import read_image
from inspection.align.wafer import WaferFit, find_wafer
from inspection.calibrate import load_flatfield
from inspection.classify.prepare import prepare_batch
from inspection.classify.runtime import Classifier, SessionSettings
from inspection.grade import wafer_verdict
from inspection.measure.grid import Die, DieGrid, cell_origins_xy_px, die_crops, find_die_grid, grid_angle_deg
from inspection.preprocess import FlatField, preprocess
from inspection.progress import progress
from inspection.recipe import LotRecipe
from inspection.report.lots import LotStore
from inspection.sample_lot import MANIFEST_COLUMNS, MANIFEST_NAME, read_truth
from inspection.types import GradedWafer, InspectionError, LotItem, Verdict
from inspection.wafermap.classify import WaferMapModel, classify_maps, load_wafermap_model
from inspection.wafermap.maps import die_map_of

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
REQUIRED_COLUMNS, OPTIONAL_COLUMNS = MANIFEST_COLUMNS[:2], MANIFEST_COLUMNS[2:]
LOCALISE_TOLERANCE_GREY = 25.0
"""A pixel of a failed die this far from the median die belongs to the defect."""
THUMBNAILS_PER_WAFER = 4
Engine = Literal["local", "ray"]


class LotInputError(InspectionError, ValueError):
    """A lot folder or manifest that cannot be read; the message names the file, line and column."""


class WaferRejected(InspectionError, ValueError):
    """A frame that is not the recipe's product (wafer size, die grid); the wafer is failed-to-grade."""


def read_lot(source: str | Path) -> list[LotItem]:
    """The wafers of a lot: a manifest CSV, a folder holding ``lot.csv``, or a folder of images (wafer id = file
    stem, lot id = folder name, slot = position in name order)."""
    source = Path(source)
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        source = source / MANIFEST_NAME
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise LotInputError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) and no {MANIFEST_NAME}")
        return [LotItem(str(p), p.stem, source.resolve().name, slot) for slot, p in enumerate(images, 1)]
    if not source.is_file():
        raise LotInputError(f"{source}: no such folder or manifest file")
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            raise LotInputError(f"{source}:1: columns {header}; missing {missing}, unknown {unknown}; expected "
                                f"{', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}")
        items, seen = [], set()
        for line, row in enumerate(reader, 2):
            wafer_id = (row.get("wafer_id") or "").strip()
            if not wafer_id or not (row.get("image") or "").strip():
                raise LotInputError(f"{source}:{line}: image and wafer_id must not be empty")
            slot_text = (row.get("slot") or str(line - 1)).strip()
            if not slot_text.isdigit():
                raise LotInputError(f"{source}:{line}: slot {slot_text!r} is not a whole number")
            lot_id = (row.get("lot_id") or source.parent.resolve().name).strip()
            if (lot_id, wafer_id) in seen:
                raise LotInputError(f"{source}:{line}: wafer {wafer_id} of lot {lot_id} is listed twice")
            seen.add((lot_id, wafer_id))
            truth_dies = (row.get("truth_dies") or "").strip()
            items.append(LotItem(str(source.parent / row["image"].strip()), wafer_id, lot_id, int(slot_text),
                                 (row.get("truth_pattern") or "").strip() or None,
                                 str(source.parent / truth_dies) if truth_dies else None))
    if not items:
        raise LotInputError(f"{source}: the manifest lists no wafers")
    return items


def median_die(crops: np.ndarray, *, sample: int = 101) -> np.ndarray:
    """The wafer's own golden die: the pixel-wise median of evenly spaced dies. Defects sit at different places
    in different dies, so the median stays clean even on a wafer where most dies fail."""
    chosen = crops[np.linspace(0, len(crops) - 1, min(sample, len(crops))).round().astype(int)]
    return np.median(chosen, axis=0).astype(np.uint8)


def die_inputs(crops: np.ndarray, golden: np.ndarray) -> np.ndarray:
    """What the die classifier sees, N x h x w x 3 (stored and passed as BGR): the die, the wafer's median die
    and their absolute difference, so it judges a die against its own product and not only by its look."""
    difference = cv2.absdiff(crops, np.broadcast_to(golden, crops.shape))
    return np.stack([crops, np.broadcast_to(golden, crops.shape), difference], axis=-1)


@dataclass(frozen=True)
class DieLayout:
    """A wafer located and turned to canonical (notch down), with its die grid and same-sized die crops."""

    fit: WaferFit
    grid: DieGrid
    dies: list[Die]
    crops: np.ndarray
    """N x h x w uint8: each die inside its streets."""
    golden: np.ndarray
    """h x w uint8: the median die (:func:`median_die`)."""
    crop_origins_xy_px: np.ndarray
    """N x 2: top-left corner of each crop in the canonical (notch-down) frame, subpixel."""


def locate_dies(image: np.ndarray, recipe: LotRecipe, *, timings_ms: dict[str, float] | None = None) -> DieLayout:
    """Find the wafer, turn it notch-down, fit its die grid and cut the dies; raises WaferRejected when the
    wafer's size or die pitch is not the recipe's, AlignmentError / GridError when there is none."""
    timings_ms = {} if timings_ms is None else timings_ms
    layout, pixel_um = recipe.wafer, recipe.pixel_size_um
    started = time.perf_counter()
    fit = find_wafer(image, pixel_size_um=pixel_um)
    diameter_mm = 2 * fit.radius_px * pixel_um / 1000
    if abs(diameter_mm / layout.diameter_mm - 1) > layout.diameter_tolerance:
        raise WaferRejected(f"wafer diameter {diameter_mm:.1f} mm; the recipe's product is {layout.diameter_mm:g} mm "
                            f"(+-{layout.diameter_tolerance:.0%})")
    timings_ms["wafer"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    size = (image.shape[1], image.shape[0])
    centre = (size[0] / 2, size[1] / 2)
    min_pitch_px = 0.5 * min(layout.die_pitch_um) / pixel_um

    def turned(fit: WaferFit) -> tuple[np.ndarray, DieGrid]:
        canonical = cv2.warpAffine(image, fit.to_canonical(size_px=size), size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        return canonical, find_die_grid(canonical, centre_xy_px=centre, radius_px=fit.radius_px,
                                        min_pitch_px=min_pitch_px)

    canonical, grid = turned(fit)
    # The notch sets the turn to a few hundredths of a degree, a pixel at the wafer's rim; the streets set it
    # ten times better, so the dies at the rim line up with the median die too.
    residual_deg = grid_angle_deg(canonical, centre_xy_px=centre, radius_px=fit.radius_px, grid=grid,
                                  min_pitch_px=min_pitch_px)
    fit = replace(fit, notch_angle_deg=(fit.notch_angle_deg - residual_deg) % 360.0)
    canonical, grid = turned(fit)
    timings_ms["canonical"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    found_um = (grid.pitch_xy_px[0] * pixel_um, grid.pitch_xy_px[1] * pixel_um)
    if any(abs(f / e - 1) > layout.pitch_tolerance for f, e in zip(found_um, layout.die_pitch_um, strict=True)):
        raise WaferRejected(f"die pitch {found_um[0]:.0f} x {found_um[1]:.0f} um does not match the recipe's "
                            f"die_pitch_um {layout.die_pitch_um[0]:g} x {layout.die_pitch_um[1]:g} "
                            f"(+-{layout.pitch_tolerance:.0%})")
    dies = die_crops(grid, centre_xy_px=centre, radius_px=fit.radius_px,
                     edge_exclusion_px=layout.edge_exclusion_mm * 1000 / pixel_um, pixel_size_um=pixel_um)
    if not dies:
        raise WaferRejected("no whole die inside the wafer's usable area")
    timings_ms["grid"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    inset_px = layout.street_um / pixel_um / 2
    width, height = int(grid.pitch_xy_px[0] - 2 * inset_px), int(grid.pitch_xy_px[1] - 2 * inset_px)
    origins = inset_px + cell_origins_xy_px(grid, centre_xy_px=centre, rows=np.array([d.row for d in dies]),
                                            columns=np.array([d.column for d in dies]))
    # Cut every die at its subpixel grid position (a few remaps of stacked dies), so each lines up with the
    # median die to a small fraction of a pixel and the difference shows defects, not pattern edges.
    xs = np.broadcast_to((origins[:, 0, None, None] + np.arange(width)[None, None, :]).astype(np.float32),
                         (len(origins), height, width))
    ys = np.broadcast_to((origins[:, 1, None, None] + np.arange(height)[None, :, None]).astype(np.float32),
                         (len(origins), height, width))
    per_call = max(1, 30000 // height)  # OpenCV's remap takes maps of fewer than 32,767 rows
    crops = np.concatenate([
        cv2.remap(canonical, xs[i : i + per_call].reshape(-1, width), ys[i : i + per_call].reshape(-1, width),
                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, height, width)
        for i in range(0, len(origins), per_call)])
    golden = median_die(crops)
    timings_ms["crops"] = (time.perf_counter() - started) * 1000
    return DieLayout(fit, grid, dies, crops, golden, origins)


class WaferGrader:
    """The models and settings of a lot recipe, loaded once per process; call it per wafer."""

    def __init__(self, recipe: LotRecipe, *, threads: int = 0) -> None:
        self.recipe = recipe
        self.die_model = Classifier(recipe.models.die, settings=SessionSettings(intra_op_threads=threads))
        if self.die_model.card.good_index is None:
            raise InspectionError(f"{recipe.models.die}: the die model's card names no good class")
        self.map_model: WaferMapModel = load_wafermap_model(recipe.models.wafer_map, threads=threads)
        self.flatfield: FlatField | None = (None if recipe.preprocess.flatfield is None
                                            else load_flatfield(recipe.preprocess.flatfield))

    def __call__(self, item: LotItem) -> GradedWafer:
        timings: dict[str, float] = {}
        try:
            return self._grade(item, timings)
        except InspectionError as exc:
            return GradedWafer(item, "failed", str(exc), Verdict.ERROR, timings)

    def _grade(self, item: LotItem, timings: dict[str, float]) -> GradedWafer:
        recipe, card = self.recipe, self.die_model.card
        started = time.perf_counter()
        pixels, layout, bit_depth = read_image(item.image_path)
        image = preprocess(pixels, layout=layout, bit_depth=bit_depth, settings=recipe.preprocess,
                           flatfield=self.flatfield)
        timings["read"] = (time.perf_counter() - started) * 1000
        located = locate_dies(image, recipe, timings_ms=timings)
        started = time.perf_counter()
        scores_parts, probabilities_parts = [], []
        batch = recipe.models.batch_size
        inputs = die_inputs(located.crops, located.golden)
        for start in range(0, len(inputs), batch):
            chunk = [(die, "bgr", 8) for die in inputs[start : start + batch]]
            probabilities = self.die_model.predict(prepare_batch(chunk, card=card))
            probabilities_parts.append(probabilities)
            scores_parts.append(self.die_model.defect_scores(probabilities))
        probabilities, scores = np.concatenate(probabilities_parts), np.concatenate(scores_parts)
        threshold = recipe.models.die_defect_score or card.thresholds.defect_score
        defective = scores >= threshold
        good_index = card.good_index
        assert good_index is not None  # checked when the model was loaded
        without_good = probabilities.copy()
        without_good[:, good_index] = -1.0
        classes = np.where(defective, np.argmax(without_good, axis=1), good_index)
        timings["classify"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        boxes_um = _defect_boxes_um(located.crops, located.golden, defective, pixel_size_um=recipe.pixel_size_um)
        timings["localise"] = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        rows = np.array([d.row for d in located.dies], np.int32)
        cols = np.array([d.column for d in located.dies], np.int32)
        die_map = die_map_of(rows, cols, defective)
        (classified,) = classify_maps(self.map_model, [die_map])
        timings["pattern"] = (time.perf_counter() - started) * 1000
        die_area_cm2 = recipe.wafer.die_pitch_um[0] * recipe.wafer.die_pitch_um[1] * 1e-8
        density = float(defective.sum() / (len(rows) * die_area_cm2))
        yield_value = float(1.0 - defective.mean())
        verdict, reason = wafer_verdict(yield_fraction=yield_value, defect_density_per_cm2=density,
                                        pattern=classified["pattern"], pattern_confidence=classified["confidence"],
                                        rules=recipe.rules)
        centres_mm = np.array([d.centre_mm for d in located.dies], np.float64)
        dies = {
            "row": rows, "col": cols, "x_mm": centres_mm[:, 0], "y_mm": centres_mm[:, 1],
            "class_index": classes.astype(np.int32), "defect_score": scores.astype(np.float64),
            "defective": defective, **boxes_um, "truth_class": _truth_classes(item, rows, cols, card.class_names),
        }
        worst = [i for i in np.argsort(-scores)[:THUMBNAILS_PER_WAFER] if defective[i]]
        thumbnails = [(int(rows[i]), int(cols[i]), card.class_names[classes[i]], float(scores[i]),
                       cv2.imencode(".png", located.crops[i])[1].tobytes()) for i in worst]
        fit = located.fit
        geometry = {
            "centre_xy_px": [round(v, 3) for v in fit.centre_xy_px], "diameter_mm": round(2 * (fit.radius_mm or 0), 3),
            "notch_angle_deg": round(fit.notch_angle_deg, 3), "notch_kind": fit.notch_kind,
            "edge_rms_px": round(fit.edge_rms_px, 3),
            "die_pitch_um": [round(p * recipe.pixel_size_um, 2) for p in located.grid.pitch_xy_px],
            "die_size_um": [round(located.crops.shape[2] * recipe.pixel_size_um, 1),
                            round(located.crops.shape[1] * recipe.pixel_size_um, 1)],
            "dies": len(rows), "image_size_px": [image.shape[1], image.shape[0]],
        }
        return GradedWafer(item, "graded", reason, verdict, timings, classified["pattern"],
                           float(classified["confidence"]), classified["root_cause"], yield_value, density, die_map,
                           (int(rows.min()), int(cols.min())), geometry, dies, tuple(card.class_names), thumbnails)


def _defect_boxes_um(crops: np.ndarray, golden: np.ndarray, defective: np.ndarray, *,
                     pixel_size_um: float) -> dict[str, np.ndarray]:
    """Where the defect lies in each failed die: the largest region that differs from the wafer's median die,
    as KLARF wants it: position from the die's lower-left corner and size, in micrometres. A failed die with
    no such region reports its whole area."""
    n, height, width = crops.shape
    columns = {name: np.zeros(n) for name in ("x_rel_um", "y_rel_um", "x_size_um", "y_size_um", "area_um2")}
    reference = golden.astype(np.float32)
    for i in np.flatnonzero(defective):
        difference = cv2.GaussianBlur(np.abs(crops[i].astype(np.float32) - reference), (3, 3), 0)
        mask = (difference > LOCALISE_TOLERANCE_GREY).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count > 1:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x, y, w, h, area = (int(v) for v in stats[largest])
        else:
            x, y, w, h, area = 0, 0, width, height, width * height
        columns["x_rel_um"][i] = (x + w / 2) * pixel_size_um
        columns["y_rel_um"][i] = (height - (y + h / 2)) * pixel_size_um
        columns["x_size_um"][i], columns["y_size_um"][i] = w * pixel_size_um, h * pixel_size_um
        columns["area_um2"][i] = area * pixel_size_um**2
    return columns


def _truth_classes(item: LotItem, rows: np.ndarray, cols: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Truth class per graded die (index into the model's classes; -1 where the truth has no such die)."""
    truth = np.full(len(rows), -1, np.int32)
    if item.truth_dies is None:
        return truth
    try:
        lookup = read_truth(item.truth_dies).class_by_cell()
    except ValueError as exc:
        raise InspectionError(str(exc)) from None
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        name = lookup.get((int(r), int(c)))
        if name is not None:
            truth[i] = class_names.index(name) if name in class_names else -1
    return truth


# --- running a lot: a local process pool or Ray, the driver committing each wafer as it arrives -------------

_WORKER: WaferGrader | None = None


def _init_worker(recipe: LotRecipe, threads: int) -> None:
    global _WORKER
    _WORKER = WaferGrader(recipe, threads=threads)


def _grade_in_worker(item: LotItem) -> GradedWafer:
    assert _WORKER is not None, "worker not initialised"
    return _safe_grade(_WORKER, item)


def _safe_grade(grader: WaferGrader, item: LotItem) -> GradedWafer:
    """One wafer, never raising: a bug in a stage fails that wafer (with the error) and the lot goes on."""
    try:
        return grader(item)
    except Exception as exc:  # the lot must go on; the reason is stored and reported
        return GradedWafer(item, "failed", f"internal error: {type(exc).__name__}: {exc}", Verdict.ERROR, {})


def _grade_remote(recipe: LotRecipe, threads: int, item: LotItem) -> GradedWafer:
    """Ray task body: each Ray worker process loads the models once and keeps them."""
    global _WORKER
    if _WORKER is None or _WORKER.recipe != recipe:
        _WORKER = WaferGrader(recipe, threads=threads)
    return _safe_grade(_WORKER, item)


def grade_items(items: Sequence[LotItem], recipe: LotRecipe, *, workers: int = 1, engine: Engine = "local",
                ray_address: str | None = None) -> Iterator[GradedWafer]:
    """Grade ``items``, yielding each wafer as soon as it is done (in completion order)."""
    if not items:
        return
    threads = 0 if workers == 1 else 1
    if engine == "ray":
        yield from _grade_on_ray(items, recipe, workers=workers, threads=threads, address=ray_address)
    elif workers == 1:
        grader = WaferGrader(recipe)
        for item in items:
            yield _safe_grade(grader, item)
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(recipe, threads)) as pool:
            pending: set[Future[GradedWafer]] = set()
            queue = iter(items)
            for item in queue:  # keep two wafers per worker in flight: bounded memory, busy workers
                pending.add(pool.submit(_grade_in_worker, item))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    following = next(queue, None)
                    if following is not None:
                        pending.add(pool.submit(_grade_in_worker, following))


def _grade_on_ray(items: Sequence[LotItem], recipe: LotRecipe, *, workers: int, threads: int,
                  address: str | None) -> Iterator[GradedWafer]:
    try:
        import ray
    except ImportError:
        raise InspectionError("--engine ray needs Ray: pip install 'wafer-inspect[cluster]'") from None
    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_grade_remote)
        recipe_ref = ray.put(recipe)
        pending = [task.remote(recipe_ref, threads, item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for reference in done:
                yield ray.get(reference)
    finally:
        if started_here:
            ray.shutdown()



@dataclass(frozen=True)
class LotRun:
    run_id: int
    graded_now: int
    skipped: int
    """Wafers already in the database from an earlier (perhaps interrupted) run."""
    elapsed_s: float


def run_lot(items: Sequence[LotItem], recipe: LotRecipe, *, db_path: str | Path, workers: int = 1,
            engine: Engine = "local", ray_address: str | None = None, software_version: str = "",
            on_wafer: Callable[[GradedWafer], None] | None = None) -> LotRun:
    """Grade the wafers of ``items`` not yet in the database, committing each as it finishes (so an interrupted
    run resumes where it stopped), with a progress bar."""
    store = LotStore(db_path)
    try:
        finished = store.finished()
        todo = [item for item in items if (item.lot_id, item.wafer_id) not in finished]
        run_id = store.start_run(recipe_name=recipe.name, recipe_sha256=recipe.sha256(), engine=engine,
                                 workers=workers, software_version=software_version)
        started = time.perf_counter()
        status = "interrupted"
        try:
            graded = grade_items(todo, recipe, workers=workers, engine=engine, ray_address=ray_address)
            for wafer in progress(graded, total=len(todo), label="wafers"):
                store.add_wafer(run_id, wafer)
                if on_wafer is not None:
                    on_wafer(wafer)
            status = "finished"
        finally:
            store.finish_run(run_id, status=status)
        return LotRun(run_id, len(todo), len(items) - len(todo), time.perf_counter() - started)
    finally:
        store.close()
