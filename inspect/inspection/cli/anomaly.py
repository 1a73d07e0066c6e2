"""``inspect train-anomaly``, ``inspect eval-anomaly``: anomaly models trained on good parts only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from inspection.cli.common import MAX_SEED, UsageError, integer, interval_text, model_folder, number
from inspection.cli.models import load_train_package

if TYPE_CHECKING:
    from inspection.acquire.deeppcb import PcbPair


def _cmd_train_anomaly(args: argparse.Namespace) -> int:
    load_train_package()  # a usage error naming the [train] extra where torch is missing
    from inspection.train.anomaly import train_anomaly

    card = train_anomaly(args.good_folder, args.out, steps=args.steps, batch=args.batch,
                         held_out_fraction=args.held_out, false_alarms_per_image=args.false_alarms, seed=args.seed,
                         threads=args.threads, device=args.device, init=args.init, learning_rate=args.learning_rate)
    settings = card.anomaly
    assert settings is not None
    print(f"inspect: {args.out}/model.onnx + model.json: {card.arch}, {card.input.width}x{card.input.height} px, "
          f"trained on {card.training['fitted_images']} good images in {card.training['seconds']:.0f} s",
          file=sys.stderr)
    print(f"  threshold {settings.threshold:.3f}: {settings.val_false_alarms_per_image:.3f} false alarms per held-out "
          f"good image (target {settings.target_false_alarms_per_image:g}, {settings.val_images} images)",
          file=sys.stderr)
    print(f"  parity with torch on {card.parity.samples} images: max |d score| {card.parity.max_abs_diff:.2e}",
          file=sys.stderr)
    return 0


def _cmd_eval_anomaly(args: argparse.Namespace) -> int:
    from inspection.acquire.deeppcb import read_pair_list
    from inspection.chain.chain import build_chain
    from inspection.chain.pairs import evaluate_anomaly_pairs
    from inspection.recipe import AnomalyStageSettings, load_recipe

    pairs = read_pair_list(args.root, args.list)
    if args.groups:
        wanted = set(args.groups.split(","))
        unknown = wanted - {pair.group for pair in pairs}
        if unknown:
            raise UsageError(f"--groups {', '.join(sorted(unknown))}: not in {args.list} (its groups: "
                             f"{', '.join(sorted({pair.group for pair in pairs}))})")
        pairs = [pair for pair in pairs if pair.group in wanted]
    if args.per_product is not None:
        return _per_product(args, pairs)
    # The chain a station without a golden runs (the bundled pcb-anomaly recipe), with this model.
    recipe = load_recipe("pcb-anomaly").model_copy(update={"anomaly": AnomalyStageSettings(
        model=str(args.model), device=args.device or "cpu", max_batch=8)})
    with build_chain(recipe) as chain:
        report = evaluate_anomaly_pairs(chain, pairs, workers=args.workers, threshold=args.threshold,
                                        target_false_alarms_per_image=args.target_false_alarms,
                                        pictures=args.pictures)
    report = {"model": str(args.model), "list": str(args.list), **report}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.model} on {report['defective_images']} boards of groups {', '.join(report['groups'])} (their "
          f"templates as good boards), without the templates at test time; {report['ms_per_image']:.1f} ms a board")
    print(f"image AUROC {report['image_auroc']:.4f}; against the annotated boxes: pixel AUROC "
          f"{report['pixel_auroc_boxes']:.4f}, PRO to a false-positive rate of 0.3 {report['pro_auc_boxes']:.4f}")
    for name, title in (("at_card_threshold", "card's threshold"), ("at_target", "target false alarms")):
        point, interval = report[name], report["ci95"][name]
        print(f"{title} {point['threshold']:.3f}: recall {point['recall']:.4f} {interval_text(interval['recall'])}, "
              f"{point['false_alarms_per_image']:.2f} false alarms per board "
              f"{interval_text(interval['false_alarms_per_image'])}, {point['false_alarms_per_good_image']:.2f} per "
              "good board")
        print("  recall per defect: " + ", ".join(f"{kind} {point[f'recall_{kind}']:.3f}"
                                                  for kind in report["defects"]))
    print("[low, high]: 95% bootstrap interval over the boards")
    return 0


def _per_product(args: argparse.Namespace, pairs: list[PcbPair]) -> int:
    """``eval-anomaly --per-product``: a model per group from its good boards, judged on its other boards."""
    if args.threshold is not None:
        raise UsageError("--threshold: with --per-product every product's model runs at its own card's threshold")
    load_train_package()
    from inspection.train.per_product import evaluate_per_product

    report = evaluate_per_product(pairs, args.per_product, init=args.model, seed=args.seed,
                                  max_good_images=args.good_images, steps=args.steps, workers=args.workers,
                                  target_false_alarms_per_image=args.target_false_alarms,
                                  device="cuda" if args.device in ("cuda", "trt") else "cpu")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"per product: a model fine-tuned from {args.model} ({args.steps} steps) on at most {args.good_images} "
          f"good boards of each group, judged on the group's other boards; {args.per_product}/report.json")
    rows = [("pooled", report["pooled"]), *report["per_product"].items()]
    for name, figures in rows:
        card, target, intervals = figures["at_card_threshold"], figures["at_target"], figures["ci95"]
        trained = (f"trained on {figures['training']['good_images']} good boards in "
                   f"{figures['training']['seconds']:.0f} s; " if name != "pooled" else "")
        print(f"{name}: {trained}{figures['defective_images']} test boards; image AUROC {figures['image_auroc']:.4f} "
              f"{interval_text(intervals['image_auroc'])}, PRO {figures['pro_auc_boxes']:.3f}")
        print(f"  card's threshold: recall {card['recall']:.4f} "
              f"{interval_text(intervals['at_card_threshold']['recall'])}, {card['false_alarms_per_image']:.2f} "
              f"false alarms per board, {card['false_alarms_per_good_image']:.2f} per good board")
        print(f"  <= {args.target_false_alarms:g} false alarms per board: recall {target['recall']:.4f} "
              f"{interval_text(intervals['at_target']['recall'])}; per defect: "
              + ", ".join(f"{kind} {target[f'recall_{kind}']:.3f}" for kind in figures["defects"]))
    print("[low, high]: 95% bootstrap interval over the boards; pooled AUROC and PRO: the mean over the groups")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    train = commands.add_parser("train-anomaly", help="train an anomaly model from a folder of good images only")
    train.add_argument("good_folder", type=Path, help="images of good parts, one size, grey")
    train.add_argument("--out", type=Path, required=True, help="model folder to write (model.onnx, model.json)")
    train.add_argument("--steps", type=integer(1, 10_000_000), default=4000,
                       help="optimiser steps (default 4000; 1,000 from --init took 6 min on a 2-core AMD EPYC)")
    train.add_argument("--batch", type=integer(1, 4096), default=24, help="crops per step")
    train.add_argument("--held-out", type=number(0.01, 0.9), default=0.15,
                       help="share of the good images kept out to choose the threshold and check parity")
    train.add_argument("--false-alarms", type=number(0, 1000), default=1.0,
                       help="the threshold allows this many false alarms per held-out good image")
    train.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                       help="seeds the split, the crops and the synthetic defects (default 0)")
    train.add_argument("--threads", type=integer(0, 1024), default=0, help="torch CPU threads (0: one per core)")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    train.add_argument("--init", type=model_folder, metavar="MODEL",
                       help="fine-tune from this anomaly model (a product's model from the generic pcb-anomaly-v1: "
                       "1,000 steps from at most 50 good boards)")
    train.add_argument("--learning-rate", type=number(1e-7, 1.0),
                       help="peak learning rate (default 2e-3 from scratch, 5e-4 with --init)")
    train.set_defaults(handler=_cmd_train_anomaly)

    evaluate = commands.add_parser("eval-anomaly", help="an anomaly model on DeepPCB pairs, without the templates")
    evaluate.add_argument("model", type=model_folder,
                          help="anomaly model folder (inspect train-anomaly); with --per-product, the model each "
                          "product's is fine-tuned from")
    evaluate.add_argument("root", type=Path, help="folder the list's paths are relative to")
    evaluate.add_argument("--list", type=Path, required=True, help="pairs, one 'IMAGE.jpg ANNOTATION.txt' a line")
    evaluate.add_argument("--groups", help="only these board groups, comma-separated (e.g. 44000,50600)")
    evaluate.add_argument("--threshold", type=number(0, 1e12), help="map threshold (default: the card's)")
    evaluate.add_argument("--target-false-alarms", type=number(0, 1000), default=1.0,
                          help="the second operating point: this many false alarms per board")
    evaluate.add_argument("--workers", type=integer(1, 256), default=2, help="boards read and scored in parallel")
    evaluate.add_argument("--device", choices=("cpu", "cuda", "trt", "auto"), default="cpu",
                          help="where the anomaly model runs")
    evaluate.add_argument("--pictures", type=Path, metavar="DIR",
                          help="draw the first 6 boards with their score maps, annotated boxes and regions")
    evaluate.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    evaluate.add_argument("--per-product", type=Path, metavar="DIR",
                          help="the per-product protocol, models and report written to DIR: per group, a model "
                          "trained on the templates of half its pairs (by --seed), judged on the other half")
    evaluate.add_argument("--good-images", type=integer(2, 100_000), default=50,
                          help="with --per-product: the most good boards a product's model is trained from")
    evaluate.add_argument("--steps", type=integer(1, 10_000_000), default=1000,
                          help="with --per-product: optimiser steps per product")
    evaluate.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                          help="with --per-product: seeds the split and the training")
    evaluate.set_defaults(handler=_cmd_eval_anomaly)
