from __future__ import annotations

import json
from pathlib import Path

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


def _graph_flops(onnx_path: Path) -> int:
    """FLOPs (2 x multiply-adds) of one image through the graph's Conv and Gemm nodes, from the ONNX file."""
    onnx = pytest.importorskip("onnx")
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path))).graph
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.output, *graph.input]}
    weights = {w.name: list(w.dims) for w in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type == "Conv":  # output elements x (input channels / groups) x kernel area
            _, in_per_group, kh, kw = weights[node.input[1]]
            total += 2 * int(np.prod(shapes[node.output[0]])) * in_per_group * kh * kw
        elif node.op_type == "Gemm":
            total += 2 * int(np.prod(weights[node.input[1]]))
    return total


@pytest.mark.parametrize("name", ["die-patchnet-v1", "pcb-patchnet-l-v7", "wafer-die-patchnet-v1",
                                  "wafer-line-patchnet-v1", "../tests/models/pcb-patchnet-l-v5"])
def test_shipped_models_state_the_compute_their_graph_does(name: str) -> None:
    classifier = Classifier(REPO_ROOT / "models" / name)
    assert classifier.card.flops_per_image == _graph_flops(classifier.onnx_path)


def test_int8_is_chosen_by_precision() -> None:
    assert Classifier(DIE_MODEL, precision="int8").onnx_path.name == "model-int8.onnx"


@pytest.mark.slow
def test_bench_records_throughput_speedup_and_efficiency(tmp_path) -> None:
    process = run_cli("bench", str(DIE_MODEL), "--batch-sizes", "1,4", "--seconds", "0.2", "--fp16", "--int8",
                      "--json", "--out", str(tmp_path), timeout=600)
    record = json.loads(process.stdout)
    assert [(r["config"], r["precision"], r["batch_size"]) for r in record["configs"]][:6] == [
        ("core", "fp32", 1), ("core", "fp32", 4), ("core", "fp16", 1), ("core", "fp16", 4), ("core", "int8", 1),
        ("core", "int8", 4)]
    for row in record["configs"]:
        # Each configuration's own process: its peak is its own, not that of the parent that loaded torch.
        assert row["latency_p99_ms"] >= row["latency_p50_ms"] > 0 and row["peak_rss_mb"] > 10
        # Throughput and latency come from the same calls: a batch every p50 latency, give or take the spread.
        calls_per_s = row["images_per_s"] / row["batch_size"]
        assert 1000 / row["latency_p99_ms"] * 0.8 <= calls_per_s <= 1000 / row["latency_p50_ms"] * 1.5, row
    assert max(r["peak_rss_mb"] for r in record["configs"] if r["config"] == "core") < 400
    assert record["gflops_per_image"] == pytest.approx(0.0861, abs=1e-3)

    def best(**match: object) -> float:
        return max(r["images_per_s"] for r in record["configs"] if all(r[k] == v for k, v in match.items()))

    fp32 = record["efficiency"]["fp32"]
    assert fp32["peak_source"] == "numpy float32 GEMM on the CPU"
    assert fp32["efficiency"] == pytest.approx(best(config="core", precision="fp32") * record["gflops_per_image"]
                                               / fp32["peak_gflops"], rel=0.01)
    assert record["int8_speedup"] == pytest.approx(best(precision="int8") / best(precision="fp32"), rel=0.01)
    assert record["fp16_speedup"] == pytest.approx(best(precision="fp16") / best(precision="fp32"), rel=0.01)
    # Best against best: the core's fastest configuration against PyTorch's fastest batched one.
    assert record["best_core"]["images_per_s"] == best(config="core")
    assert record["best_torch_batched"]["batch_size"] > 1
    assert record["speedup_best_vs_best"] == pytest.approx(
        best(config="core") / record["best_torch_batched"]["images_per_s"], rel=0.01)
    single = record["one_at_a_time"]
    assert single["core"]["batch_size"] == single["torch_eager"]["batch_size"] == 1
    import onnxruntime
    import torch

    assert record["versions"]["onnxruntime"] == onnxruntime.__version__
    assert record["versions"]["torch"] == torch.__version__
    stream = record["stream"]
    assert stream["frames"] >= 400 and stream["max_batch"] == 8 and "within_bound" in stream
    written = list(tmp_path.glob("bench-die-patchnet-v1-cpu-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["machine"]["cores"] >= 1


def test_bench_rejects_bad_batch_sizes() -> None:
    process = run_cli("bench", str(DIE_MODEL), "--batch-sizes", "1,x", check=False)
    assert process.returncode == 2 and "--batch-sizes '1,x'" in process.stderr


def test_a_second_benchmark_record_of_the_day_does_not_replace_the_first(tmp_path) -> None:
    record = {"benchmark": "pcb", "machine": machine()}
    first = save_record({**record, "run": 1}, tmp_path, name="pcb")
    second = save_record({**record, "run": 2}, tmp_path, name="pcb")
    assert second == first.with_name(first.stem + "-2.json")
    assert [json.loads(path.read_text())["run"] for path in (first, second)] == [1, 2]


def _torch_row(model_dir: Path, device: str, batch_size: int, seconds: float, precision: str = "fp32",
               compiled: bool = False) -> dict:
    """A stand-in for PyTorch in the benchmark: fixed figures, and torch.compile failing as it does without a
    compiler or Triton."""
    if compiled:
        raise RuntimeError("backend='inductor' raised: no working C++ compiler found")
    return {"batch_size": batch_size, "calls": 5, "images_per_s": 10.0 * batch_size, "latency_p50_ms": 100.0,
            "latency_p99_ms": 100.0, "peak_rss_mb": 50.0, "precision": precision, "torch_version": "stand-in"}


def test_a_torch_configuration_that_cannot_compile_is_recorded_not_fatal() -> None:
    from inspection.classify.bench import TorchSide, format_table, run_bench

    record = run_bench(DIE_MODEL, batch_sizes=(2,), seconds=0.1,
                       torch=TorchSide(_torch_row, lambda _device, _precision: 1.0, compile=True))
    assert [r["config"] for r in record["configs"]] == ["core", "torch-eager", "torch-eager"]
    [failed] = record["failed_configs"]
    assert failed["config"] == "torch-compile" and "no working C++ compiler" in failed["error"]
    assert record["speedup_best_vs_best"] == round(record["best_core"]["images_per_s"] / 20.0, 2)
    assert record["versions"]["torch"] == "stand-in"
    assert "torch-compile fp32 batch 2 did not run: RuntimeError" in format_table(record)
