"""``inspect wafermap show|classify|eval|train|convert``: die-level wafer maps."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspection.cli.common import (
    MAX_SEED,
    add_device_option,
    integer,
    interval_text,
    model_folder,
    print_baseline,
)
from inspection.cli.models import (
    add_training_options,
    load_train_package,
    print_card_summary,
    training_options,
)
from inspection.model_paths import ModelNotFoundError, find_model
from inspection.report import draw_wafer_map, save_png, tile_pictures
from inspection.train.choices import ARCHITECTURES
from inspection.wafermap import ROOT_CAUSES, read_map_file, read_npz, yield_fraction

if TYPE_CHECKING:
    from inspection.wafermap.classify import WaferMapModel
    from inspection.wafermap.formats import MapSet

DEFAULT_WAFERMAP_MODEL = "wafermap-patchnet-v5"
"""Found on the model search path (inspection.model_paths), so the default works from any folder."""


def _cmd_wafermap_show(args: argparse.Namespace) -> int:
    die_map, label = read_map_file(args.path, index=args.index)
    dies = int(np.count_nonzero(die_map))
    title = f"{args.path.name}" + (f" #{args.index}" if args.index is not None else "")
    try:
        model_dir = find_model(args.model)
    except ModelNotFoundError:
        model_dir = None  # show draws the map without a prediction
    if model_dir is not None:
        from inspection.wafermap.classify import classify_maps, load_wafermap_model

        predicted = classify_maps(load_wafermap_model(model_dir), [die_map])[0]
        title += f"  {predicted.pattern} ({predicted.confidence:.2f})"
        subtitle = f"likely cause: {predicted.root_cause}" + (f"; labelled {label}" if label else "")
    else:
        subtitle = f"labelled {label}: {ROOT_CAUSES.get(label, 'unknown pattern')}" if label else ""
    title += f"  yield {yield_fraction(die_map):.1%} of {dies} dies"
    path = save_png(args.out, draw_wafer_map(die_map, title=title, subtitle=subtitle))
    print(f"inspect: {path}: {die_map.shape[1]}x{die_map.shape[0]} positions, {dies} dies, "
          f"{int((die_map == 2).sum())} failed" + (f", labelled {label}" if label else ""), file=sys.stderr)
    return 0


def _wafermap_model(args: argparse.Namespace) -> WaferMapModel:
    from inspection.wafermap.classify import load_wafermap_model  # ONNX Runtime loads only for map commands

    return load_wafermap_model(args.model, device=args.device)


def _cmd_wafermap_classify(args: argparse.Namespace) -> int:
    maps, names = [], []
    for path in args.paths:
        die_map, _ = read_map_file(path, index=args.index)
        maps.append(die_map)
        names.append(str(path) + (f"#{args.index}" if args.index is not None else ""))
    from inspection.wafermap.classify import classify_maps

    results = classify_maps(_wafermap_model(args), maps)
    for name, result in zip(names, results, strict=True):
        if args.json:
            print(json.dumps({"map": name, **result.to_dict()}))
        else:
            top = ", ".join(f"{t.pattern} {t.probability:.3f}" for t in result.top3)
            print(f"{name}: {result.pattern} ({result.confidence:.3f}; top-3 {top}), yield "
                  f"{result.yield_fraction:.1%}; likely cause: {result.root_cause}")
    return 0


def _cmd_wafermap_eval(args: argparse.Namespace) -> int:
    from inspection.evaluate.maps import evaluate_maps
    from inspection.wafermap.classify import WaferMapModelPool, load_wafermap_model

    map_set = read_npz(args.data)
    model_dirs = [args.model]
    if args.compare is not None:
        model_dirs.append(args.compare)
    with ExitStack() as stack:
        if args.workers == 1:
            models = [load_wafermap_model(model_dir, device=args.device) for model_dir in model_dirs]
        else:
            models = [stack.enter_context(WaferMapModelPool(model_dir, workers=args.workers, device=args.device))
                      for model_dir in model_dirs]
        report = evaluate_maps(models[0], map_set, batch_size=256 if args.workers == 1 else 512 * args.workers,
                               baseline=models[1] if len(models) > 1 else None)
    if "baseline" in report:
        report["baseline"] = {"model": str(args.compare), **report["baseline"]}
    if args.errors is not None:
        _draw_misclassified(map_set, report["misclassified"], args.errors)
    if args.json:
        print(json.dumps(report))
        return 0
    interval = report["ci95"]
    print(f"{args.data}: {report['samples']} maps, accuracy {report['accuracy']:.4f} "
          f"{interval_text(interval['accuracy'])}, macro-F1 {report['macro_f1']:.4f} "
          f"{interval_text(interval['macro_f1'])}, {report['maps_per_s']:.0f} maps/s; "
          "[low, high]: 95% bootstrap interval over the maps")
    for name, row in report["per_class"].items():
        print(f"  {name:<10} precision {row['precision']:.4f} recall {row['recall']:.4f} "
              f"{interval_text(interval['recall'][name])} f1 {row['f1']:.4f} support {row['support']}")
    if "baseline" in report:
        print_baseline(report["baseline"], unit="maps")
    return 0


def _draw_misclassified(map_set: MapSet, misclassified: list[dict], out: Path, *, most: int = 48) -> None:
    """The most confident errors as one sheet of wafer maps titled truth -> prediction."""
    shown = misclassified[:most]
    if not shown:
        print(f"inspect: no misclassified map; {out} not written", file=sys.stderr)
        return
    pictures = [draw_wafer_map(die_map, title=f"{e['truth']} -> {e['predicted']}",
                               subtitle=f"map {e['index']}, p = {e['confidence']:.2f}",
                               cell_px=max(1, 240 // max(die_map.shape)))
                for e in shown for die_map in [map_set.maps[e["index"]]]]
    save_png(out, tile_pictures(pictures, columns=6))
    print(f"inspect: {out}: the {len(shown)} most confident of {len(misclassified)} misclassified maps",
          file=sys.stderr)


def _cmd_wafermap_train(args: argparse.Namespace) -> int:
    load_train_package()
    from inspection.train.wafermaps import fit_classical, train_wafermap

    real = read_npz(args.data) if args.data else None
    command = "inspect " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.classical:
        card = fit_classical(args.out, real=real, synthetic_per_pattern=args.synthetic, seed=args.seed,
                             command=command, val_fraction=args.val_fraction)
        val = card["metrics"]["val"]
        print(f"inspect: {args.out}/classical.npz: validation accuracy {val['accuracy']:.4f}, macro-F1 "
              f"{val['macro_f1']:.4f} ({val['samples']} maps)", file=sys.stderr)
        return 0
    card = train_wafermap(args.out, real=real, synthetic_per_pattern=args.synthetic, img_size=args.img_size,
                          epochs=args.epochs, seed=args.seed, arch=args.arch, device=args.device, command=command,
                          batch_size=args.batch_size,
                          channels=3 if args.scratch_channel else 1, **training_options(args))
    print_card_summary(card, args.out)
    return 0


def _cmd_wafermap_convert(args: argparse.Namespace) -> int:
    from inspection.report.maps import write_npz
    from inspection.wafermap.wm811k import read_lswmd, split_lswmd

    written = {}
    for name, (map_set, beside) in split_lswmd(read_lswmd(args.source, progress=not args.quiet)).items():
        write_npz(args.out / f"{name}.npz", map_set, extra=beside)
        written[f"{name}.npz"] = len(map_set.maps)
    files = ", ".join(f"{name} {count:,}" for name, count in written.items())
    print(f"inspect: {sum(written.values()):,} maps of {args.source} -> {args.out} ({files}); evaluate with: inspect "
          f"wafermap eval {args.out / 'test.npz'}", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
    wafermap = commands.add_parser("wafermap", help="die-level wafer maps")
    wafermap_commands = wafermap.add_subparsers(dest="wafermap_command", required=True, metavar="COMMAND")
    show = wafermap_commands.add_parser("show", help="draw a wafer map (npz, SINF or SEMI E142 XML) as a PNG")
    show.add_argument("path", type=Path, help=".npz (WM-811K layout), .xml (SEMI E142) or SINF text file")
    show.add_argument("--index", type=integer(0, 10**9), help="which map of an npz file (default 0)")
    show.add_argument("--out", type=Path, required=True, metavar="PNG", help="the picture to write")
    show.add_argument("--model", default=DEFAULT_WAFERMAP_MODEL,
                      help=f"classify with this model when the folder exists (default {DEFAULT_WAFERMAP_MODEL})")
    show.set_defaults(handler=_cmd_wafermap_show)

    classify = wafermap_commands.add_parser("classify", help="pattern, confidence, top-3, yield and root cause")
    classify.add_argument("paths", type=Path, nargs="+", help=".npz, SINF or E142 XML files")
    classify.add_argument("--index", type=integer(0, 10**9), help="which map of npz files (default 0)")
    classify.add_argument("--model", type=model_folder, default=DEFAULT_WAFERMAP_MODEL,
                          help=f"wafer-map model folder (default {DEFAULT_WAFERMAP_MODEL})")
    classify.add_argument("--json", action="store_true", help="one JSON object per map")
    add_device_option(classify, default="cpu")
    classify.set_defaults(handler=_cmd_wafermap_classify)

    wm_eval = wafermap_commands.add_parser("eval", help="accuracy, macro-F1 and per-class metrics on labelled maps")
    wm_eval.add_argument("data", type=Path, help="labelled maps in the WM-811K npz layout")
    wm_eval.add_argument("--model", type=model_folder, default=DEFAULT_WAFERMAP_MODEL,
                         help=f"wafer-map model folder (default {DEFAULT_WAFERMAP_MODEL})")
    wm_eval.add_argument("--workers", type=integer(1, 256), default=1,
                         help="processes sharing the maps (one thread each); 2 uses both cores of a 2-core machine")
    wm_eval.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    add_device_option(wm_eval, default="cpu")
    wm_eval.add_argument("--errors", type=Path, metavar="PNG",
                         help="draw the 48 most confident misclassified maps (truth -> prediction) into PNG")
    wm_eval.add_argument("--compare", type=model_folder, metavar="MODEL",
                         help="also evaluate this model on the same maps: the difference and its paired 95%% interval")
    wm_eval.set_defaults(handler=_cmd_wafermap_eval)

    convert = wafermap_commands.add_parser(
        "convert", help="WM-811K's LSWMD.pkl (the published pandas pickle) to npz files by its own split",
        description="Read LSWMD.pkl, unpickling only the classes a pandas frame of numpy arrays is made of (any "
                    "other name in the pickle is refused unloaded), check its columns and every map, and write "
                    "OUT/train.npz and OUT/test.npz (labelled maps of trianTestLabel's Training and Test) and "
                    "OUT/unlabelled.npz, with each map's lot and wafer number. Needs pandas: the [wm811k] extra.")
    convert.add_argument("source", type=Path, metavar="LSWMD.pkl", help="the pickle as published")
    convert.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder for the npz files")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(handler=_cmd_wafermap_convert)

    wm_train = wafermap_commands.add_parser("train", help="train a wafer-map CNN (real and/or synthetic maps)")
    wm_train.add_argument("data", type=Path, nargs="?", help="labelled maps in the WM-811K npz layout")
    wm_train.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/wafermap-patchnet-v6")
    wm_train.add_argument("--synthetic", type=integer(0, 1_000_000), default=0, metavar="N",
                          help="add N synthetic maps per pattern")
    wm_train.add_argument("--img-size", type=integer(16, 512), default=48, metavar="N",
                          help="map resized to N x N (default 48)")
    wm_train.add_argument("--epochs", type=integer(1, 100_000), default=15, help="passes over the training maps")
    wm_train.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                          help="split, initialisation and augmentation (default 0)")
    wm_train.add_argument("--arch", default="patchnet", choices=ARCHITECTURES,
                          help="network (default patchnet; patchnet-l has 4.3x its weights)")
    wm_train.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    wm_train.add_argument("--batch-size", type=integer(1, 65_536), default=64, metavar="B",
                          help="maps per training step (a GPU trains faster with 512)")
    wm_train.add_argument("--scratch-channel", action="store_true",
                          help="three input channels: majority map, failure density (keeps thin scratches), footprint")
    wm_train.add_argument("--classical", action="store_true",
                          help="the fast classical model (density, Radon and geometry features + a small MLP)")
    add_training_options(wm_train)
    wm_train.set_defaults(handler=_cmd_wafermap_train)
