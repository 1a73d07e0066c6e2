"""Anomaly detection from good images only: synthetic defects, the score map's regions, the metrics, training
and export with its card, the chain without and with a golden, bad input; and the shipped model on real
DeepPCB boards of groups it never saw (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.acquire.good import GoodFolderError, read_good_folder
from inspection.chain.chain import InspectedPart, build_chain
from inspection.classify.anomaly import AnomalyInputError, AnomalyModel, anomaly_regions
from inspection.evaluate.anomaly import anomaly_report, auroc
from inspection.recipe import RecipeError, parse_recipe
from inspection.sim.defects import draw_defects
from inspection.sim.frames import golden_image
from inspection.types import Frame, Verdict
from tests.conftest import REPO_ROOT, run_cli

DEEPPCB = REPO_ROOT.parent / "shared" / "data" / "deeppcb"
needs_deeppcb = pytest.mark.skipif(not (DEEPPCB / "trainval.txt").is_file(), reason=f"no DeepPCB data at {DEEPPCB}")
SHIPPED = REPO_ROOT / "models" / "pcb-anomaly-v1"


def test_synthetic_defects_change_exactly_their_mask() -> None:
    binary = (golden_image("pcb", size_px=128) > 127).astype(np.uint8)
    drawn, changed = draw_defects(binary, 3, rng=np.random.default_rng(4))
    assert changed.sum() >= 6 and set(np.unique(drawn)) <= {0, 1}
    assert np.array_equal(drawn != binary, changed)
    again, _ = draw_defects(binary, 3, rng=np.random.default_rng(4))
    assert np.array_equal(again, drawn)
    unchanged, none = draw_defects(binary, 0, rng=np.random.default_rng(4))
    assert np.array_equal(unchanged, binary) and not none.any()


def test_ragged_edges_flip_only_edge_pixels_and_spare_the_defects() -> None:
    from inspection.sim.defects import roughen_edges

    binary = (golden_image("pcb", size_px=128) > 127).astype(np.uint8)
    drawn, changed = draw_defects(binary, 3, rng=np.random.default_rng(2))
    rough = roughen_edges(drawn, flip_fraction=0.3, rng=np.random.default_rng(0), keep=changed)
    flipped = rough != drawn
    band = cv2.morphologyEx(drawn, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    assert flipped.any() and not (flipped & ~band).any() and not (flipped & changed).any()
    assert 0.2 < flipped.sum() / (band & ~changed).sum() < 0.4
    assert np.array_equal(roughen_edges(drawn, flip_fraction=0.0, rng=np.random.default_rng(0)), drawn)


def test_a_missing_stretch_of_track_follows_the_track() -> None:
    from inspection.sim.defects import _segment

    binary = np.zeros((64, 64), np.uint8)
    binary[:, 30:35] = 1  # a vertical track 5 px wide
    rng = np.random.default_rng(0)
    for _ in range(200):
        cut = _segment(binary, rng)
        if (cut != binary).any() and binary[cut != binary].all():  # drawn on the track: a stretch of it is gone
            rows = np.nonzero((cut == 0)[:, 30:35].all(axis=1) & (binary[:, 30:35] == 1).all(axis=1))[0]
            assert len(rows) >= 8 and np.ptp(rows) + 1 == len(rows)  # the whole width, a run of rows
            return
    pytest.fail("no stretch of the track was drawn in 200 tries")


def test_regions_are_cells_scaled_to_image_pixels() -> None:
    score_map = np.zeros((10, 12), np.float32)
    score_map[2:4, 3:6] = [[0.6, 0.9, 0.6], [0.6, 0.7, 0.2]]
    score_map[9, 11] = 0.8  # a region at the corner, clipped to the image
    regions = anomaly_regions(score_map, threshold=0.5, stride_px=4, image_shape=(38, 46), pixel_size_um=2.0)
    assert [r.box_xyxy_px for r in regions] == [(12, 8, 24, 16), (44, 36, 46, 38)]
    assert [r.area_px for r in regions] == [5 * 16, 16]
    assert regions[0].anomaly_score == pytest.approx(0.9) and regions[0].area_um2 == 5 * 16 * 4.0


def test_auroc_is_the_share_of_positive_negative_pairs_ranked_right() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    positive = rng.random(40) < 0.4
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in product(scores[positive], scores[~positive])]
    assert auroc(scores, positive) == pytest.approx(np.mean(pairs))
    assert np.isnan(auroc(scores, np.ones(40, bool)))


def test_report_counts_found_defects_and_false_alarms() -> None:
    stride = 4
    found_map, missed_map = np.zeros((16, 16)), np.zeros((16, 16))
    found_map[2, 2] = 0.9   # inside the first image's box: found
    found_map[12, 12] = 0.8  # far from any box: a false alarm
    boxes = [np.array([[4.0, 4.0, 16.0, 16.0]]), np.array([[40.0, 40.0, 50.0, 50.0]])]
    good = [np.zeros((16, 16)), np.full((16, 16), 0.1)]
    good[1][5, 5] = 0.95
    report = anomaly_report([found_map, missed_map], boxes, [("open",), ("spur",)], good, stride_px=stride,
                            image_shape=(64, 64), threshold=0.5, resamples=50)
    card = report["at_card_threshold"]
    assert card["recall_open"] == 1.0 and card["recall_spur"] == 0.0 and card["recall"] == 0.5
    assert card["false_alarms_per_image"] == 0.5 and card["false_alarms_per_good_image"] == 0.5
    assert report["image_auroc"] == pytest.approx(1.5 / 4)  # 0.9 beats 0, loses to 0.95; 0 ties 0, loses too
    assert report["at_target"]["false_alarms_per_image"] <= 1.0
    assert report["ci95"]["at_card_threshold"]["recall"][0] <= 0.5 <= report["ci95"]["at_card_threshold"]["recall"][1]


def _good_folder(folder: Path, *, count: int = 6, size_px: int = 96) -> Path:
    folder.mkdir()
    board = golden_image("pcb", size_px=256)
    for index in range(count):
        top, left = 16 * index, 20 * index
        cv2.imwrite(str(folder / f"good_{index}.png"), board[top : top + size_px, left : left + size_px])
    return folder


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained model: what the tests check is the contract around it, not its accuracy."""
    pytest.importorskip("torch")
    from inspection.train.anomaly import train_anomaly

    root = tmp_path_factory.mktemp("anomaly")
    train_anomaly(_good_folder(root / "good"), root / "model", steps=15, batch=4, held_out_fraction=0.34)
    return root / "model"


def test_training_writes_a_model_the_line_loads(small_model: Path) -> None:
    model = AnomalyModel(small_model)
    card = model.card
    assert card.task == "anomaly" and card.input.channels == 1 and (card.input.height, card.input.width) == (96, 96)
    assert card.parity.max_abs_diff <= card.parity.tolerance and card.parity.samples == 2
    settings = model.settings
    assert settings.map_stride_px == 4 and 0 < settings.threshold < 1
    assert settings.val_false_alarms_per_image <= settings.target_false_alarms_per_image or settings.threshold > 0.99
    assert len(card.training["held_out_images"]) == 2 and card.flops_per_image and card.flops_per_image > 1e6
    assert (small_model / "training.png").is_file()
    image = golden_image("pcb", size_px=96)
    maps = model.score_maps(model.prepare(image, layout="mono", bit_depth=8, source="board")[None])
    assert maps.shape == (1, 1, 24, 24) and maps.min() >= 0.0 and maps.max() <= 1.0


def test_images_unlike_the_training_ones_are_refused_by_name(small_model: Path) -> None:
    model = AnomalyModel(small_model)
    with pytest.raises(AnomalyInputError, match=r"board\.png: 128x96 px, but .* trained on 96x96 px"):
        model.prepare(np.zeros((96, 128), np.uint8), layout="mono", bit_depth=8, source="board.png")
    colour = np.zeros((96, 96, 3), np.uint8)
    colour[..., 2] = 255
    with pytest.raises(AnomalyInputError, match=r"board\.png: a colour image"):
        model.prepare(colour, layout="bgr", bit_depth=8, source="board.png")
    grey_as_rgb = np.repeat(golden_image("pcb", size_px=96)[..., None], 3, axis=2)  # some scanners write these
    assert model.prepare(grey_as_rgb, layout="bgr", bit_depth=8, source="board.png").shape == (1, 96, 96)


def test_bad_good_folders_are_refused_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GoodFolderError, match="empty: no images"):
        read_good_folder(empty)
    mixed = _good_folder(tmp_path / "mixed", count=2)
    cv2.imwrite(str(mixed / "good_9.png"), np.zeros((64, 80), np.uint8))
    with pytest.raises(GoodFolderError, match=r"good_9\.png: 80x64 px, 8-bit, but good_0\.png is 96x96 px"):
        read_good_folder(mixed)
    colour = _good_folder(tmp_path / "colour", count=2)
    cv2.imwrite(str(colour / "good_5.png"), np.dstack([np.zeros((96, 96), np.uint8)] * 2 + [np.ones((96, 96),
                                                                                                   np.uint8)]))
    with pytest.raises(GoodFolderError, match=r"good_5\.png: a colour image"):
        read_good_folder(colour)
    process = run_cli("train-anomaly", str(empty), "--out", str(tmp_path / "m"), check=False)
    assert process.returncode == 2 and "empty: no images" in process.stderr


def _recipe(model: Path, **sections: object) -> dict:
    return {"name": "board", "kind": "pcb", "pixel_size_um": 20.0, "anomaly": {"model": str(model)}, **sections}


def test_chain_without_a_golden_reports_anomalies(small_model: Path) -> None:
    recipe = parse_recipe(_recipe(small_model, grade={"review_area_um2": 0, "fail_area_um2": 1e6}), source="t")
    image = golden_image("pcb", size_px=96)
    with build_chain(recipe) as chain:
        part = chain(Frame(image, "mono", 8, "board", 0, 0.0))
        wrong = chain(Frame(np.zeros((64, 64), np.uint8), "mono", 8, "small", 1, 0.0))
    assert isinstance(part, InspectedPart) and part.anomaly_map is not None and part.anomaly_map.shape == (24, 24)
    assert part.verdict in (Verdict.PASS, Verdict.REVIEW) and "anomaly" in part.latency_ms
    assert all(d.kind == "anomaly" and d.region.anomaly_score is not None for d in part.detections)
    assert wrong.verdict == Verdict.ERROR and "small: 64x64 px" in wrong.reason


def test_recipes_that_cannot_work_are_refused(small_model: Path) -> None:
    with pytest.raises(RecipeError, match=r"without reference .* takes no classify section"):
        parse_recipe(_recipe(small_model, grade={"review_area_um2": 0, "fail_area_um2": 1},
                             classify={"model": "pcb-patchnet-l-v7"}), source="t")
    with pytest.raises(RecipeError, match="needs grade"):
        parse_recipe(_recipe(small_model), source="t")
    threshold = AnomalyModel(small_model).settings.threshold
    low = _recipe(small_model, grade={"review_area_um2": 0, "fail_area_um2": 1})
    low["anomaly"]["threshold"] = threshold / 2
    with pytest.raises(RecipeError, match=r"anomaly\.threshold .* below the card's"):
        build_chain(parse_recipe(low, source="t"))


@pytest.mark.slow
@needs_deeppcb
def test_shipped_model_finds_defects_on_boards_of_unseen_groups(tmp_path: Path) -> None:
    """The shipped model was trained on templates of groups 00041, 13000 and 20085 only."""
    process = run_cli("eval-anomaly", str(SHIPPED), str(DEEPPCB), "--list", "trainval.txt", "--groups", "50600",
                      "--json", timeout=300)
    import json

    report = json.loads(process.stdout)
    assert report["defective_images"] == 50 and report["groups"] == ["50600"]
    assert report["image_auroc"] > 0.9 and report["at_card_threshold"]["recall"] > 0.85


@needs_deeppcb
def test_with_the_golden_todays_detections_stand_and_anomalies_only_add() -> None:
    folder = DEEPPCB / "group92000" / "92000"
    test, template = folder / "92000003_test.jpg", folder / "92000003_temp.jpg"
    import json

    def detections(*extra: str) -> list[dict]:
        process = run_cli("pcb", "inspect", str(test), "--template", str(template), "--json", *extra, timeout=300)
        return json.loads(process.stdout)["detections"]

    today, combined = detections(), detections("--anomaly", str(SHIPPED))
    assert today and all(d in combined for d in today)
    assert all(d["kind"] != "anomaly" or d["score"] >= 0.9 for d in combined)


def test_anomalies_join_without_touching_the_difference_detections() -> None:
    from inspection.classify.detect import Hypotheses, NamedCandidates, join_anomalies
    from inspection.types import Detection, Region

    def region(box: tuple[int, int, int, int], score: float | None) -> Region:
        return Region(1, 16, 16.0, box, (box[0] + 2.0, box[1] + 2.0), 0.0, 0.0, anomaly_score=score)

    today = Detection("open", 0.9, region((0, 0, 10, 10), None), box_xyxy_px=(0.0, 0.0, 10.0, 10.0))
    named = NamedCandidates((today,), Hypotheses(np.array([[0.0, 0, 10, 10]]), ("open",), np.array([0.9])))
    regions = [region((5, 5, 15, 15), 0.99), region((40, 40, 50, 50), 0.98), region((80, 80, 90, 90), 0.97)]
    overlapping = Detection("short", 0.95, regions[0], box_xyxy_px=(5.0, 5.0, 15.0, 15.0))
    elsewhere = Detection("spur", 0.8, regions[1], box_xyxy_px=(40.0, 40.0, 50.0, 50.0))
    anomalous = NamedCandidates((overlapping, elsewhere), None)
    # classes: good, open, short, spur; the third region fits no class (no probability reaches 0.5)
    probabilities = np.array([[0.0, 0.0, 0.95, 0.05], [0.1, 0.0, 0.1, 0.8], [0.3, 0.3, 0.2, 0.2]])
    joined = join_anomalies(named, anomalous, regions, probabilities, min_score=0.5)
    assert [d.kind for d in joined.detections] == ["open", "spur", "anomaly"]
    assert joined.detections[2].score == pytest.approx(0.97)
    assert joined.hypotheses is not None and joined.hypotheses.kinds == ("open", "spur", "anomaly")


@needs_deeppcb
def test_line_loop_runs_the_anomaly_recipe_on_a_folder_camera(tmp_path: Path) -> None:
    import shutil

    boards = tmp_path / "boards"
    boards.mkdir()
    for name in ("92000000", "92000001"):
        shutil.copy(DEEPPCB / "group92000" / "92000" / f"{name}_test.jpg", boards)
    shutil.copy(DEEPPCB / "group92000" / "92000" / "92000000_temp.jpg", boards / "92000000_good.jpg")
    db = tmp_path / "line.db"
    run_cli("run", "--recipe", "pcb-anomaly", "--camera", f"folder:{boards}", "--frames", "3", "--db", str(db))
    rows = {Path(r["path"]).name: r for r in map(json.loads, run_cli("results", "--db", str(db), "--format",
                                                                     "json").stdout.splitlines())}
    assert len(rows) == 3 and all(r["verdict"] != "error" for r in rows.values())
    defective = [rows[f"{name}_test.jpg"] for name in ("92000000", "92000001")]
    assert all(r["n_detections"] >= 3 and {d["kind"] for d in r["detections"]} == {"anomaly"} for r in defective)
    assert rows["92000000_good.jpg"]["n_detections"] < min(r["n_detections"] for r in defective)


def test_a_region_spread_over_the_board_finds_nothing() -> None:
    everywhere = np.full((16, 16), 0.9)  # one region covering the board overlaps every box, localising none
    report = anomaly_report([everywhere], [np.array([[4.0, 4.0, 16.0, 16.0]])], [("open",)], [], stride_px=4,
                            image_shape=(64, 64), threshold=0.5, resamples=0)
    assert report["at_card_threshold"]["recall"] == 0.0
    assert report["at_card_threshold"]["false_alarms_per_image"] == 1.0


def test_pro_is_one_for_a_perfect_map_and_weighs_regions_equally() -> None:
    from inspection.evaluate.anomaly import pro_auc

    outside = np.random.default_rng(0).random(1000)  # every false-positive rate is reached
    assert pro_auc([np.full(4, 2.0), np.full(100, 2.0)], outside) == pytest.approx(1.0, abs=0.01)
    # the small region scores above every outside cell, the large one below all: half the overlap up to 0.3
    assert pro_auc([np.full(4, 2.0), np.full(100, -1.0)], outside) == pytest.approx(0.5, abs=0.01)
    assert np.isnan(pro_auc([], outside))


def _generated_groups(root: Path, counts: dict[str, int], *, size_px: int = 96) -> Path:
    """DeepPCB's layout with generated boards: per group, pairs of a good crop of one design at a new position
    and the same crop with drawn defects, annotated with the defects' boxes. Returns the pair list."""
    board = golden_image("pcb", size_px=256)
    lines = []
    for group, count in counts.items():
        (root / f"group{group}" / group).mkdir(parents=True)
        (root / f"group{group}" / f"{group}_not").mkdir()
        for index in range(count):
            top, left = 11 * index % 150, 17 * index % 150
            template = board[top : top + size_px, left : left + size_px]
            drawn, changed = draw_defects((template > 127).astype(np.uint8), 2, rng=np.random.default_rng(index))
            name = f"{group}{index:03d}"
            cv2.imwrite(str(root / f"group{group}" / group / f"{name}_temp.jpg"), template)
            cv2.imwrite(str(root / f"group{group}" / group / f"{name}_test.jpg"), drawn.astype(np.uint8) * 255)
            count_regions, _, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8))
            boxes = [f"{x} {y} {x + w} {y + h} 1" for x, y, w, h, _ in stats[1:count_regions]]
            (root / f"group{group}" / f"{group}_not" / f"{name}.txt").write_text("\n".join(boxes) + "\n")
            lines.append(f"group{group}/{group}/{name}.jpg group{group}/{group}_not/{name}.txt")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def test_per_product_split_halves_each_group_by_seed(tmp_path: Path) -> None:
    from inspection.acquire.deeppcb import PairListError, per_product_split, read_pair_list

    pairs = read_pair_list(tmp_path, _generated_groups(tmp_path, {"101": 9, "202": 6}))
    split = per_product_split(pairs, seed=3, max_good_images=3)
    assert list(split) == ["101", "202"]
    for group, (good, test) in split.items():
        mine = [p.name for p in pairs if p.group == group]
        assert len(good) == 3 and len(test) == len(mine) - len(mine) // 2
        assert not {p.name for p in good} & {p.name for p in test}  # test boards show positions never trained on
        assert [p.name for p in test] == [n for n in mine if n in {p.name for p in test}]  # in list order
    assert per_product_split(pairs, seed=3, max_good_images=3) == split
    assert per_product_split(pairs, seed=4, max_good_images=3)["101"][0] != split["101"][0]
    with pytest.raises(PairListError, match=r"group 202: 3 pairs; the per-product split needs at least 4"):
        per_product_split([p for p in pairs if p.group == "202"][:3])


def test_pooled_report_counts_every_board_at_its_own_models_threshold() -> None:
    from inspection.evaluate.anomaly import ScoredBoards, pooled_anomaly_report

    def product(score: float, threshold: float) -> ScoredBoards:
        found = np.zeros((16, 16))
        found[2, 2] = score  # inside the box
        good = np.zeros((16, 16))
        good[9, 9] = 0.6
        return ScoredBoards([found], [np.array([[4.0, 4.0, 16.0, 16.0]])], [("open",)], [good], stride_px=4,
                            image_shape=(64, 64), threshold=threshold)

    # the same defect score 0.7: found by the model whose card says 0.5, missed by the one whose card says 0.8
    report = pooled_anomaly_report([product(0.7, 0.5), product(0.7, 0.8)], names=["a", "b"], resamples=20)
    assert report["per_product"]["a"]["at_card_threshold"]["recall"] == 1.0
    assert report["per_product"]["b"]["at_card_threshold"]["recall"] == 0.0
    assert report["per_product"]["b"]["at_card_threshold"]["threshold"] == 0.8
    pooled = report["pooled"]
    assert pooled["at_card_threshold"]["recall"] == 0.5 and pooled["defective_images"] == 2
    assert pooled["at_card_threshold"]["false_alarms_per_good_image"] == 0.5  # 0.6 is an alarm at 0.5 only
    assert pooled["image_auroc"] == 1.0 and report["per_product"]["a"]["image_auroc"] == 1.0
    assert pooled["ci95"]["at_card_threshold"]["recall"][0] <= 0.5 <= pooled["ci95"]["at_card_threshold"]["recall"][1]


def test_a_product_model_fine_tuned_from_another(small_model: Path, tmp_path: Path) -> None:
    from inspection.train.anomaly import TrainingDataError, train_anomaly

    card = train_anomaly(_good_folder(tmp_path / "good"), tmp_path / "product", steps=4, batch=4,
                         held_out_fraction=0.34, init=small_model)
    assert card.training["init"]["onnx_sha256"] == AnomalyModel(small_model).card.onnx_sha256
    assert card.training["learning_rate"] == 5e-4 and card.training["steps"] == 4
    classifier = REPO_ROOT / "models" / "pcb-patchnet-l-v7"
    with pytest.raises(TrainingDataError, match=r"pcb-patchnet-l-v7: a classification model .*--init takes an anomaly"):
        train_anomaly(tmp_path / "good", tmp_path / "other", steps=2, init=classifier)
    assert not (tmp_path / "other" / "model.onnx").exists()


def test_eval_per_product_trains_a_model_per_group_and_resumes(small_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    listing = _generated_groups(tmp_path / "data", {"101": 8, "202": 6})
    out = tmp_path / "per-product"
    arguments = ("eval-anomaly", str(small_model), str(tmp_path / "data"), "--list", str(listing), "--per-product",
                 str(out), "--good-images", "3", "--steps", "3", "--json")
    report = json.loads(run_cli(*arguments).stdout)
    assert set(report["per_product"]) == {"101", "202"} and report["protocol"]["steps"] == 3
    for group, test_boards in (("101", 4), ("202", 3)):
        figures = report["per_product"][group]
        assert figures["defective_images"] == figures["good_images"] == test_boards
        assert figures["training"]["fitted_images"] + figures["training"]["held_out_images"] == 3
        assert 0.0 <= figures["image_auroc"] <= 1.0 and "recall" in figures["at_target"]
        assert len(list((out / group / "good").iterdir())) == 3 and (out / group / "model" / "training.png").is_file()
    assert report["pooled"]["defective_images"] == 7
    assert (out / "per-product.png").is_file() and json.loads((out / "report.json").read_text()) == report
    from inspection.acquire.deeppcb import read_pair_list
    from inspection.train.per_product import evaluate_per_product

    trained = {g: (out / g / "model" / "model.json").stat().st_mtime_ns for g in ("101", "202")}
    pairs = read_pair_list(tmp_path / "data", listing)
    again = evaluate_per_product(pairs, out, init=small_model, max_good_images=3, steps=3, resamples=10)
    assert {g: (out / g / "model" / "model.json").stat().st_mtime_ns for g in trained} == trained  # reused
    assert again["per_product"]["101"]["model_sha256"] == report["per_product"]["101"]["model_sha256"]
    evaluate_per_product([p for p in pairs if p.group == "202"], out, init=small_model, max_good_images=3, steps=4,
                         resamples=10)  # other settings: trained again
    assert (out / "202" / "model" / "model.json").stat().st_mtime_ns != trained["202"]


def test_line_runs_a_products_model_in_the_anomaly_recipe(small_model: Path, tmp_path: Path) -> None:
    boards = _good_folder(tmp_path / "boards", count=2)  # 96 x 96: the bundled model (640 x 640) would refuse them
    db = tmp_path / "line.db"
    run_cli("run", "--recipe", "pcb-anomaly", "--anomaly", str(small_model), "--camera", f"folder:{boards}",
            "--frames", "2", "--db", str(db))
    rows = list(map(json.loads, run_cli("results", "--db", str(db), "--format", "json").stdout.splitlines()))
    assert len(rows) == 2 and all(r["verdict"] != "error" for r in rows)
    refused = run_cli("run", "--recipe", "wafer-die", "--anomaly", str(small_model), "--frames", "1", "--db",
                      str(db), check=False)
    assert refused.returncode == 2 and "has no anomaly section; give one with it" in refused.stderr
