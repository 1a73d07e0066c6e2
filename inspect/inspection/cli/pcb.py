"""``inspect pcb inspect|eval``: PCB boards against their golden template."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from inspection.chain.chain import PartChain, build_chain
from inspection.cli.common import (
    MAX_SEED,
    UsageError,
    add_device_option,
    integer,
    interval_text,
    model_folder,
    number,
)
from inspection.recipe import AnomalyStageSettings, Recipe, load_recipe
from inspection.report import draw_boxes, save_png


def _pcb_recipe(args: argparse.Namespace, *, model: Path | None = None, precision: str | None = None,
                anomaly: Path | None = None) -> Recipe:
    """The PCB recipe with the command line's model, precision, device and min_score in its classify section,
    and ``anomaly`` (an anomaly model's folder) as its anomaly stage."""
    recipe = load_recipe(args.recipe)
    if recipe.kind != "pcb" or recipe.classify is None:
        raise UsageError(f"--recipe {args.recipe}: a {recipe.kind} recipe; inspect pcb takes a pcb recipe "
                         "(bundled: pcb-deeppcb)")
    if anomaly is not None:
        recipe = recipe.model_copy(update={"anomaly": AnomalyStageSettings(model=str(anomaly),
                                                                           device=args.device or "cpu")})
    return recipe.with_classify(model=None if model is None else str(model), precision=precision, device=args.device,
                                min_score=args.min_score)


def _cmd_pcb_inspect(args: argparse.Namespace) -> int:
    from inspection.chain.pairs import inspect_pair

    with build_chain(_pcb_recipe(args, model=args.model, precision=args.precision, anomaly=args.anomaly)) as chain:
        part = inspect_pair(chain, args.test, args.template)
    boxes = [d.box_xyxy_px or d.region.box_xyxy_px for d in part.detections]
    detections = [{"kind": d.kind, "score": round(d.score, 4), "box_xyxy_px": [round(v, 1) for v in box],
                   "area_px": d.region.area_px} for d, box in zip(part.detections, boxes, strict=True)]
    if args.out:
        save_png(args.out, draw_boxes(part.image, np.array(boxes, float).reshape(-1, 4),
                                      [f"{d.kind} {d.score:.2f}" for d in part.detections],
                                      title=f"{args.test.name}: {len(detections)} defects"))
    if part.aligned is None:
        raise UsageError(f"--recipe {args.recipe}: no golden, so the board is not registered to its template")
    fit = part.aligned.fit
    if args.json:
        print(json.dumps({"test": str(args.test), "template": str(args.template), "detections": detections,
                          "angle_deg": round(fit.angle_deg, 3), "shift_px": [round(v, 2) for v in fit.shift_px],
                          "registration_score": round(fit.score, 4), "candidates": len(part.regions)}))
        return 0
    print(f"{args.test}: {len(detections)} defects ({len(part.regions)} candidates; registered at "
          f"{fit.angle_deg:.2f} deg, shift {fit.shift_px[0]:.1f}, {fit.shift_px[1]:.1f} px, "
          f"correlation {fit.score:.3f})")
    for d in detections:
        x0, y0, x1, y1 = d["box_xyxy_px"]
        print(f"  {d['kind']:<10} {d['score']:.3f}  ({x0:.0f}, {y0:.0f}) - ({x1:.0f}, {y1:.0f})")
    return 0


def _cmd_pcb_eval(args: argparse.Namespace) -> int:
    from inspection.acquire.deeppcb import read_pair_list
    from inspection.chain.pairs import evaluate_pairs

    recipe = _pcb_recipe(args, model=args.model, precision=args.precision, anomaly=args.anomaly)
    assert recipe.classify is not None
    chain = build_chain(recipe, rank_hypotheses=True, threads=1)
    # The baseline is always FP32, so `--int8 --compare` the same model measures what quantisation costs.
    baseline: PartChain | None = None if args.compare is None else build_chain(
        _pcb_recipe(args, model=args.compare, precision="fp32"), rank_hypotheses=True, threads=1)
    pairs = read_pair_list(args.root, args.list)
    try:
        report = evaluate_pairs(chain, pairs, workers=args.workers, max_shift_px=args.shift_px,
                                max_angle_deg=args.rotate_deg, seed=args.seed, baseline=baseline)
    finally:
        chain.close()
        if baseline is not None:
            baseline.close()
    assert chain.classifier is not None
    report = {"model": recipe.classify.model, "onnx": str(chain.classifier.onnx_path), "list": str(args.list),
              **report}
    if baseline is not None:
        report["baseline"] = {"model": str(args.compare), **report["baseline"]}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['model']} on {report['pairs']} pairs of {args.list}"
          + (f" moved up to +-{args.shift_px} px, +-{args.rotate_deg} deg" if args.shift_px or args.rotate_deg else ""))
    interval = report["ci95"]
    print(f"precision {report['precision']:.4f} {interval_text(interval['precision'])}  "
          f"recall {report['recall']:.4f} {interval_text(interval['recall'])}  "
          f"F-score {report['f_score']:.4f} {interval_text(interval['f_score'])}")
    print(f"mAP {report['map']:.4f} {interval_text(interval['map'])} (reported detections alone "
          f"{report['map_at_min_score']:.4f})  {report['images_per_s']:.1f} pairs/s ({args.workers} workers); "
          "[low, high]: 95% bootstrap interval over the pairs")
    print("AP per class: " + ", ".join(f"{k} {v:.4f}" for k, v in report["per_class_ap"].items()))
    if baseline is not None:
        theirs = report["baseline"]
        difference, paired = theirs["difference"], theirs["difference_ci95"]
        print(f"against {args.compare}: F-score {theirs['f_score']:.4f}, mAP {theirs['map']:.4f} "
              f"({theirs['images_per_s']:.1f} pairs/s); difference " + ", ".join(
                  f"{name} {difference[name]:+.4f} {interval_text(paired[name], signed=True)}" for name in difference)
              + "; paired 95% intervals, same pairs")
    for failure in report["failed"]:
        print(f"  failed: {failure}", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    pcb = commands.add_parser("pcb", help="PCB inspection against a golden template (DeepPCB types)")
    pcb_commands = pcb.add_subparsers(dest="pcb_command", required=True, metavar="COMMAND")
    pcb_inspect = pcb_commands.add_parser("inspect", help="defect boxes with type and score for one board")
    pcb_inspect.add_argument("test", type=Path, help="image of the board under test")
    pcb_inspect.add_argument("--template", type=Path, required=True, help="image of the defect-free golden board")
    pcb_inspect.add_argument("--out", type=Path, metavar="PNG", help="draw the boxes on the test image")
    pcb_inspect.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    pcb_eval = pcb_commands.add_parser("eval", help="DeepPCB metric (IoU > 0.33, same type) on a pair list")
    pcb_eval.add_argument("root", type=Path, help="folder the list's paths are relative to")
    pcb_eval.add_argument("--list", type=Path, required=True, help="pairs, one 'IMAGE.jpg ANNOTATION.txt' a line")
    pcb_eval.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    pcb_eval.add_argument("--workers", type=integer(1, 256), default=2, help="pairs inspected in parallel (default 2)")
    pcb_eval.add_argument("--shift-px", type=number(0, 1000), default=0.0,
                          help="move each test image by up to this much")
    pcb_eval.add_argument("--rotate-deg", type=number(0, 180), default=0.0,
                          help="turn each test image by up to this much")
    pcb_eval.add_argument("--seed", type=integer(0, MAX_SEED), default=0, help="seed of the moves (default 0)")
    pcb_eval.add_argument("--compare", type=model_folder, metavar="MODEL", help="also evaluate this model on the same "
                          "(equally moved) pairs: the difference and its paired 95%% interval")
    for sub in (pcb_inspect, pcb_eval):
        sub.add_argument("--recipe", default="pcb-deeppcb", metavar="FILE",
                         help="pcb recipe YAML or the bundled pcb-deeppcb (default): its chain and classify section")
        sub.add_argument("--model", type=model_folder, help="PCB model folder (default: the recipe's classify.model)")
        sub.add_argument("--anomaly", type=model_folder, metavar="MODEL",
                         help="also run this anomaly model (inspect train-anomaly): its regions join the candidates "
                         "the CNN names, and are reported as 'anomaly' where no class fits (--compare runs without)")
        sub.add_argument("--min-score", type=number(0, 1),
                         help="report defects at least this likely (default: the recipe's, "
                         "else the card's)")
        add_device_option(sub)
        precision = sub.add_mutually_exclusive_group()
        precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                               help="classify with the model's INT8 variant (inspect export MODEL --int8 --calib "
                               "CROPS); default: the recipe's classify.precision")
        precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                               help="classify with the model's FP16 variant (inspect export MODEL --fp16 --eval "
                               "CROPS), for GPUs")
        precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                               help="classify with the model's FP32 graph")
        sub.set_defaults(handler=_cmd_pcb_inspect if sub is pcb_inspect else _cmd_pcb_eval)
