from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.classify import Classifier, MicroBatcher, predict_files
from tests.conftest import REPO_ROOT

DIE_MODEL = REPO_ROOT / "models" / "die-patchnet-v1"


def test_micro_batcher_returns_each_item_its_own_output_and_bounds_batches() -> None:
    seen_batches: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen_batches.append(len(batch))
        time.sleep(0.005)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    items = [np.full((1, 2, 2), float(i), np.float32) for i in range(50)]
    with MicroBatcher(predict, max_batch=8, max_wait_ms=20) as batcher:
        futures = [batcher.submit(item) for item in items]
        outputs = [f.result(timeout=10) for f in futures]
    assert [float(o.output[0]) for o in outputs] == [4.0 * i for i in range(50)]
    # Each item says which batch it rode in and how long it waited for it.
    assert all(1 <= o.batch_size <= 8 and o.queued_ms >= 0 and o.compute_ms > 0 for o in outputs)
    assert max(seen_batches) <= 8 and sum(seen_batches) == 50
    assert max(seen_batches) > 1, "a burst must be batched"
    assert batcher.stats.items == 50 and batcher.stats.largest_batch == max(seen_batches)


def test_a_lone_item_is_not_held_beyond_max_wait() -> None:
    with MicroBatcher(lambda b: b, max_batch=64, max_wait_ms=30) as batcher:
        future = batcher.submit(np.zeros(3, np.float32))
        # With no other item coming, the batch of one runs once max_wait has passed: it completes.
        batched = future.result(timeout=5)
        assert batched.output.shape == (3,) and batched.batch_size == 1
    assert batcher.stats.batch_sizes == [1]
    assert batched.queued_ms >= 25  # it waited about max_wait_ms for company


def test_run_batches_one_callers_items_with_anothers() -> None:
    with MicroBatcher(lambda b: b * 2, max_batch=16, max_wait_ms=50) as batcher:
        other = threading.Thread(target=batcher.run, args=(np.ones((3, 2), np.float32),))
        other.start()
        mine = batcher.run(np.zeros((4, 2), np.float32))
        other.join()
    assert [b.output.tolist() for b in mine] == [[0.0, 0.0]] * 4
    assert batcher.stats.batches == 1 and mine[0].batch_size == 7


def test_a_failing_predict_reaches_every_waiting_caller() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("device lost")

    with MicroBatcher(broken, max_batch=4, max_wait_ms=5) as batcher:
        futures = [batcher.submit(np.zeros(1, np.float32)) for _ in range(6)]
        for future in futures:
            with pytest.raises(RuntimeError, match="device lost"):
                future.result(timeout=5)


def test_submit_blocks_when_the_queue_is_full() -> None:
    release = threading.Event()

    def slow(batch: np.ndarray) -> np.ndarray:
        release.wait(5)
        return batch

    batcher = MicroBatcher(slow, max_batch=1, max_wait_ms=0, max_pending=2)
    for _ in range(3):  # one in the worker, two queued
        batcher.submit(np.zeros(1, np.float32))
    blocked = threading.Thread(target=batcher.submit, args=(np.zeros(1, np.float32),))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive(), "a fourth item must wait for room (backpressure), not grow the queue"
    release.set()
    blocked.join(timeout=5)
    batcher.close()


def test_file_pipeline_matches_direct_inference_and_skips_bad_files(tmp_path: Path) -> None:
    from inspection.sim.frames import render_die

    paths = []
    for index in range(10):
        path = tmp_path / f"{index:02d}.png"
        cv2.imwrite(str(path), render_die("particle" if index % 2 else "good", index))
        paths.append(path)
    paths[3].write_bytes(b"broken")
    classifier = Classifier(DIE_MODEL)
    chunks = list(predict_files(classifier, paths, batch_size=4))
    kept = [p for chunk, _ in chunks for p in chunk.paths]
    assert kept == [p for p in paths if p != paths[3]]
    assert [len(c.skipped) for c, _ in chunks] == [1, 0, 0]
    outputs = np.concatenate([o for _, o in chunks])
    direct = classifier.predict(np.concatenate([c.batch for c, _ in chunks]))
    np.testing.assert_allclose(outputs, direct, rtol=1e-5, atol=1e-6)
    predicted = [classifier.class_names[i] for i in outputs.argmax(1)]
    assert predicted == ["good" if int(p.stem) % 2 == 0 else "particle" for p in kept]
