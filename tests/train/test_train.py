"""Training, export, parity, evaluation and INT8 through the ``inspect`` command on generated die images."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, run_cli

pytestmark = pytest.mark.slow  # every test here trains a model

pytest.importorskip("torch", reason="training needs the [train] extra")
onnxruntime = pytest.importorskip("onnxruntime")

TINY = ["--img-size", "32", "--batch-size", "32"]


def synth(folder: Path, *, per_class: int, seed: int, classes: str | None = None) -> Path:
    args = ["synth", "dies", str(folder), "--per-class", str(per_class), "--seed", str(seed), "--size", "32"]
    run_cli(*args, *(["--classes", classes] if classes else []))
    return folder


@pytest.fixture(scope="module")
def dies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("dies") / "train", per_class=40, seed=1)


@pytest.fixture(scope="module")
def model(dies: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "die-patchnet-v1"
    run_cli("train", str(dies), "--out", str(out), "--epochs", "3", *TINY, timeout=600)
    return out


def card_of(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())


def test_card_is_the_whole_contract(model: Path) -> None:
    card = card_of(model)
    assert card["class_names"] == ["bridge", "good", "missing-pattern", "particle", "scratch", "stain"]
    assert card["input"] == {"name": "images", "layout": "NCHW", "channels": 1, "height": 32, "width": 32,
                             "dtype": "float32", "resize": "area", "channel_order": ["grey level"]}
    assert len(card["normalisation"]["mean"]) == 1 and card["normalisation"]["std"][0] > 0
    assert card["opset"] >= 17 and card["preprocessing_version"] == 1
    import hashlib

    assert card["onnx_sha256"] == hashlib.sha256((model / "model.onnx").read_bytes()).hexdigest()
    assert card["parity"]["max_abs_diff"] <= 1e-4 and card["parity"]["argmax_agreement"] == 1.0
    assert card["parity"]["samples"] == 48  # 20% of 40 per class
    thresholds = card["thresholds"]
    assert thresholds["good_class"] == "good" and thresholds["target_defect_recall"] == 0.999
    assert thresholds["val_defect_recall"] >= 0.999 and 0 <= thresholds["val_overkill"] <= 1
    training = card["training"]
    assert len(training["data_hash"]) == 64 and training["command"].startswith("inspect train")
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3]
    val = card["metrics"]["val"]
    assert val["samples"] == 48 and len(val["confusion"]) == 6
    import onnx  # the ONNX file carries the contract too, for tools that read only it

    metadata = {prop.key: prop.value for prop in onnx.load(str(model / "model.onnx")).metadata_props}
    assert json.loads(metadata["class_names"]) == card["class_names"]
    assert json.loads(metadata["input"]) == card["input"] and metadata["training_data_hash"] == training["data_hash"]
    for picture in ("confusion.png", "training.png"):
        assert cv2.imread(str(model / picture)) is not None


def test_onnx_has_a_dynamic_batch_axis(model: Path) -> None:
    session = onnxruntime.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        probabilities = session.run(None, {"images": np.zeros((batch, 1, 32, 32), np.float32)})[0]
        assert probabilities.shape == (batch, 6)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_eval_uses_the_card_and_reports_everything(model: Path, tmp_path: Path) -> None:
    test_folder = synth(tmp_path / "test", per_class=10, seed=2)
    report = json.loads(run_cli("eval", str(model), str(test_folder), "--json").stdout)
    assert report["samples"] == 60 and report["class_names"][1] == "good"
    assert set(report["per_class"]["good"]) == {"precision", "recall", "f1", "support"}
    assert np.asarray(report["confusion"]).sum() == 60
    point = report["operating_point"]
    assert point["defects"] == 50 and point["good"] == 10
    assert point["defect_score_threshold"] == card_of(model)["thresholds"]["defect_score"]
    table = run_cli("eval", str(model), str(test_folder)).stdout
    assert "macro-F1" in table and "confusion (rows true, columns predicted)" in table


def test_eval_compares_two_models_on_the_same_images(model: Path, tmp_path: Path) -> None:
    test_folder = synth(tmp_path / "test", per_class=10, seed=2)
    # The shipped die model: another input size (64 px), the same classes.
    shipped = REPO_ROOT / "models" / "die-patchnet-v1"
    report = json.loads(run_cli("eval", str(model), str(test_folder), "--compare", str(shipped), "--json").stdout)
    baseline = report["baseline"]
    assert baseline["model"].endswith("model.onnx") and "die-patchnet-v1" in baseline["model"]
    alone = json.loads(run_cli("eval", str(shipped), str(test_folder), "--json").stdout)
    assert baseline["accuracy"] == alone["accuracy"] and baseline["macro_f1"] == alone["macro_f1"]
    assert baseline["operating_point"] == alone["operating_point"]
    assert baseline["difference"]["accuracy"] == pytest.approx(report["accuracy"] - alone["accuracy"], abs=1e-5)
    low, high = baseline["difference_ci95"]["macro_f1"]
    assert low <= baseline["difference"]["macro_f1"] <= high
    itself = json.loads(run_cli("eval", str(model), str(test_folder), "--compare", str(model), "--json").stdout)
    assert itself["baseline"]["difference_ci95"]["accuracy"] == [0.0, 0.0]
    table = run_cli("eval", str(model), str(test_folder), "--compare", str(shipped)).stdout
    assert "paired 95% intervals, same images" in table and "its defect recall" in table
    # Models of other classes do not compare; the error names both class lists.
    renamed = tmp_path / "renamed"
    shutil.copytree(model, renamed)
    from inspection.classify.card import ModelCard
    from inspection.train.export import stamp_metadata

    card = ModelCard.model_validate(card_of(renamed))  # a model of other classes: its card and its ONNX file say so
    card.class_names = [name.replace("stain", "smudge") for name in card.class_names]
    card.onnx_sha256 = stamp_metadata(renamed / card.onnx_file, card)
    card.write(renamed)
    process = run_cli("eval", str(model), str(test_folder), "--compare", str(renamed), check=False)
    assert process.returncode == 2 and "smudge" in process.stderr
    assert "only models of the same classes" in process.stderr


def test_same_seed_same_model_and_resume_continues(dies: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run_cli("train", str(dies), "--out", str(out), "--epochs", "1", *TINY, timeout=600)
    assert card_of(first)["onnx_sha256"] == card_of(second)["onnx_sha256"]
    assert card_of(first)["metrics"] == card_of(second)["metrics"]
    run_cli("train", str(dies), "--out", str(first), "--epochs", "2", "--resume", *TINY, timeout=600)
    assert [h["epoch"] for h in card_of(first)["training"]["history"]] == [1, 2]
    # A local weights file (here the checkpoint just written) initialises a new training.
    started = tmp_path / "from-weights"
    run_cli("train", str(dies), "--out", str(started), "--epochs", "1", "--weights", str(first / "best.pt"),
            *TINY, timeout=600)
    assert card_of(started)["training"]["config"]["weights"] == str(first / "best.pt")
    bad = run_cli("train", str(dies), "--out", str(tmp_path / "x"), "--weights", str(tmp_path / "none.pt"),
                  check=False)
    assert bad.returncode == 2 and "none.pt" in bad.stderr and "Traceback" not in bad.stderr


def test_unreadable_mixed_size_and_16_bit_images(tmp_path: Path) -> None:
    folder = synth(tmp_path / "data", per_class=12, seed=3, classes="good,particle")
    (folder / "good" / "broken.png").write_bytes(b"not a png")
    big = cv2.resize(cv2.imread(str(folder / "particle" / "particle_00000.png"), cv2.IMREAD_UNCHANGED), (48, 48))
    cv2.imwrite(str(folder / "particle" / "wide16.png"), big.astype(np.uint16) * 257)
    out = tmp_path / "model"
    run_cli("train", str(folder), "--out", str(out), "--epochs", "1", *TINY, timeout=600)
    skipped = card_of(out)["training"]["skipped_unreadable"]
    assert len(skipped) == 1 and "broken.png" in skipped[0]


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda root: (root / "empty").mkdir(), "empty: class folder holds no image files"),
        (lambda root: shutil.rmtree(root / "particle"), "expected at least 2"),
        # one good image (a small review export): it can only train, so validation has no good image to set the
        # good/defect operating point on
        (lambda root: [path.unlink() for path in sorted((root / "good").iterdir())[1:]],
         "the validation split holds 0 'good' and 1 defect image(s)"),
    ],
)
def test_bad_training_folders(tmp_path: Path, prepare, message: str) -> None:
    """Refused before anything trains, with the folder and the reason (in process: the command line turns the
    same InspectionError into one line and exit code 2, as the --weights case above shows)."""
    from inspection.train.loop import TrainConfig, train
    from inspection.types import InspectionError

    folder = synth(tmp_path / "data", per_class=3, seed=4, classes="good,particle")
    prepare(folder)
    with pytest.raises(InspectionError, match=re.escape(message)):
        train(TrainConfig(folder=folder, out=tmp_path / "m", epochs=1))


def test_tampered_model_is_refused(model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    with (copy / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    process = run_cli("eval", str(copy), str(tmp_path), check=False)
    assert process.returncode == 2 and "does not match the card's" in process.stderr


def test_onnx_with_the_wrong_input_shape_is_refused(model: Path, tmp_path: Path) -> None:
    import hashlib

    import torch

    copy = tmp_path / "wrong"
    shutil.copytree(model, copy)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 6), torch.nn.Softmax(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(net, (torch.zeros(1, 1, 48, 48),), str(copy / "model.onnx"), input_names=["images"],
                          output_names=["probabilities"], dynamic_axes={"images": {0: "batch"}}, dynamo=False)
    card = card_of(copy)
    card["onnx_sha256"] = hashlib.sha256((copy / "model.onnx").read_bytes()).hexdigest()
    (copy / "model.json").write_text(json.dumps(card))
    process = run_cli("eval", str(copy), str(tmp_path), check=False)
    assert process.returncode == 2
    assert "does not match the card's images[batch, 1, 32, 32]" in process.stderr


def test_int8_variant_reports_the_accuracy_change(model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "int8"
    shutil.copytree(model, copy)
    calibration = synth(tmp_path / "calib", per_class=8, seed=5)
    process = run_cli("export", str(copy), "--int8", "--calib", str(calibration), timeout=600)
    assert "fp32: accuracy" in process.stderr and "int8: accuracy" in process.stderr
    variant = card_of(copy)["int8"]
    assert variant["file"] == "model-int8.onnx" and variant["calibration_images"] == 48
    assert set(variant["fp32"]) >= {"accuracy", "macro_f1"} and set(variant["int8"]) >= {"accuracy", "macro_f1"}
    report = json.loads(run_cli("eval", str(copy), str(calibration), "--int8", "--json").stdout)
    assert report["model"].endswith("model-int8.onnx") and report["accuracy"] == variant["int8"]["accuracy"]
    # Against its own FP32 graph on the same images: the change quantisation made, with its paired interval.
    paired = json.loads(run_cli("eval", str(copy), str(calibration), "--int8", "--compare", str(copy),
                                "--json").stdout)["baseline"]
    assert paired["model"].endswith("model.onnx") and paired["accuracy"] == variant["fp32"]["accuracy"]
    change = variant["int8"]["accuracy"] - variant["fp32"]["accuracy"]
    assert paired["difference"]["accuracy"] == pytest.approx(change, abs=1e-5)
    low, high = paired["difference_ci95"]["accuracy"]
    assert low <= paired["difference"]["accuracy"] <= high


def test_class_weightings_balance_the_loss_over_the_samples() -> None:
    from inspection.train.loop import TrainingError, class_weights

    counts = np.array([900.0, 100.0, 25.0], dtype=np.float32)
    for weighting, power in (("inverse", 1.0), ("sqrt", 0.5), ("none", 0.0)):
        weights = class_weights(counts, weighting)
        assert float((weights * counts).sum()) == pytest.approx(counts.sum(), rel=1e-5)  # mean weight 1
        assert weights[2] / weights[0] == pytest.approx((900 / 25) ** power, rel=1e-5)
    with pytest.raises(TrainingError, match="'cube'"):
        class_weights(counts, "cube")


def test_the_gpu_input_pipeline_is_deterministic_and_augments_differently_per_process(
        dies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What --device cuda trains with (loader processes augmenting ahead, pinned batches), run on the CPU: the same
    seed gives the same model, and the processes do not repeat each other's augmentations."""
    import torch

    from inspection.train import loop
    from inspection.train.data import AugmentedImages, PreparedImages

    monkeypatch.setattr(loop, "loader_workers", lambda _device: 2)
    cards = []
    for out in (tmp_path / "a", tmp_path / "b"):
        config = loop.TrainConfig(folder=dies, out=out, epochs=1, img_size=32, batch_size=32, seed=3)
        cards.append(loop.train(config))
    assert cards[0].onnx_sha256 == cards[1].onnx_sha256 and cards[0].metrics == cards[1].metrics
    assert cards[0].training["history"][0]["train_s"] > 0
    # One image eight times: two loader processes seeded alike would turn out the same two batches.
    prepared = loop.load_units(loop.list_labelled_folder(dies), spec=cards[0].input, label="one image")
    same = PreparedImages(np.repeat(prepared.units[:1], 8, axis=0), np.zeros(8, np.int64), prepared.paths[:1] * 8, ())
    dataset = AugmentedImages(same, normalisation=cards[0].normalisation,
                              augment=loop.augmentation(flips=True, rot90=True, seed=3))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2,
                                         worker_init_fn=loop._reseed_augmentation,
                                         generator=torch.Generator().manual_seed(3))
    first, second = (images for images, _ in loader)
    assert not torch.equal(first, second)


def test_moving_average_is_what_is_validated_and_exported(dies: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "ema"
    run_cli("train", str(dies), "--out", str(out), "--epochs", "1", "--ema", "0.9", "--class-weights", "sqrt",
            *TINY, timeout=600)
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    key = "head.3.weight"
    assert torch.equal(best["model"][key], last["average"][key])
    assert not torch.equal(best["model"][key], last["model"][key])  # the raw weights go on training
    assert card_of(out)["training"]["config"]["ema_decay"] == 0.9
    assert card_of(out)["training"]["config"]["class_weighting"] == "sqrt"
    run_cli("train", str(dies), "--out", str(out), "--epochs", "2", "--ema", "0.9", "--class-weights", "sqrt",
            "--resume", *TINY, timeout=600)
    assert not torch.equal(torch.load(out / "last.pt", weights_only=True)["average"][key], last["average"][key])
    bad = run_cli("train", str(dies), "--out", str(tmp_path / "x"), "--ema", "1.5", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "argument --ema: expected a number within 0..1, got 1.5" in bad.stderr


def test_label_smoothing_reaches_the_loss(dies: Path, model: Path, tmp_path: Path) -> None:
    smoothed = tmp_path / "smoothed"
    run_cli("train", str(dies), "--out", str(smoothed), "--epochs", "3", "--label-smoothing", "0.3", *TINY,
            timeout=600)
    assert card_of(smoothed)["training"]["config"]["label_smoothing"] == 0.3
    # Same data, seed and epochs as the `model` fixture, and training is deterministic: only the softened
    # targets can make the weights differ.
    assert card_of(smoothed)["onnx_sha256"] != card_of(model)["onnx_sha256"]
    bad = run_cli("train", str(dies), "--out", str(tmp_path / "x"), "--label-smoothing", "1", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "argument --label-smoothing: expected a number within 0..0.99, got 1" in bad.stderr


def test_large_patchnet_trains_and_exports_through_the_same_contract(dies: Path, tmp_path: Path) -> None:
    out = tmp_path / "die-patchnet-l"
    run_cli("train", str(dies), "--out", str(out), "--epochs", "1", "--arch", "patchnet-l", *TINY, timeout=600)
    card = card_of(out)
    assert card["arch"] == "patchnet-l" and card["training"]["config"]["arch"] == "patchnet-l"
    assert card["parity"]["argmax_agreement"] == 1.0
    # Over 4x the weights of the compact network (about 147,000), spent in its two coarse stages.
    assert card["training"]["parameters"] > 4 * 147_000


def test_validation_share_is_an_option(dies: Path, tmp_path: Path) -> None:
    out = tmp_path / "half"
    run_cli("train", str(dies), "--out", str(out), "--epochs", "1", "--val-fraction", "0.5", *TINY, timeout=600)
    card = card_of(out)
    assert card["parity"]["samples"] == 120  # half of 40 per class, 6 classes
    assert card["training"]["config"]["val_fraction"] == 0.5
    bad = run_cli("train", str(dies), "--out", str(tmp_path / "x"), "--val-fraction", "1", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "argument --val-fraction: expected a number within 0.01..0.9, got 1" in bad.stderr
