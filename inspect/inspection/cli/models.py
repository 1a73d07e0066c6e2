"""``inspect train``, ``inspect export``, ``inspect eval``: defect classifiers."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from inspection.classify import Classifier, ModelCard
from inspection.classify.card import DetectorSettings, Fp16Variant, Int8Variant
from inspection.cli.common import (
    MAX_SEED,
    UsageError,
    add_device_option,
    integer,
    interval_text,
    model_folder,
    number,
    print_baseline,
)
from inspection.evaluate.folders import evaluate_folder
from inspection.model_paths import installed_models, search_folders
from inspection.recipe import load_recipe
from inspection.train.choices import ARCHITECTURES, CLASS_WEIGHTINGS


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Add the loss and validation options the training commands share (class weights, EMA, label smoothing,
    validation share) to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--class-weights", choices=CLASS_WEIGHTINGS, default="inverse",
                        help="loss weight per class: inverse (1/count, default), sqrt (1/sqrt(count): rare classes "
                             "over-predicted less) or none")
    parser.add_argument("--ema", type=number(0, 1), metavar="DECAY",
                        help="validate and export a moving average of the weights (per step, e.g. 0.999)")
    parser.add_argument("--label-smoothing", type=number(0, 0.99), default=0.0, metavar="SHARE",
                        help="spread this share of each target over the other classes (e.g. 0.1), for labels "
                             "annotators disagree on")
    parser.add_argument("--val-fraction", type=number(0.01, 0.9), default=0.2, metavar="SHARE",
                        help="share of each class held out to pick the best epoch and check the export (default "
                             "0.2); a smaller share leaves more to train on")


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options :func:`add_training_options` adds, under the names training takes them by.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    dict
    """
    return {"class_weighting": args.class_weights, "ema_decay": args.ema, "label_smoothing": args.label_smoothing,
            "val_fraction": args.val_fraction}


def load_train_package() -> ModuleType:
    """The training package, with torch loaded.

    Returns
    -------
    ModuleType
        ``inspection.train``.

    Raises
    ------
    UsageError
        Saying which extra to install when torch is missing.
    """
    try:
        import inspection.train.export
        import inspection.train.loop
    except ImportError as exc:
        raise UsageError(f"training needs the [train] extra (torch, torchvision, albumentations, onnx): "
                         f"pip install -e '.[train]' ({exc})") from None
    return inspection.train


def print_card_summary(card: ModelCard, model_dir: Path) -> None:
    """Print what a new model's card says: architecture, classes, validation figures, operating point, parity.

    Parameters
    ----------
    card : ModelCard
    model_dir : Path
        The model's folder.
    """
    val = card.metrics["val"]
    print(f"inspect: {model_dir}/model.onnx + model.json: {card.arch}, classes {', '.join(card.class_names)}",
          file=sys.stderr)
    print(f"  validation (ONNX Runtime, {val['samples']} images): accuracy {val['accuracy']:.4f}, "
          f"macro-F1 {val['macro_f1']:.4f}", file=sys.stderr)
    t = card.thresholds
    if t.defect_score is not None:
        print(f"  operating point: defect score >= {t.defect_score:.6f} catches {t.val_defect_recall:.4%} of "
              f"defects (target {t.target_defect_recall:.3%}) at {t.val_overkill:.4%} overkill", file=sys.stderr)
    print(f"  parity with torch on {card.parity.samples} images: max |dp| {card.parity.max_abs_diff:.2e}, "
          f"argmax agreement {card.parity.argmax_agreement:.2%}", file=sys.stderr)


def _input_for(args: argparse.Namespace) -> tuple[int, str, DetectorSettings | None]:
    """Input size, colour and candidate settings of the model to train: from ``--for``'s recipe (its model's
    card, or its own candidates without one), so the line takes the model; else the options' own."""
    if args.for_recipe is None:
        return args.img_size or 64, args.colour or "gray", None
    from inspection.chain.crops import station_detector

    recipe = load_recipe(args.for_recipe)
    if recipe.kind == "wafer-lot":
        raise UsageError(f"--for {args.for_recipe}: a wafer-lot recipe's die model is trained on dies cut by its "
                         "chain (datasets/wafer_die_crops.py), not on candidate crops; use a wafer-die or pcb recipe")
    if recipe.reference is None:
        raise UsageError(f"--for {args.for_recipe}: recipe {recipe.name!r} has no golden; its classifier names "
                         "anomaly regions (train it on crops from inspect labels export)")
    if args.colour == "gray":
        raise UsageError(f"--for {args.for_recipe}: its chain gives the classifier 3-channel crops (image, golden, "
                         "difference); leave out --colour gray")
    detector, classifier = station_detector(recipe)
    size = args.img_size or (classifier.card.input.height if classifier is not None else 32)
    return size, "rgb", detector


def _cmd_train(args: argparse.Namespace) -> int:
    img_size, colour, detector = _input_for(args)
    train_package = load_train_package()
    config = train_package.TrainConfig(
        folder=args.folder, out=args.out, arch=args.arch, img_size=img_size, colour=colour,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, device=args.device, seed=args.seed,
        weights=args.weights, resume=args.resume, patience=args.patience, good_class=args.good_class,
        target_recall=args.target_recall, flips=not args.no_flips, rot90=not args.no_rot90, **training_options(args),
        command="inspect " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    card = train_package.train(config, detector=detector)
    print_card_summary(card, args.out)
    if args.for_recipe is not None:
        print(f"inspect: {args.out} takes the crops of recipe {args.for_recipe}; put it on the line with: inspect "
              f"run --recipe {args.for_recipe} --model {args.out}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if sum(map(bool, (args.int8, args.fp16, args.checks, args.metadata))) > 1:
        raise UsageError("--int8, --fp16, --checks and --metadata do one thing each: run inspect export once for "
                         "each")
    if args.fp16 and args.eval is None:
        raise UsageError("--fp16 needs --eval FOLDER (real labelled images to check FP16 against FP32 on)")
    if args.int8 and args.calib is None:
        raise UsageError("--int8 needs --calib FOLDER (real images to calibrate the quantiser on)")
    train_package = load_train_package()
    if args.metadata:
        card = train_package.restamp(args.model)
        files = [card.onnx_file, *(v.file for v in (card.int8, card.fp16) if v is not None)]
        print(f"inspect: {args.model}: metadata of {', '.join(files)} rewritten from model.json (nodes in "
              "topological order, the card's sha256 values updated)", file=sys.stderr)
        return 0
    if args.checks:
        checks = train_package.add_checks(args.model, args.checks)
        print(f"inspect: {args.model / checks.file}: {checks.images} check inputs from {checks.source}, FP32 outputs "
              f"computed on {checks.made_on}; every variant and device is checked against them when loaded",
              file=sys.stderr)
        return 0
    if args.fp16:
        fp16 = train_package.convert_fp16(args.model, eval_folder=args.eval)
        _print_precisions(f"{args.model / fp16.file}: FP16, max |dp| {fp16.parity.max_abs_diff:.2e} against FP32 "
                          f"and argmax agreement {fp16.parity.argmax_agreement:.4%} on {fp16.parity.samples} "
                          f"images; on {fp16.evaluated_on}", fp16, "fp16")
        return 0
    if args.int8:
        if not (args.model / "model.json").is_file():
            train_package.export_model(args.model, opset=args.opset)
        variant = train_package.quantize_int8(args.model, calibration_folder=args.calib, eval_folder=args.eval)
        _print_precisions(f"{args.model / variant.file}: INT8 from {variant.calibration_images} calibration images; "
                          f"on {variant.evaluated_on}", variant, "int8")
        return 0
    card = train_package.export_model(args.model, opset=args.opset, detector=_detector_settings(args.detector))
    print_card_summary(card, args.model)
    return 0


def _print_precisions(heading: str, variant: Int8Variant | Fp16Variant, precision: str) -> None:
    """An added variant's figures beside FP32's on the same images, as its card records them."""
    print(f"inspect: {heading}:", file=sys.stderr)
    for name in ("fp32", precision):
        print(f"  {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in getattr(variant, name).items()), file=sys.stderr)


def _detector_settings(path: Path | None) -> DetectorSettings | None:
    if path is None:
        return None
    try:
        return DetectorSettings.model_validate_json(path.read_text())
    except OSError as exc:
        raise UsageError(f"--detector {path}: cannot be read ({exc.strerror})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"--detector {path}: invalid detector settings: {problems}") from None


def _cmd_eval(args: argparse.Namespace) -> int:
    classifier = Classifier(args.model, precision=args.precision, device=args.device)
    # The baseline is always FP32, so `--int8 --compare` the same folder measures what quantisation costs.
    baseline = None if args.compare is None else Classifier(args.compare, device=args.device)
    report = evaluate_folder(classifier, args.folder, baseline=baseline)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['model']} on {args.folder}: {report['samples']} images")
    interval = report["ci95"]
    print(f"accuracy {report['accuracy']:.4f} {interval_text(interval['accuracy'])}  "
          f"macro-F1 {report['macro_f1']:.4f} {interval_text(interval['macro_f1'])}; "
          "[low, high]: 95% bootstrap interval")
    print(f"{'class':<18}{'precision':>10}{'recall':>10}{'recall 95%':>18}{'f1':>10}{'support':>9}")
    for name, row in report["per_class"].items():
        recall_interval = interval_text(interval["recall"][name])
        print(f"{name:<18}{row['precision']:>10.4f}{row['recall']:>10.4f}{recall_interval:>18}"
              f"{row['f1']:>10.4f}{row['support']:>9}")
    print("confusion (rows true, columns predicted):")
    for name, row in zip(report["class_names"], report["confusion"], strict=True):
        print(f"  {name:<18}" + " ".join(f"{v:>6}" for v in row))
    if "operating_point" in report:
        point = report["operating_point"]
        print(f"defect score >= {point['defect_score_threshold']:.6f}: defect recall {point['defect_recall']:.4%} "
              f"({point['defects']} defects), overkill {point['overkill']:.4%} ({point['good']} good)")
    if "baseline" in report:
        print_baseline(report["baseline"], unit="images")
        if "operating_point" in report["baseline"]:
            point = report["baseline"]["operating_point"]
            print(f"  its defect recall {point['defect_recall']:.4%}, overkill {point['overkill']:.4%} at its own "
                  f"threshold {point['defect_score_threshold']:.6f}")
    for skipped in report["skipped"]:
        print(f"skipped {skipped}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    found = installed_models()
    rows = []
    for name, folder in found:
        card_path = folder / "model.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text(encoding="utf-8"))
            precisions = ("numpy (classical)" if card.get("kind") == "classical" else
                          "+".join(name for name in ("fp32", "fp16", "int8") if name == "fp32" or card.get(name)))
            rows.append({"name": name, "task": card.get("task"), "precisions": precisions,
                         "classes": card.get("class_names"), "folder": str(folder)})
        else:
            rows.append({"name": name, "task": "wafermap", "precisions": "numpy (classical)", "classes": None,
                         "folder": str(folder)})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    for row in rows:
        classes = ", ".join(row["classes"]) if row["classes"] else "the nine WM-811K patterns"
        print(f"{row['name']:<24} {row['task']:<15} {row['precisions']:<18} {classes}")
        print(f"{'':<24} {row['folder']}")
    where = ", ".join(str(folder) for folder, as_written in search_folders() if not as_written)
    print(f"({len(rows)} model(s); a recipe or --model names one by its name from any folder; searched: {where})",
          file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    models = commands.add_parser(
        "models", help="list the models a recipe or --model can name from any folder",
        description="The models on the search path's shared folders (WAFER_INSPECT_MODELS, the user's models "
                    "folder, the models installed with the package), each with its task, precisions and classes. "
                    "Beside these, a recipe's own folder and the working directory are searched first.")
    models.add_argument("--json", action="store_true", help="one JSON object per model")
    models.set_defaults(handler=_cmd_models)

    train = commands.add_parser(
        "train", help="train a defect classifier from a labelled folder and export it to ONNX with its card",
        description="Reads FOLDER/<class>/* (or FOLDER/train|val|test/<class>/*; otherwise a stratified split "
                    "by seed), trains from scratch (or from --weights), keeps the epoch with the best validation "
                    "macro-F1 and writes OUT/model.onnx, OUT/model.json, confusion.png and training.png.",
    )
    train.add_argument("folder", type=Path, help="labelled image folder")
    train.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/die-patchnet-v1")
    train.add_argument("--arch", default="patchnet", choices=ARCHITECTURES,
                       help="network (default patchnet: a compact CNN for small patches)")
    train.add_argument("--for", dest="for_recipe", metavar="RECIPE",
                       help="a model for this recipe's line (file or bundled name): input colour, size and candidate "
                            "settings from the recipe and its current model, so the line takes the model; FOLDER is "
                            "then crops from inspect labels cut or inspect labels export")
    train.add_argument("--img-size", type=integer(8, 4096), metavar="N",
                       help="input size N x N (default 64; with --for, the recipe's model's)")
    train.add_argument("--colour", choices=("gray", "rgb"),
                       help="input colour (default gray; with --for, rgb: image, golden, difference)")
    train.add_argument("--epochs", type=integer(1, 100_000), default=30, metavar="E",
                       help="passes over the training images")
    train.add_argument("--batch-size", type=integer(1, 65_536), default=64, metavar="B",
                       help="images per training step")
    train.add_argument("--lr", type=number(1e-9, 10), default=3e-3,
                       help="peak learning rate (warm-up, then cosine decay)")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    train.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                          help="split, initialisation and augmentation (default 0)")
    train.add_argument("--weights", type=Path, metavar="PT", help="initialise from a local state dict")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--patience", type=integer(1, 100_000), default=6,
                       help="stop after this many epochs without improvement")
    train.add_argument("--good-class", default="good", help="the defect-free class (default good)")
    train.add_argument("--target-recall", type=number(0.5, 1), default=0.999,
                       help="defect recall the operating point must reach on validation (default 0.999)")
    train.add_argument("--no-flips", action="store_true", help="no flip augmentation (orientation matters)")
    train.add_argument("--no-rot90", action="store_true", help="no 90-degree rotation augmentation")
    add_training_options(train)
    train.set_defaults(handler=_cmd_train)

    export = commands.add_parser("export", help="re-export a trained model to ONNX, or add an INT8 or FP16 variant")
    export.add_argument("model", type=Path, help="model folder written by inspect train")
    export.add_argument("--opset", type=integer(7, 25), default=17, help="ONNX opset (default 17)")
    export.add_argument("--int8", action="store_true", help="static INT8 quantisation with ONNX Runtime")
    export.add_argument("--fp16", action="store_true", help="half-precision variant for GPUs, checked against FP32 "
                        "on --eval's images")
    export.add_argument("--calib", type=Path, metavar="FOLDER", help="labelled images to calibrate INT8 on")
    export.add_argument("--eval", type=Path, metavar="FOLDER", help="labelled images to compare FP32 and the "
                        "variant on (INT8's default: the calibration folder)")
    export.add_argument("--checks", type=Path, metavar="FOLDER", help="(re)make the check inputs every variant "
                        "and device must reproduce when loaded: a labelled folder (an anomaly model: good images)")
    export.add_argument("--metadata", action="store_true", help="rewrite every ONNX file's metadata from the card "
                        "(a model exported by an older version), leaving its computation as it is")
    export.add_argument("--detector", type=Path, metavar="JSON", help="golden-template detector settings to put "
                        "in the card (PCB models; written by datasets/deeppcb_crops.py)")
    export.set_defaults(handler=_cmd_export)

    evaluate = commands.add_parser("eval", help="evaluate a model on a labelled folder with the line's ONNX code")
    evaluate.add_argument("model", type=model_folder, help="model folder (model.onnx + model.json)")
    evaluate.add_argument("folder", type=Path, help="labelled image folder (classes among the model's)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    variant = evaluate.add_mutually_exclusive_group()
    variant.add_argument("--int8", dest="precision", action="store_const", const="int8", default="fp32",
                         help="evaluate the INT8 variant")
    variant.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                         help="evaluate the FP16 variant")
    add_device_option(evaluate, default="cpu")
    evaluate.add_argument("--compare", type=model_folder, metavar="MODEL",
                          help="also evaluate this model's FP32 graph (same classes) on the same images: the "
                               "difference and its paired 95%% interval (with --int8 and the same folder: what "
                               "quantisation costs)")
    evaluate.set_defaults(handler=_cmd_eval)
