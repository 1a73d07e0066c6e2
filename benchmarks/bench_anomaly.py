"""Anomaly detection on real DeepPCB boards of groups the model never saw, without and with the golden.

1. The model: ``--model`` (default the shipped ``models/pcb-anomaly-v1``), or with ``--train-steps N`` one trained
   here by ``inspect train-anomaly`` on the templates (defect-free boards) of the training groups only.
2. Without the golden: ``inspect eval-anomaly`` on the test boards of the other groups (their templates serve as
   good boards): image AUROC, per-defect recall at the card's threshold and at 1 false alarm per board.
3. With the golden: ``inspect pcb eval --anomaly MODEL --compare`` today's PCB model on the same pairs: the
   combined chain (golden difference + anomaly regions, named by the CNN) against today's, paired intervals.
4. With ``--maps NPZ`` (written by ``bench_anomalib.py`` in anomalib's own environment): anomalib's PatchCore
   maps of the same boards, scored by the same function as ours.

With ``--per-product DIR`` instead: the per-product protocol (``inspect eval-anomaly --per-product``) on every
group, a model fine-tuned from ``--model`` per group, its models and pictures in DIR; the record goes to
``anomaly-per-product-<date>-<host>.json``.

The record, with the machine and date, goes to ``benchmarks/results/anomaly-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspection.acquire.deeppcb import read_pair_list
from inspection.classify.timing import machine
from inspection.evaluate.anomaly import anomaly_report
from inspection.report.records import save_record

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_GROUPS = ("00041", "13000", "20085")
TEST_GROUPS = ("44000", "50600", "77000", "92000")


def _inspect(*args: str) -> dict[str, Any]:
    """One ``inspect`` command with --json, as a user runs it; its JSON answer."""
    process = subprocess.run([sys.executable, "-m", "inspection", *args, "--json"], capture_output=True, text=True,
                             check=False)
    if process.returncode != 0:
        raise SystemExit(f"inspect {' '.join(args)} failed:\n{process.stderr}")
    return json.loads(process.stdout)


def _patchcore(maps_file: Path, pairs_by_test: dict[str, Any]) -> dict[str, Any]:
    """anomalib's maps scored exactly as ours (its threshold, scaled to 0.5, and 1 false alarm per board)."""
    maps = np.load(maps_file)
    tested = [pairs_by_test[name] for name in maps["test_names"]]
    report = anomaly_report(list(maps["defect_maps"]), [p.boxes for p in tested], [p.kinds for p in tested],
                            list(maps["good_maps"]), stride_px=4, image_shape=(640, 640), threshold=0.5)
    settings = {key: maps[key].item() for key in ("ms_per_image", "fit_s", "backbone", "bank_images", "coreset",
                                                  "memory_bank", "threshold_raw", "torch")}
    return {**settings, **report}


def _per_product(args: argparse.Namespace) -> int:
    """The per-product protocol on every group of the data, recorded with the machine."""
    report = _inspect("eval-anomaly", str(args.model), str(args.data), "--list", "trainval.txt", "--per-product",
                      str(args.per_product), "--steps", str(args.steps))
    record = {"benchmark": "anomaly-per-product", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "init": str(args.model), **report}
    path = save_record(record, args.out, name="anomaly-per-product")
    for name, figures in [("pooled", report["pooled"]), *report["per_product"].items()]:
        target = figures["at_target"]
        trained = f", trained in {figures['training']['seconds']:.0f} s" if "training" in figures else ""
        print(f"{name}: image AUROC {figures['image_auroc']:.4f}; at <= {target['target_false_alarms_per_image']:g} "
              f"false alarms per board recall {target['recall']:.4f}, lowest type "
              f"{min(v for k, v in target.items() if k.startswith('recall_')):.3f}{trained}")
    print(f"record: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "deeppcb",
                        help="the DeepPCB folder (trainval.txt and the groups)")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "pcb-anomaly-v1",
                        help="anomaly model to evaluate (ignored with --train-steps)")
    parser.add_argument("--train-steps", type=int, help="train a model here on the training groups' templates")
    parser.add_argument("--pcb-model", default="pcb-patchnet-l-v7", help="today's PCB classifier (the baseline)")
    parser.add_argument("--maps", type=Path, help="anomalib PatchCore maps of the test boards (bench_anomalib.py)")
    parser.add_argument("--skip-golden", action="store_true", help="leave out the chain with the golden (step 3)")
    parser.add_argument("--per-product", type=Path, metavar="DIR",
                        help="the per-product protocol on every group instead, models and pictures in DIR")
    parser.add_argument("--steps", type=int, default=1000, help="with --per-product: fine-tuning steps per product")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.per_product:
        return _per_product(args)
    pairs = read_pair_list(args.data, "trainval.txt")
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if args.train_steps:
            good = Path(scratch) / "good"
            good.mkdir()
            for pair in pairs:
                if pair.group in TRAIN_GROUPS:
                    (good / pair.template_path.name).symlink_to(pair.template_path)
            model = Path(scratch) / "model"
            subprocess.run([sys.executable, "-m", "inspection", "train-anomaly", str(good), "--out", str(model),
                            "--steps", str(args.train_steps)], check=True)
        alone = _inspect("eval-anomaly", str(model), str(args.data), "--list", "trainval.txt", "--groups",
                         ",".join(TEST_GROUPS))
        lines = [line for line in (args.data / "trainval.txt").read_text().splitlines()
                 if line.split("/")[0].removeprefix("group") in TEST_GROUPS]
        test_list = Path(scratch) / "test-groups.txt"
        test_list.write_text("\n".join(lines) + "\n")
        with_golden = None if args.skip_golden else _inspect(
            "pcb", "eval", str(args.data), "--list", str(test_list), "--anomaly", str(model), "--compare",
            args.pcb_model, "--workers", "2")
        card = json.loads((model / "model.json").read_text())
    record = {
        "benchmark": "anomaly", "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "train_groups": list(TRAIN_GROUPS), "test_groups": list(TEST_GROUPS),
        "model": {"path": str(args.model) if not args.train_steps else "trained here", "arch": card["arch"],
                  "onnx_sha256": card["onnx_sha256"], "training": {k: v for k, v in card["training"].items()
                                                                  if k != "history"},
                  "anomaly": card["anomaly"], "flops_per_image": card["flops_per_image"]},
        "without_golden": alone, "with_golden": with_golden,
    }
    if args.maps:
        record["anomalib_patchcore"] = _patchcore(args.maps, {str(p.test_path): p for p in pairs})
    path = save_record(record, args.out, name="anomaly")
    card_point, target = alone["at_card_threshold"], alone["at_target"]
    print(f"without golden: image AUROC {alone['image_auroc']:.4f}; at the card's threshold recall "
          f"{card_point['recall']:.4f} at {card_point['false_alarms_per_image']:.2f} false alarms per board; at "
          f"{target['target_false_alarms_per_image']:g} per board recall {target['recall']:.4f}; "
          f"{alone['ms_per_image']:.1f} ms a board")
    if with_golden is not None:
        baseline = with_golden["baseline"]
        print(f"with golden: F-score {with_golden['f_score']:.4f} (today {baseline['f_score']:.4f}), recall "
              f"{with_golden['recall']:.4f} (today {baseline['recall']:.4f}); difference {baseline['difference']}")
    if args.maps:
        theirs = record["anomalib_patchcore"]
        at_theirs = theirs["at_card_threshold"]
        print(f"anomalib PatchCore: image AUROC {theirs['image_auroc']:.4f}; at its threshold recall "
              f"{at_theirs['recall']:.4f} at {at_theirs['false_alarms_per_image']:.2f} false alarms per board; "
              f"at 1 per board {theirs['at_target']['recall']:.4f}; "
              f"{theirs['ms_per_image']:.0f} ms a board")
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
