"""Throughput without unbounded latency or memory: a micro-batcher for streams, and a decode/infer pipeline
for files.

Both hold bounded queues: a producer that outruns inference waits (backpressure) instead of piling up.
OpenCV decoding and ONNX Runtime release the GIL, so decoding threads overlap inference on other cores.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from inspection.acquire import ImageReadError, read_image
from inspection.types import Layout

_STOP = object()


@dataclass(frozen=True)
class Batched:
    """One item's output and the batch it rode in."""

    output: np.ndarray
    batch_size: int
    queued_ms: float
    """From ``submit`` to the start of its batch's compute: the wait in the batcher."""
    compute_ms: float
    """The batch's ``predict`` call."""


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class MicroBatcher:
    """Gathers single prepared inputs (C x H x W) into batches for ``predict``.

    A batch is run when it holds ``max_batch`` items or ``max_wait_ms`` after its first item arrived,
    whichever comes first, so a camera stream gets batched throughput while no item waits longer than
    ``max_wait_ms`` plus one batch's compute. ``submit`` blocks while ``max_pending`` items are queued.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, max_batch: int, max_wait_ms: float,
                 max_pending: int | None = None) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.stats = BatcherStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending or 4 * max_batch)
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: np.ndarray) -> Future[Batched]:
        """Queue one prepared input; the future resolves to its output row and the batch it rode in."""
        future: Future[Batched] = Future()
        self._queue.put((item, future, time.perf_counter()))
        return future

    def run(self, items: np.ndarray) -> list[Batched]:
        """Submit every row of ``items`` (N x ...) and wait for all: one frame's candidates, batched with whatever
        other callers submit meanwhile."""
        futures = [self.submit(item) for item in items]
        return [future.result() for future in futures]

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(items) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    following = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is _STOP:
                    stopping = True
                    break
                items.append(following)
            inputs, futures, submitted = zip(*items, strict=True)  # type: ignore[call-overload]
            started = time.perf_counter()
            try:
                outputs = self.predict(np.stack(inputs))
            except Exception as exc:  # every waiting caller gets the failure, none hangs
                for future in futures:
                    future.set_exception(exc)
            else:
                compute_ms = (time.perf_counter() - started) * 1000.0
                for future, output, at in zip(futures, outputs, submitted, strict=True):
                    future.set_result(Batched(output, len(items), (started - at) * 1000.0, compute_ms))
            self.stats.batches += 1
            self.stats.items += len(items)
            self.stats.largest_batch = max(self.stats.largest_batch, len(items))
            self.stats.batch_sizes.append(len(items))

    def close(self) -> None:
        """Finish what was submitted, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class PreparedChunk:
    paths: tuple[Path, ...]
    """The readable images of the chunk, in order."""
    batch: np.ndarray | None
    """Their NCHW model input (None if none was readable)."""
    skipped: tuple[str, ...]


class Model(Protocol):
    """A classifier that owns its preprocessing (:class:`~inspection.classify.Classifier`)."""

    def prepare(self, images: Sequence[tuple[np.ndarray, Layout, int]]) -> np.ndarray: ...

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def prepare_files(paths: Sequence[Path], *, model: Model) -> PreparedChunk:
    """Decode and prepare files as the model takes them; unreadable ones are skipped with their reason."""
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageReadError as exc:
            skipped.append(str(exc))
            continue
        kept.append(path)
    return PreparedChunk(tuple(kept), model.prepare(images) if images else None, tuple(skipped))


def predict_files(model: Model, paths: Sequence[Path], *, batch_size: int = 64, decode_workers: int = 2,
                  prefetch_batches: int = 2) -> Iterator[tuple[PreparedChunk, np.ndarray | None]]:
    """Classify image files in batches, decoding the next batches while the current one runs.

    At most ``prefetch_batches`` decoded batches wait for inference at any time.

    Parameters
    ----------
    model : Model
        Prepares the images (colour, size, resize, normalisation) and returns (N, classes) probabilities.
    paths : sequence of Path
        Image files, any size, 8 or 16 bit.
    batch_size : int, optional
        Images per batch.
    decode_workers : int, optional
        Threads that read and prepare images.
    prefetch_batches : int, optional
        Prepared batches allowed to wait.

    Yields
    ------
    chunk : PreparedChunk
        The batch's paths and the ones that could not be read (with the reason).
    outputs : (N, classes) ndarray or None
        Probabilities for the readable images of the chunk, in order; None when none was readable.
    """
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[PreparedChunk]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(prepare_files, chunk, model=model))
            if len(pending) > prefetch_batches:
                prepared = pending.popleft().result()
                yield prepared, None if prepared.batch is None else model.predict(prepared.batch)
        while pending:
            prepared = pending.popleft().result()
            yield prepared, None if prepared.batch is None else model.predict(prepared.batch)
