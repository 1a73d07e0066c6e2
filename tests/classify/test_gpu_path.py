"""The GPU route without a GPU where it can be (installation, doctor, FP16 variants, the bound-batch path on the
CPU provider, every model command's --device) and on a GPU where it must (parity, CUDA graphs, TensorRT)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspection.classify import CardError, Classifier, DeviceError, SessionSettings
from inspection.classify import doctor as doctor_module
from inspection.classify import runtime as runtime_module
from inspection.classify.runtime import BATCH_BUCKETS, WARM_UP_RUNS, _BoundBatches, _Lanes, engine_cache_folder
from tests.conftest import REPO_ROOT, run_cli

onnxruntime = pytest.importorskip("onnxruntime")
DIE_MODEL = REPO_ROOT / "models" / "die-patchnet-v1"
PCB_MODEL = REPO_ROOT / "models" / "pcb-patchnet-l-v7"
HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
TRT_LISTED = "TensorrtExecutionProvider" in onnxruntime.get_available_providers()
HAS_TRT = TRT_LISTED and runtime_module.tensorrt_libraries() is not None
TRT_SKIP = ("TensorRT's libraries are not installed (the provider is listed): pip install -e '.[trt]'"
            if TRT_LISTED else "no TensorRT execution provider here")


def test_the_two_onnxruntime_builds_are_extras_that_exclude_each_other() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert not [d for d in project["project"]["dependencies"] if d.startswith("onnxruntime")]
    extras = project["project"]["optional-dependencies"]
    assert extras["cpu"] == ["onnxruntime>=1.17"] and extras["gpu"][0].startswith("onnxruntime-gpu")
    assert project["tool"]["uv"]["conflicts"] == [[{"extra": "cpu"}, {"extra": "gpu"}],
                                                  [{"extra": "cpu"}, {"extra": "trt"}]]
    assert extras["trt"][0].startswith("onnxruntime-gpu") and extras["trt"][1].startswith("tensorrt-cu13-libs")
    # What pip installed from it says the same (the metadata a GPU station's pip resolves).
    requires = metadata.requires("wafer-inspect") or []
    assert any(r.startswith("onnxruntime>=1.17") and 'extra == "cpu"' in r for r in requires)
    assert any(r.startswith("onnxruntime-gpu") and 'extra == "gpu"' in r for r in requires)
    # Here: exactly one build, so the providers are the ones it shipped.
    assert len(doctor_module.onnxruntime_builds()) == 1


def test_doctor_reports_what_runs_models_here() -> None:
    process = run_cli("doctor", "--device", "cpu", "--json")
    report = json.loads(process.stdout)
    runtime = report["onnxruntime"]
    assert runtime["version"] == onnxruntime.__version__ and "CPUExecutionProvider" in runtime["providers"]
    assert Path(runtime["file"]) == Path(onnxruntime.__file__).parent
    assert report["versions"]["numpy"] == np.__version__ and report["problems"] == []
    [check] = report["checks"]
    assert check["ok"] and check["providers"][0] == "CPUExecutionProvider" and check["max_abs_diff_vs_cpu"] == 0


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal of a machine without CUDA")
def test_doctor_fails_a_device_that_is_not_here() -> None:
    process = run_cli("doctor", "--device", "cuda", check=False)
    assert process.returncode == 1
    said = "--device cuda: ONNX Runtime here has no CUDAExecutionProvider"
    assert process.stdout.count(said) == 1 and f"FAILED: {said}" in process.stdout  # once, not again as PROBLEM
    assert "pip install -e '.[gpu]'" in process.stdout


def test_doctor_names_two_builds_installed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_module, "onnxruntime_builds", lambda: ["onnxruntime==1.22.0", "onnxruntime-gpu==1.22.0"])
    [problem] = doctor_module.diagnose()["problems"]
    assert "onnxruntime==1.22.0 and onnxruntime-gpu==1.22.0 are all installed" in problem
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install -e '.[gpu]' (or -e '.[cpu]')" in problem


def test_without_onnxruntime_a_model_is_refused_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "ort", None)
    with pytest.raises(DeviceError, match=r"no ONNX Runtime is installed here: pip install -e '\.\[cpu\]'"):
        Classifier(DIE_MODEL)
    assert "no ONNX Runtime is installed" in doctor_module.diagnose()["problems"][0]


@pytest.mark.parametrize("command", [["run"], ["grade"], ["eval"], ["eval-anomaly"], ["bench"], ["pcb", "inspect"],
                                     ["pcb", "eval"], ["wafermap", "classify"], ["wafermap", "eval"]])
def test_every_command_that_runs_a_model_takes_device(command: list[str]) -> None:
    process = run_cli(*command, "--help")
    assert "--device {cpu,cuda,trt,auto}" in " ".join(process.stdout.split())


def test_bound_batches_pad_to_buckets_and_return_their_own_rows() -> None:
    """The GPU path's logic (buffers bound once per bucket, padding, chunks, outputs that outlive the next call),
    run on the CPU provider: the same ONNX Runtime calls with device "cpu"."""
    classifier = Classifier(DIE_MODEL)
    bound = _BoundBatches(classifier.session, input_name="images", output_name="probabilities",
                          input_shape=(1, 64, 64), cuda_graph=False, device="cpu")
    rng = np.random.default_rng(0)
    outputs = {}
    for count in (1, 3, 8, BATCH_BUCKETS[-1] + 6):
        batch = rng.standard_normal((count, 1, 64, 64), dtype=np.float32)
        outputs[count] = (bound.run(batch), classifier.predict(batch))
    for found, expected in outputs.values():  # earlier results were not overwritten by later calls
        np.testing.assert_array_equal(found, expected)
    assert sorted(bound.slots) == [1, 4, 8, BATCH_BUCKETS[-1]] and not bound.pinned
    assert bound.output_shape == (len(classifier.class_names),)


def test_lanes_cut_large_batches_into_chunks_run_side_by_side_in_order() -> None:
    """Two sessions as two lanes (the CPU provider standing in for two CUDA streams): a large batch is cut into
    chunks that run on both at once and come back in the caller's order; a small one goes to one lane, in
    turn; replay runs the same cut on what the buffers hold."""
    classifier = Classifier(DIE_MODEL)
    sessions = [classifier.session, Classifier(DIE_MODEL).session]
    lanes = _Lanes([_BoundBatches(session, input_name="images", output_name="probabilities",
                                  input_shape=(1, 64, 64), cuda_graph=False, device="cpu") for session in sessions])
    rng = np.random.default_rng(4)
    large = rng.standard_normal((2 * BATCH_BUCKETS[-1] + 100, 1, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(lanes.run(large), classifier.predict(large), atol=1e-6)
    assert [sorted(lane.slots) for lane in lanes.lanes] == [[128, BATCH_BUCKETS[-1]], [BATCH_BUCKETS[-1]]]
    middle = large[: _Lanes.SPLIT_FROM]  # split in two halves of 32
    np.testing.assert_allclose(lanes.run(middle), classifier.predict(middle), atol=1e-6)
    assert all(32 in lane.slots for lane in lanes.lanes)
    for _ in range(2):  # small batches alternate between the lanes
        np.testing.assert_allclose(lanes.run(large[:3]), classifier.predict(large[:3]), atol=1e-6)
    assert all(4 in lane.slots for lane in lanes.lanes)
    lanes.replay(3 * BATCH_BUCKETS[-1])
    lanes.replay(5)
    # Each lane's session runs on its own thread only (ONNX Runtime's per-thread CUDA handles).
    seen: dict[int, set[str]] = {0: set(), 1: set()}
    for index, lane in enumerate(lanes.lanes):
        original = lane.run

        def recorded(*args: object, index: int = index, original: Any = original, **kwargs: object) -> Any:
            seen[index].add(threading.current_thread().name)
            return original(*args, **kwargs)

        lane.run = recorded  # type: ignore[method-assign]
    lanes.run(large)
    for _ in range(3):
        lanes.run(large[:5])
    assert {index: {name.split("_")[0] for name in names} for index, names in seen.items()} == {
        0: {"lane0"}, 1: {"lane1"}}
    # After warm_up(6) every batch of up to 6 rows runs at the bucket of 8: one shape per session.
    lanes.warm_up(6)
    np.testing.assert_allclose(lanes.run(large[:2]), classifier.predict(large[:2]), atol=1e-6)
    assert all(lane.bucket(1) == 8 and lane.bucket(9) == 16 for lane in lanes.lanes)
    # With CUDA graphs, a bucket's first runs (its capture) hold every lane; it is settled after WARM_UP_RUNS.
    graphs = _Lanes([_BoundBatches(session, input_name="images", output_name="probabilities",
                                   input_shape=(1, 64, 64), cuda_graph=True, device="cpu") for session in sessions])
    assert not graphs.lanes[0].settled(3)
    for _ in range(2 * WARM_UP_RUNS):
        np.testing.assert_allclose(graphs.run(large[:3]), classifier.predict(large[:3]), atol=1e-6)
    assert all(lane.settled(3) and not lane.settled(300) for lane in graphs.lanes)


def test_an_anomaly_model_binds_its_score_map_shape() -> None:
    model = Classifier(REPO_ROOT / "models" / "pcb-anomaly-v1")
    spec = model.card.input
    bound = _BoundBatches(model.session, input_name=spec.name, output_name=model.card.output_name,
                          input_shape=(spec.channels, spec.height, spec.width), cuda_graph=True, device="cpu")
    batch = np.random.default_rng(1).random((3, spec.channels, spec.height, spec.width), dtype=np.float32)
    np.testing.assert_array_equal(bound.run(batch), model.predict(batch))


def test_tensorrt_engines_are_cached_beside_the_model_or_in_the_user_cache(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    writable = tmp_path / "die-patchnet-v9"
    writable.mkdir()
    assert engine_cache_folder(writable, "ab" * 32) == writable / "trt-cache"
    # A folder no cache can be made in (here: one whose parent is a file, which even root cannot write into).
    (tmp_path / "packaged").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "wafer-inspect" / "trt" / "die-patchnet-v1-cdcdcdcdcdcd"
    assert engine_cache_folder(tmp_path / "packaged" / "die-patchnet-v1", "cd" * 32) == expected and expected.is_dir()


def test_fp16_variants_of_the_shipped_models_agree_with_fp32() -> None:
    for model_dir in (DIE_MODEL, PCB_MODEL):
        half, full = Classifier(model_dir, precision="fp16"), Classifier(model_dir)
        assert half.onnx_path.name == "model-fp16.onnx" and half.card.fp16 is not None
        parity = half.card.fp16.parity
        assert parity.argmax_agreement == 1.0 and parity.max_abs_diff <= parity.tolerance and parity.samples >= 1800
        assert half.card.fp16.fp16["accuracy"] == pytest.approx(half.card.fp16.fp32["accuracy"], abs=2e-3)
        spec = full.card.input
        batch = np.random.default_rng(2).random((16, spec.channels, spec.height, spec.width), dtype=np.float32)
        assert np.abs(half.predict(batch) - full.predict(batch)).max() < 0.05


def test_fp16_export_checks_parity_on_real_images_and_records_it(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="exporting needs the [train] extra")
    copy = tmp_path / "die-patchnet-v1"
    shutil.copytree(DIE_MODEL, copy)
    (copy / "model-fp16.onnx").unlink()
    card = json.loads((copy / "model.json").read_text())
    card["fp16"] = None
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match="no FP16 variant"):
        Classifier(copy, precision="fp16")
    refused = run_cli("export", str(copy), "--fp16", check=False)
    assert refused.returncode == 2 and "--fp16 needs --eval FOLDER" in refused.stderr
    images = tmp_path / "dies"
    run_cli("synth", "dies", str(images), "--per-class", "10", "--seed", "3")
    process = run_cli("export", str(copy), "--fp16", "--eval", str(images), timeout=300)
    assert "fp32: accuracy" in process.stderr and "fp16: accuracy" in process.stderr
    variant = json.loads((copy / "model.json").read_text())["fp16"]
    assert variant["file"] == "model-fp16.onnx" and variant["parity"]["samples"] == 60
    assert variant["parity"]["argmax_agreement"] == 1.0 and variant["parity"]["max_abs_diff"] < 2e-2
    report = json.loads(run_cli("eval", str(copy), str(images), "--fp16", "--json").stdout)
    assert report["model"].endswith("model-fp16.onnx") and report["accuracy"] == variant["fp16"]["accuracy"]


def test_an_fp16_variant_beyond_its_tolerance_is_refused_and_the_card_kept(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx", reason="exporting needs the [train] extra")
    from inspection.train import export

    copy = tmp_path / "die-patchnet-v1"
    shutil.copytree(DIE_MODEL, copy)
    before = (copy / "model.json").read_bytes()
    images = tmp_path / "dies"
    run_cli("synth", "dies", str(images), "--per-class", "5", "--seed", "4")
    monkeypatch.setattr(export, "FP16_PARITY_TOLERANCE", 1e-9)
    with pytest.raises(export.ExportError, match=r"FP16 differs from FP32 on 30 images .* the card is unchanged"):
        export.convert_fp16(copy, eval_folder=images)
    assert (copy / "model.json").read_bytes() == before and not list(copy.glob(".*partial"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA execution provider (wafer-inspect[gpu] and a GPU)")
@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("model_dir", [DIE_MODEL, PCB_MODEL])
def test_cuda_matches_cpu_for_decisions(model_dir: Path, cuda_graph: bool) -> None:
    spec = Classifier(model_dir).card.input
    batch = np.random.default_rng(0).random((37, spec.channels, spec.height, spec.width), dtype=np.float32)
    cpu = Classifier(model_dir).predict(batch)
    gpu = Classifier(model_dir, device="cuda", settings=SessionSettings(cuda_graph=cuda_graph))
    gpu.warm_up(64)
    for _ in range(3):  # the captured graph replays with each new batch, not the first one
        found = gpu.predict(batch)
        assert np.abs(found - cpu).max() <= 1e-3 and (found.argmax(1) == cpu.argmax(1)).all()
        batch = batch[::-1].copy()
        cpu = cpu[::-1]
    half = Classifier(model_dir, device="cuda", precision="fp16", settings=SessionSettings(cuda_graph=cuda_graph))
    # FP16 on tensor cores: within the variant's recorded tolerance of FP32 (2e-2), the same decisions.
    assert np.abs(half.predict(batch) - cpu).max() <= half.card.fp16.parity.tolerance


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA execution provider (wafer-inspect[gpu] and a GPU)")
def test_uint8_batches_cross_to_the_gpu_and_match_the_cpu() -> None:
    cpu, gpu = Classifier(PCB_MODEL), Classifier(PCB_MODEL, device="cuda")
    assert gpu.check_report is not None and gpu.check_report["max_abs_diff"] <= 1e-3
    pixels = np.random.default_rng(4).integers(0, 256, (37, 3, 64, 64), dtype=np.uint8)
    expected = cpu.predict_pixels(pixels)
    for _ in range(2):  # the second call reuses the bucket's bound pre-step
        found = gpu.predict_pixels(pixels)
        assert np.abs(found - expected).max() <= 1e-3 and (found.argmax(1) == expected.argmax(1)).all()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA execution provider (wafer-inspect[gpu] and a GPU)")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_two_lanes_on_the_gpu_match_the_cpu(cuda_graph: bool) -> None:
    settings = SessionSettings(cuda_graph=cuda_graph, tuning="heuristic-nhwc-2lanes")
    gpu = Classifier(DIE_MODEL, device="cuda", precision="fp16", settings=settings)
    gpu.warm_up(8)
    pixels = np.random.default_rng(5).integers(0, 256, (300, 1, 64, 64), dtype=np.uint8)
    expected = Classifier(DIE_MODEL).predict_pixels(pixels)
    for count in (300, 5, 5, 300):  # split in two, then one lane each, then split again
        found = gpu.predict_pixels(pixels[:count])
        assert np.abs(found - expected[:count]).max() <= 2e-2
    gpu.replay(2048)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason=TRT_SKIP)
def test_tensorrt_matches_cpu_and_caches_its_engine(tmp_path: Path) -> None:
    copy = tmp_path / "die-patchnet-v1"
    shutil.copytree(DIE_MODEL, copy)
    batch = np.random.default_rng(0).random((16, 1, 64, 64), dtype=np.float32)
    found = Classifier(copy, device="trt").predict(batch)
    expected = Classifier(copy).predict(batch)
    assert np.abs(found - expected).max() <= 1e-3 and (found.argmax(1) == expected.argmax(1)).all()
    assert list((copy / "trt-cache").iterdir())


def test_tensorrt_listed_without_its_libraries_is_refused_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    monkeypatch.setattr(runtime_module, "tensorrt_libraries", lambda: None)
    with pytest.raises(DeviceError, match=r"lists TensorrtExecutionProvider but TensorRT's libnvinfer.so.10 is not "
                                          r"installed: pip install -e '\.\[trt\]'"):
        runtime_module.providers_for("trt")
    assert runtime_module.providers_for("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    report = doctor_module.diagnose()
    assert "libnvinfer.so.10 is missing, so --device trt is refused" in report["tensorrt"]
    assert report["problems"] == []  # CUDA still works: a note, not a problem


def test_provider_settings_by_precision_and_measured_winners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFER_INSPECT_TUNING", str(tmp_path / "tuning.json"))
    resolve = runtime_module.resolve_tuning
    fp16, source = resolve("CUDAExecutionProvider", "fp16", "ab" * 32)
    assert dict(fp16.cuda_options) == {"cudnn_conv_algo_search": "HEURISTIC", "prefer_nhwc": "1"}
    assert source == "default" and fp16.lanes == 4
    fp32 = resolve("CUDAExecutionProvider", "fp32", "ab" * 32)[0]
    assert dict(fp32.cuda_options)["prefer_nhwc"] == "0" and fp32.lanes == 2
    options = runtime_module._provider_options(
        "CUDAExecutionProvider", precision="fp32", cuda_graph=True, input_name="images", input_shape=[1, 8, 8],
        cache=None, tuning=resolve("CUDAExecutionProvider", "fp32", "ab" * 32)[0])
    assert options["use_tf32"] == "0" and options["enable_cuda_graph"] == "1"  # FP32 stays exact
    # A winner measured here (as inspect bench --tune records it) is what the next session runs.
    card = Classifier(DIE_MODEL).card
    assert Classifier(DIE_MODEL).tuning.name == "nchwc"
    runtime_module.record_tuning(card.onnx_sha256, "CPUExecutionProvider", "nchw", measured={"images_per_s": 1.0})
    tuned = Classifier(DIE_MODEL)
    assert tuned.tuning.name == "nchw" and tuned.tuning_source.startswith("measured here")
    assert Classifier(DIE_MODEL, precision="int8").tuning.name == "nchwc"  # another file: not measured
    with pytest.raises(DeviceError, match="tuning 'fast' is not one of CPUExecutionProvider's: nchwc, nchw"):
        Classifier(DIE_MODEL, settings=SessionSettings(tuning="fast"))
    (tmp_path / "tuning.json").write_text("{not json")
    assert Classifier(DIE_MODEL).tuning_source == "default"  # a broken cache is an empty one


def test_uint8_batches_are_normalised_on_the_device_to_the_cpus_values() -> None:
    """The GPU path's pre-step (uint8 across, normalised by a bound graph into the network's bound input), run on
    the CPU provider, against the CPU's normalisation: the same probabilities, bit for bit."""
    from inspection.classify.prepare import normalise

    classifier = Classifier(PCB_MODEL)
    bound = _BoundBatches(classifier.session, input_name="images", output_name="probabilities",
                          input_shape=(3, 64, 64), cuda_graph=False, device="cpu",
                          normalisation=classifier.card.normalisation)
    pixels = np.random.default_rng(3).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    units = pixels.transpose(0, 2, 3, 1).astype(np.float32) * np.float32(1 / 255)
    expected = classifier.predict(normalise(units, normalisation=classifier.card.normalisation))
    np.testing.assert_array_equal(bound.run(pixels, unit_scale=1 / 255), expected)
    np.testing.assert_array_equal(classifier.predict_pixels(pixels), expected)
    with pytest.raises(ValueError, match=r"uint8 N x 3 x 64 x 64, got float32 \(5, 3, 64, 64\)"):
        classifier.predict_pixels(pixels.astype(np.float32))
    # The graph shipped with the package is the one the training package makes.
    export = pytest.importorskip("inspection.train.export", reason="the [train] extra")
    assert runtime_module.NORMALISE_GRAPH.read_bytes() == export.normalise_graph()


def test_a_bench_configuration_past_its_limit_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    from inspection.classify import bench

    with pytest.raises(bench.ConfigTimeout, match=r"did not finish within 0\.5 s"):
        bench._isolated(time.sleep, 30, limit_s=0.5)
    seen: list[int] = []
    record = bench.run_bench(DIE_MODEL, batch_sizes=(1, 4), seconds=0.2, config_limit_s=60,
                             progress=lambda partial: seen.append(len(partial["configs"])))
    assert record["status"] == "complete" and seen[0] == 1 and seen[-1] == 2
    assert record["stream"]["slowest_percent_ms"]["compute"] >= 0 and record["configs"][0]["tuning"] == "nchwc"
    tight = bench.run_bench(DIE_MODEL, batch_sizes=(1,), seconds=0.2, config_limit_s=0.01)
    assert tight["status"] == "no core configuration finished" and tight["stream"] is None
    assert [f["error"] for f in tight["failed_configs"]] == ["ConfigTimeout: did not finish within 0.01 s"]
