"""The line loop (wiring): camera frames through the recipe's chain into the results store.

A bounded pipeline of threads: acquisition -> queue -> inspection workers -> queue -> writer. Both queues are
bounded, so a slow stage makes acquisition wait (backpressure) instead of memory growing; OpenCV and ONNX
Runtime release the GIL, so workers run in parallel, and the chain's one micro-batcher gathers the candidates
of the frames the workers hold into shared batches. Only the writer (the calling thread) touches the
database, and a frame counts only once its result is committed. Setting ``stop`` drains the frames in flight.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from inspection.acquire import Camera, CameraError, SkippedInput, stream_frames
from inspection.chain.chain import Failed, InspectedPart, PartChain
from inspection.chain.hooks import HookDispatcher, LineEvent
from inspection.report import ResultStore, StoreError, draw_detections, save_png
from inspection.types import Frame, Verdict

log = logging.getLogger("inspection.line")


def teach_reference(camera: Camera, *, frames: int, timeout_s: float) -> Frame:
    """A golden reference taught from an opened camera: the per-pixel median of ``frames`` good parts.

    The median removes sensor noise and anything that is not in most of the frames (a passing particle).

    Parameters
    ----------
    camera : Camera
        Opened; the caller closes it.
    frames : int
        Good parts to take the median of.
    timeout_s : float
        The longest wait for a frame, in seconds.

    Returns
    -------
    Frame
        The golden, in the camera's dtype and layout.
    """
    taught = list(stream_frames(camera, timeout_s=timeout_s, stop=threading.Event(), max_frames=frames,
                                give_up_after_s=timeout_s))
    if len(taught) < frames:
        raise CameraError(f"{camera.uri}: delivered {len(taught)} of the {frames} frames needed to teach a reference")
    first = taught[0]
    for frame in taught[1:]:
        if (frame.image.shape, frame.layout, frame.bit_depth) != (first.image.shape, first.layout, first.bit_depth):
            raise CameraError(f"{camera.uri}: frames changed format while teaching: {first.image.shape} "
                             f"{first.layout} {first.bit_depth}-bit, then {frame.image.shape} {frame.layout} "
                             f"{frame.bit_depth}-bit")
    median = np.median(np.stack([f.image for f in taught]), axis=0)
    image = np.rint(median).astype(first.image.dtype)
    return Frame(image, first.layout, first.bit_depth, first.source_id, first.frame_counter, first.timestamp_s)


@dataclass
class StationCheck:
    """What a recipe's chain made of a few frames of a new camera (``inspect teach --recipe``)."""

    frames: int = 0
    size_px: tuple[int, int] | None = None
    """Width and height of the frames."""
    alignment_scores: list[float] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    """Candidates per registered frame."""
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Frames that ended in error, by reason."""


def check_station(chain: PartChain, frames: list[Frame]) -> StationCheck:
    """``frames`` through ``chain``, nothing stored: what ``inspect teach --recipe`` reports.

    Parameters
    ----------
    chain : PartChain
    frames : list of Frame

    Returns
    -------
    StationCheck
        The frame size, each registration's score, candidates per frame, verdicts, and the errors by reason.
    """
    check = StationCheck()
    for frame in frames:
        if check.size_px is None:
            check.size_px = (frame.width_px, frame.height_px)
        check.frames += 1
        part = chain(frame)
        check.verdicts[str(part.verdict)] += 1
        if isinstance(part, Failed):
            check.errors[str(part.error) if part.error is not None else part.reason] += 1
            continue
        if part.aligned is not None:
            check.alignment_scores.append(part.aligned.fit.score)
        check.candidates.append(len(part.regions))
    return check


@dataclass
class LineStats:
    """What the line loop has committed so far; read by the status line."""

    latency_budget_ms: float
    started_s: float = field(default_factory=time.monotonic)
    committed: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    late: int = 0
    skipped: list[SkippedInput] = field(default_factory=list)
    pictures_not_saved: int = 0
    max_queue_depth: int = 0
    recent_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    recent_commit_s: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def record(self, verdict: Verdict, latency_ms: float) -> None:
        self.committed += 1
        self.verdicts[str(verdict)] += 1
        self.late += latency_ms > self.latency_budget_ms
        self.recent_latency_ms.append(latency_ms)
        self.recent_commit_s.append(time.monotonic())

    def fps(self, *, window_s: float = 2.0) -> float:
        now = time.monotonic()
        recent = [t for t in self.recent_commit_s if now - t <= window_s]
        span = min(window_s, now - self.started_s)
        return len(recent) / span if span > 0 else 0.0

    def latency_percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.recent_latency_ms, q)) if self.recent_latency_ms else 0.0

    def status_line(self) -> str:
        v = self.verdicts
        return (f"{self.committed} frames | {self.fps():.1f} fps | latency p50 {self.latency_percentile_ms(50):.0f} ms"
                f" p99 {self.latency_percentile_ms(99):.0f} ms | pass {v['pass']} fail {v['fail']}"
                f" review {v['review']} error {v['error']} | late {self.late} (over {self.latency_budget_ms:g} ms)"
                f" | skipped {len(self.skipped)}")


_DONE = object()


def _commit(item: SkippedInput | InspectedPart | Failed, store: ResultStore, stats: LineStats, *, run_id: int,
            save_ng_dir: Path | None, chain: PartChain) -> LineEvent:
    """Store one item of the results queue: a skipped input as an event, a part as its result. A part that did
    not pass gets its picture and the crops its detections were classified on (for review); a picture that
    cannot be saved is logged and never costs the part its result. Returns the event to tell the hooks."""
    if isinstance(item, SkippedInput):
        stats.skipped.append(item)
        store.add_event(run_id, kind="skipped", source=item.path, detail=item.reason)
        return LineEvent("skipped", run_id, skipped=item)
    result = item.result()
    image_path, crop_paths = None, None
    if save_ng_dir is not None and item.image is not None and result.verdict != Verdict.PASS:
        stem = f"run{run_id:04d}_{result.frame_counter:07d}"
        picture = draw_detections(item.image, result.detections, verdict=result.verdict,
                                  title=f"{result.source_id} #{result.frame_counter}", reason=result.reason)
        try:
            image_path = str(save_png(save_ng_dir / f"{stem}_{result.verdict}.png", picture))
            crops = None if isinstance(item, Failed) else chain.detection_crops(item)
            if crops is not None:
                crop_paths = [str(save_png(save_ng_dir / "crops" / f"{stem}_{index:02d}.png", crop))
                              for index, crop in enumerate(crops)]
        except OSError as exc:
            stats.pictures_not_saved += 1
            if stats.pictures_not_saved == 1:  # once per run: a read-only or full folder fails every picture
                log.warning("cannot save pictures in %s (%s); results are stored without them", save_ng_dir,
                            exc.strerror or exc)
                store.add_event(run_id, kind="picture-not-saved", source=str(save_ng_dir / stem),
                                detail=str(exc.strerror or exc))
    row_id = store.add_result(run_id, result, image_path=image_path, crop_paths=crop_paths)
    latency_ms = (time.time() - result.acquired_at_s) * 1000.0
    stats.record(result.verdict, latency_ms)
    return LineEvent("result", run_id, result=result, row_id=row_id, latency_ms=latency_ms)


def run_line(camera: Camera, chain: PartChain, store: ResultStore, *, run_id: int, stop: threading.Event,
             max_frames: int | None = None, save_ng_dir: Path | None = None,
             on_status: Callable[[LineStats], None] | None = None, status_interval_s: float = 0.5,
             hooks: HookDispatcher | None = None) -> LineStats:
    """Acquire, inspect and commit until ``max_frames``, the source's end, or ``stop``; then drain and return.

    Parameters
    ----------
    camera : Camera
        Opened (so a wrong camera fails before anything is stored); closed here.
    chain : PartChain
    store : ResultStore
    run_id : int
        The run the results are stored under.
    stop : threading.Event
        Set to stop acquiring; the frames in flight are still inspected and committed.
    max_frames : int, optional
    save_ng_dir : Path, optional
        Where parts that did not pass get their picture and their detections' crops.
    on_status : callable, optional
        Called with the line's figures every ``status_interval_s``.
    status_interval_s : float, optional
    hooks : HookDispatcher, optional
        Told of every committed result, skipped input and camera reconnect (they never make the line wait).

    Returns
    -------
    LineStats
        What was committed.

    Raises
    ------
    RecipeError
        When the first frame does not fit the recipe's region of interest or golden (nothing is committed then).
    StoreError
        When the database stops taking results (the line stops acquiring and drains first; what was committed
        stays).
    """
    settings = chain.recipe.pipeline
    publish = hooks.publish if hooks is not None else (lambda event: None)
    pipeline = _Pipeline(camera, chain, stop, max_frames=max_frames, run_id=run_id, publish=publish,
                         stats=LineStats(latency_budget_ms=settings.latency_budget_ms))
    threads = pipeline.start()
    committer = _Committer(pipeline, store, save_ng_dir=None if save_ng_dir is None else save_ng_dir.resolve())
    committer.commit_until_drained(on_status=on_status, status_interval_s=status_interval_s)
    for thread in threads:
        thread.join()
    if committer.store_failure is not None:
        raise StoreError(f"{committer.store_failure}; the line stopped after {pipeline.stats.committed} committed "
                         f"result(s), {committer.not_stored} part(s) in flight not stored")
    if pipeline.failure:
        raise pipeline.failure[0]
    return pipeline.stats


class _Pipeline:
    """The line's threads: one acquires frames into a bounded queue (blocking while the workers are behind:
    backpressure), ``workers`` run the chain on them into a bounded results queue."""

    def __init__(self, camera: Camera, chain: PartChain, stop: threading.Event, *, max_frames: int | None,
                 run_id: int, publish: Callable[[LineEvent], None], stats: LineStats) -> None:
        self.camera, self.chain, self.stop, self.max_frames = camera, chain, stop, max_frames
        self.run_id, self.publish, self.stats = run_id, publish, stats
        self.settings = chain.recipe.pipeline
        self.frames: queue.Queue[Frame | object] = queue.Queue(maxsize=self.settings.queue_depth)
        self.results: queue.Queue[InspectedPart | Failed | SkippedInput | object] = queue.Queue(
            maxsize=self.settings.queue_depth)
        self.failure: list[BaseException] = []

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._acquire, name="acquire", daemon=True)]
        threads += [threading.Thread(target=self._work, name=f"inspect-{i}", daemon=True)
                    for i in range(self.settings.workers)]
        for thread in threads:
            thread.start()
        return threads

    def _acquire(self) -> None:
        try:
            frames = stream_frames(self.camera, timeout_s=self.settings.fetch_timeout_s, stop=self.stop,
                                   max_frames=self.max_frames, on_skipped=self.results.put,
                                   on_reconnect=lambda: self.publish(LineEvent("reconnect", self.run_id)))
            for index, frame in enumerate(frames):
                if index == 0:
                    self.chain.check_frame_size(frame, camera=self.camera.uri)
                self.frames.put(frame)  # blocks while the workers are behind: backpressure
                self.stats.max_queue_depth = max(self.stats.max_queue_depth, self.frames.qsize())
        except BaseException as exc:
            self.failure.append(exc)
        finally:
            self.camera.close()
            for _ in range(self.settings.workers):
                self.frames.put(_DONE)

    def _work(self) -> None:
        while isinstance(frame := self.frames.get(), Frame):
            self.results.put(self.chain(frame))
        self.results.put(_DONE)


class _Committer:
    """Commits each result as it arrives, one transaction per part, until every worker is done."""

    def __init__(self, pipeline: _Pipeline, store: ResultStore, *, save_ng_dir: Path | None) -> None:
        self.pipeline, self.store, self.save_ng_dir = pipeline, store, save_ng_dir
        self.store_failure: StoreError | None = None
        self.not_stored = 0

    def commit_until_drained(self, *, on_status: Callable[[LineStats], None] | None,
                             status_interval_s: float) -> None:
        pipeline = self.pipeline
        workers_done, next_status = 0, time.monotonic() + status_interval_s
        while workers_done < pipeline.settings.workers:
            try:
                item = pipeline.results.get(timeout=status_interval_s)
            except queue.Empty:
                item = None
            if item is _DONE:
                workers_done += 1
            elif isinstance(item, InspectedPart | Failed | SkippedInput):
                self._take(item)
            if on_status is not None and time.monotonic() >= next_status:
                on_status(pipeline.stats)
                next_status = time.monotonic() + status_interval_s

    def _take(self, item: InspectedPart | Failed | SkippedInput) -> None:
        pipeline = self.pipeline
        if self.store_failure is not None:  # draining after the database failed
            self.not_stored += not isinstance(item, SkippedInput)
            return
        try:
            event = _commit(item, self.store, pipeline.stats, run_id=pipeline.run_id, save_ng_dir=self.save_ng_dir,
                            chain=pipeline.chain)
            pipeline.publish(replace(event, frames_waiting=pipeline.frames.qsize()))
        except StoreError as exc:
            # The database takes no more (a full disk, a read-only file): stop acquiring, let the frames in
            # flight finish, and end the run with the reason; every earlier commit stays in the file.
            self.store_failure, self.not_stored = exc, 1
            pipeline.stop.set()
