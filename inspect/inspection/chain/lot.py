"""Lot grading (wiring only): wafer images through the recipe's chain, on a process pool or Ray, into the lot store.

Per wafer the ``wafer-lot`` chain reads nothing itself: the runner reads the image (acquire), the chain finds
the wafer and its dies, classifies every die through its micro-batcher, localises the defects, classifies the
die map's pattern and grades the wafer. Each worker process builds the chain once from the recipe, so the
local process pool and Ray run exactly the same code; only the driver writes results, one transaction per
wafer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from inspection.acquire import ImageReadError, read_image
from inspection.acquire.base import STOP_POLL_S
from inspection.acquire.lot import read_truth
from inspection.chain.chain import Failed, InspectedWafer, WaferChain, build_wafer_chain
from inspection.measure.dies import die_inputs
from inspection.recipe import Recipe
from inspection.report.lots import LotStore
from inspection.report.store import StoreError
from inspection.types import (
    DiePicture,
    DieTable,
    Frame,
    GradedWafer,
    InspectionError,
    LotItem,
    Verdict,
    WaferGeometry,
    WaferReport,
)
from inspection.workers import die_with_parent

THUMBNAILS_PER_WAFER = 4
REVIEW_DIES_PER_WAFER = 32
"""The worst defective dies of a wafer whose classifier inputs are kept for review (``inspect serve``)."""
Engine = Literal["local", "ray"]


def grade_wafer(chain: WaferChain, item: LotItem) -> GradedWafer:
    """One wafer through the chain.

    Parameters
    ----------
    chain : WaferChain
    item : LotItem
        The wafer's image, ids and truth.

    Returns
    -------
    GradedWafer
        With its report; a wafer that cannot be read or graded has none, and the reason.
    """
    started = time.perf_counter()
    try:
        pixels, layout, bit_depth = read_image(item.image_path)
    except ImageReadError as exc:
        return GradedWafer(item, str(exc), Verdict.ERROR, {})
    read_ms = (time.perf_counter() - started) * 1000
    inspected = chain(Frame(pixels, layout, bit_depth, item.lot_id, item.slot, time.time(), path=item.image_path))
    timings = {"read": read_ms, **inspected.latency_ms}
    if isinstance(inspected, Failed):
        reason = str(inspected.error) if inspected.error is not None else f"internal error in {inspected.reason}"
        return GradedWafer(item, reason, Verdict.ERROR, timings)
    try:
        report = _report(chain, item, inspected)
    except InspectionError as exc:  # an unreadable truth file fails the wafer, with the file named
        return GradedWafer(item, str(exc), Verdict.ERROR, timings)
    return GradedWafer(item, inspected.grade.reason, inspected.verdict, timings, report)


def _report(chain: WaferChain, item: LotItem, wafer: InspectedWafer) -> WaferReport:
    """The store's record of a graded wafer."""
    located, judged, boxes = wafer.dies, wafer.judged, wafer.defect_boxes
    class_names = tuple(chain.stages.classify.classifier.class_names)
    rows = np.array([d.row for d in located.dies], np.int32)
    cols = np.array([d.column for d in located.dies], np.int32)
    centres_mm = np.array([d.centre_mm for d in located.dies], np.float64).reshape(-1, 2)
    scores, defective, classes = judged.defect_scores, judged.defective, judged.classes
    dies = DieTable(rows, cols, centres_mm[:, 0], centres_mm[:, 1], classes.astype(np.int32),
                    scores.astype(np.float64), defective, boxes.x_rel_um, boxes.y_rel_um, boxes.x_size_um,
                    boxes.y_size_um, boxes.area_um2, _truth_classes(item, rows, cols, class_names))
    worst = [i for i in np.argsort(-scores)[:REVIEW_DIES_PER_WAFER] if defective[i]]
    thumbnails = tuple(DiePicture(int(rows[i]), int(cols[i]), class_names[classes[i]], float(scores[i]),
                                  cv2.imencode(".png", located.crops[i])[1].tobytes())
                       for i in worst[:THUMBNAILS_PER_WAFER])
    inputs: Sequence[np.ndarray] | np.ndarray = die_inputs(located.crops[worst], located.golden) if worst else []
    review_dies = tuple(DiePicture(int(rows[i]), int(cols[i]), class_names[classes[i]], float(scores[i]),
                                   cv2.imencode(".png", picture)[1].tobytes())
                        for i, picture in zip(worst, inputs, strict=True))
    fit, pixel_um = located.fit, chain.recipe.pixel_size_um
    pitch_x_px, pitch_y_px = located.grid.pitch_xy_px
    geometry = WaferGeometry(
        centre_xy_px=fit.centre_xy_px, diameter_mm=2 * (fit.radius_mm or 0), notch_angle_deg=fit.notch_angle_deg,
        notch_kind=fit.notch_kind, edge_rms_px=fit.edge_rms_px, die_pitch_um=(pitch_x_px * pixel_um,
                                                                               pitch_y_px * pixel_um),
        die_size_um=(located.crops.shape[2] * pixel_um, located.crops.shape[1] * pixel_um), dies=len(rows),
        image_size_px=(wafer.frame.width_px, wafer.frame.height_px))
    return WaferReport(wafer.pattern, wafer.grade.yield_fraction, wafer.grade.defect_density_per_cm2, wafer.die_map,
                       (int(rows.min()), int(cols.min())), geometry, dies, class_names, thumbnails, review_dies)


def _truth_classes(item: LotItem, rows: np.ndarray, cols: np.ndarray, class_names: tuple[str, ...]
                   ) -> np.ndarray:
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

_WORKER: WaferChain | None = None


def _init_worker(recipe: Recipe, threads: int, parent_pid: int) -> None:
    global _WORKER
    die_with_parent(parent_pid)
    _WORKER = build_wafer_chain(recipe, threads=threads)


def _grade_in_worker(item: LotItem) -> GradedWafer:
    if _WORKER is None:
        raise RuntimeError("lot worker not initialised")
    return _safe_grade(_WORKER, item)


def _safe_grade(chain: WaferChain, item: LotItem) -> GradedWafer:
    """One wafer, never raising: a bug in a stage fails that wafer (with the error) and the lot goes on."""
    try:
        return grade_wafer(chain, item)
    except Exception as exc:  # the lot must go on; the reason is stored and reported
        return GradedWafer(item, f"internal error: {type(exc).__name__}: {exc}", Verdict.ERROR, {})


def _grade_remote(recipe: Recipe, threads: int, item: LotItem) -> GradedWafer:
    """Ray task body: each Ray worker process builds the chain once and keeps it."""
    global _WORKER
    if _WORKER is None or _WORKER.recipe != recipe:
        _WORKER = build_wafer_chain(recipe, threads=threads)
    return _safe_grade(_WORKER, item)


def grade_items(items: Sequence[LotItem], recipe: Recipe, *, workers: int = 1, engine: Engine = "local",
                ray_address: str | None = None, stop: threading.Event | None = None) -> Iterator[GradedWafer]:
    """Grade ``items``, yielding each wafer as soon as it is done (in completion order).

    Parameters
    ----------
    items : sequence of LotItem
    recipe : Recipe
        A ``wafer-lot`` recipe; each worker builds its chain once.
    workers : int, optional
        Processes (or Ray tasks in flight).
    engine : {"local", "ray"}, optional
    ray_address : str, optional
        A Ray cluster to join (None: a local one).
    stop : threading.Event, optional
        Once set, the wafers in hand are dropped at once (pool workers ended, Ray tasks cancelled; a re-run
        grades them), the wafers already graded are still yielded, and the generator ends.

    Yields
    ------
    GradedWafer
    """
    if not items:
        return
    stop = stop or threading.Event()
    threads = 0 if workers == 1 else 1
    if engine == "ray":
        yield from _grade_on_ray(items, recipe, workers=workers, threads=threads, address=ray_address, stop=stop)
    elif workers == 1:
        with build_wafer_chain(recipe) as chain:
            for item in items:
                if stop.is_set():
                    return
                yield _safe_grade(chain, item)
    else:
        yield from _grade_on_pool(items, recipe, workers=workers, threads=threads, stop=stop)


def _grade_on_pool(items: Sequence[LotItem], recipe: Recipe, *, workers: int, threads: int,
                   stop: threading.Event) -> Iterator[GradedWafer]:
    pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(recipe, threads, os.getpid()))
    pending: set[Future[GradedWafer]] = set()
    try:
        queue = iter(items)
        for item in queue:  # keep two wafers per worker in flight: bounded memory, busy workers
            pending.add(pool.submit(_grade_in_worker, item))
            if len(pending) >= 2 * workers:
                break
        while pending and not stop.is_set():
            done, pending = wait(pending, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                following = None if stop.is_set() else next(queue, None)
                if following is not None:
                    pending.add(pool.submit(_grade_in_worker, following))
    finally:  # done, stopped or interrupted: wafers not finished are dropped (a re-run grades them)
        if pending:
            _end_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
    # Wafers that finished while the stop was being seen are kept.
    yield from (future.result() for future in pending
                if future.done() and not future.cancelled() and future.exception(timeout=0) is None)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now, mid-wafer: waiting for them would keep a stopped grade busy for tens of
    seconds. (Python 3.14 has ``terminate_workers``; before it, the executor's process table is the way.)"""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _grade_on_ray(items: Sequence[LotItem], recipe: Recipe, *, workers: int, threads: int,
                  address: str | None, stop: threading.Event) -> Iterator[GradedWafer]:
    try:
        import ray
    except ImportError:
        raise InspectionError("--engine ray needs Ray: pip install -e '.[cluster]'") from None
    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    pending = []
    try:
        task = ray.remote(num_cpus=1)(_grade_remote)
        recipe_ref = ray.put(recipe)
        pending = [task.remote(recipe_ref, threads, item) for item in items]
        while pending and not stop.is_set():
            done, pending = ray.wait(pending, num_returns=1, timeout=STOP_POLL_S)
            for reference in done:
                yield ray.get(reference)
    finally:
        for reference in pending:
            ray.cancel(reference, force=True)
        if started_here:
            ray.shutdown()


@dataclass(frozen=True)
class LotRun:
    run_id: int
    graded_now: int
    skipped: int
    """Wafers already in the database from an earlier (perhaps interrupted) run."""
    elapsed_s: float
    stopped: bool = False
    """``stop`` was set: the wafers graded until then are committed, the rest are left for a re-run."""


def run_lot(items: Sequence[LotItem], recipe: Recipe, *, db_path: str | Path, workers: int = 1,
            engine: Engine = "local", ray_address: str | None = None, software_version: str = "",
            on_wafer: Callable[[GradedWafer], None] | None = None, stop: threading.Event | None = None) -> LotRun:
    """Grade the wafers of ``items`` not yet in the database, committing each as it finishes, with a progress bar.

    An interrupted run resumes where it stopped.

    Parameters
    ----------
    items : sequence of LotItem
    recipe : Recipe
    db_path : str or Path
        The lot grading database.
    workers, engine, ray_address
        As for :func:`grade_items`.
    software_version : str, optional
        Stored with the run.
    on_wafer : callable, optional
        Called with each wafer after it is committed.
    stop : threading.Event, optional
        Ends the run soon: wafers graded by then are committed, the run is marked ``interrupted``.

    Returns
    -------
    LotRun
        The run's id, the wafers graded now and skipped, the time taken and whether it was stopped.
    """
    stop = stop or threading.Event()
    store = LotStore(db_path)
    try:
        finished = store.finished()
        todo = [item for item in items if (item.lot_id, item.wafer_id) not in finished]
        run_id = store.start_run(recipe_name=recipe.name, recipe_sha256=recipe.sha256(), engine=engine,
                                 workers=workers, software_version=software_version)
        started = time.perf_counter()
        status, graded_now = "interrupted", 0
        try:
            graded = grade_items(todo, recipe, workers=workers, engine=engine, ray_address=ray_address, stop=stop)
            for wafer in tqdm(graded, total=len(todo), desc="wafers", disable=None):
                store.add_wafer(run_id, wafer)
                graded_now += 1
                if on_wafer is not None:
                    on_wafer(wafer)
            status = "interrupted" if stop.is_set() else "finished"
        finally:
            try:
                store.finish_run(run_id, status=status)
            except StoreError:  # the database that failed the lot may not take its end either
                if status == "finished":
                    raise
        return LotRun(run_id, graded_now, len(items) - len(todo), time.perf_counter() - started, stop.is_set())
    finally:
        store.close()
