from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from inspection.classify import Classifier, DeviceError, SessionSettings, providers_for
from inspection.classify.timing import machine
from inspection.report.records import save_record
from tests.conftest import REPO_ROOT, run_cli

DIE_MODEL = REPO_ROOT / "models" / "die-patchnet-v1"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_providers_follow_what_is_present() -> None:
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("auto")[-1] == "CPUExecutionProvider"
    if not HAS_CUDA:
        with pytest.raises(DeviceError, match=r"--device cuda: ONNX Runtime here has no CUDAExecutionProvider"):
            providers_for("cuda")


def test_session_settings_do_not_change_the_answer() -> None:
    batch = np.random.default_rng(0).standard_normal((5, 1, 64, 64), dtype=np.float32)
    default = Classifier(DIE_MODEL).predict(batch)
    tuned = Classifier(DIE_MODEL, settings=SessionSettings(intra_op_threads=1, optimisation="basic",
                                                           memory_arena=False)).predict(batch)
    np.testing.assert_allclose(default, tuned, atol=1e-5)


def test_shipped_models_load_and_state_their_compute() -> None:
    for name in ("die-patchnet-v1", "pcb-patchnet-l-v5", "pcb-patchnet-l-v7", "wafer-die-patchnet-v1",
                 "wafer-line-patchnet-v1"):
        classifier = Classifier(REPO_ROOT / "models" / name)
        assert classifier.card.flops_per_image and classifier.card.flops_per_image > 1e7
    assert Classifier(DIE_MODEL, precision="int8").onnx_path.name == "model-int8.onnx"


def test_bench_records_throughput_speedup_and_efficiency(tmp_path) -> None:
    process = run_cli("bench", str(DIE_MODEL), "--batch-sizes", "1,4", "--seconds", "0.2", "--int8", "--json",
                      "--out", str(tmp_path), timeout=600)
    record = json.loads(process.stdout)
    assert [(r["config"], r["batch_size"]) for r in record["configs"]][:4] == [
        ("core", 1), ("core", 4), ("core-int8", 1), ("core-int8", 4)]
    for row in record["configs"]:
        assert row["images_per_s"] > 0 and row["latency_p99_ms"] >= row["latency_p50_ms"] > 0
        assert row["peak_rss_mb"] > 10
    assert record["gflops_per_image"] == pytest.approx(0.0861, abs=1e-3)
    assert record["matmul_gflops"] > 0 and record["efficiency"] > 0
    assert record["int8_speedup"] > 0
    if record["torch_eager_one_at_a_time"] is not None:
        assert record["speedup_vs_torch_eager"] > 0
    stream = record["stream"]
    assert stream["frames"] >= 400 and stream["max_batch"] == 8 and "within_bound" in stream
    written = list(tmp_path.glob("bench-die-patchnet-v1-cpu-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["machine"]["cores"] >= 1


def test_bench_rejects_bad_batch_sizes() -> None:
    process = run_cli("bench", str(DIE_MODEL), "--batch-sizes", "1,x", check=False)
    assert process.returncode == 2 and "--batch-sizes '1,x'" in process.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA execution provider (onnxruntime-gpu and a GPU) here")
def test_cuda_matches_cpu() -> None:
    batch = np.random.default_rng(0).standard_normal((16, 1, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(Classifier(DIE_MODEL, device="cuda").predict(batch),
                               Classifier(DIE_MODEL).predict(batch), atol=1e-4)


def test_a_second_benchmark_record_of_the_day_does_not_replace_the_first(tmp_path) -> None:
    record = {"benchmark": "pcb", "machine": machine()}
    first = save_record({**record, "run": 1}, tmp_path, name="pcb")
    second = save_record({**record, "run": 2}, tmp_path, name="pcb")
    assert second == first.with_name(first.stem + "-2.json")
    assert [json.loads(path.read_text())["run"] for path in (first, second)] == [1, 2]
