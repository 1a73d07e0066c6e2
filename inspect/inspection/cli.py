"""The ``inspect`` command (also ``python -m inspection``)."""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from inspection.acquire import SCHEMES, CameraError, open_camera
from inspection.chain.chain import Chain, build_chain
from inspection.chain.line import LineStats, run_line, teach_reference
from inspection.classify import Classifier, ModelCard, evaluate_folder
from inspection.classify.card import DetectorSettings
from inspection.progress import progress
from inspection.recipe import BUNDLED_RECIPES, Recipe, load_recipe
from inspection.report import ResultStore, draw_boxes, draw_wafer_map, read_results, save_png, tile_pictures
from inspection.report.store import RESULT_COLUMNS
from inspection.sim.frames import DIE_CLASSES, render_die
from inspection.types import GradedWafer, InspectionError, Verdict
from inspection.wafermap import ROOT_CAUSES, read_map_file, read_npz, yield_fraction

if TYPE_CHECKING:
    from inspection.wafermap.classify import WaferMapModel
    from inspection.wafermap.formats import MapSet

DEFAULT_DB = Path("results/inspect.db")
DEFAULT_WAFERMAP_MODEL = Path("models/wafermap-patchnet-v5")
# The names only: importing inspection.train here would load torch for every command.
TRAIN_ARCHITECTURES = ("patchnet", "patchnet-l", "resnet18", "mobilenet_v3_small", "efficientnet_b0")
CLASS_WEIGHTINGS = ("inverse", "sqrt", "none")  # inspection.train's, named here so the CLI need not import torch


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class-weights", choices=CLASS_WEIGHTINGS, default="inverse",
                        help="loss weight per class: inverse (1/count, default), sqrt (1/sqrt(count): rare classes "
                             "over-predicted less) or none")
    parser.add_argument("--ema", type=float, metavar="DECAY",
                        help="validate and export a moving average of the weights (per step, e.g. 0.999)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="SHARE",
                        help="spread this share of each target over the other classes (e.g. 0.1), for labels "
                             "annotators disagree on")
    parser.add_argument("--val-fraction", type=float, default=0.2, metavar="SHARE",
                        help="share of each class held out to pick the best epoch and check the export (default "
                             "0.2); a smaller share leaves more to train on")


def _training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``_add_training_options`` adds, under the names training takes them by."""
    return {"class_weighting": args.class_weights, "ema_decay": args.ema, "label_smoothing": args.label_smoothing,
            "val_fraction": args.val_fraction}


class UsageError(InspectionError, ValueError):
    """A command-line request that cannot be carried out as given."""


def software_version() -> str:
    try:
        return metadata.version("wafer-inspect")
    except metadata.PackageNotFoundError:
        return "unknown"


class _StatusPrinter:
    """A live status line: rewritten in place on a terminal, one line every few seconds in a log."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last_print = 0.0

    def __call__(self, stats: LineStats) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + stats.status_line())
            sys.stderr.flush()
        elif time.monotonic() - self._last_print >= 5.0:
            print(stats.status_line(), file=sys.stderr, flush=True)
            self._last_print = time.monotonic()


def _install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            print("\ninspect: second signal: aborting now (committed results are safe)", file=sys.stderr)
            os._exit(130)
        stop.set()
        print(f"\ninspect: {signal.Signals(signum).name}: finishing the frames in flight "
              "(signal again to abort)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _line_camera(recipe: Recipe, uri: str | None) -> str:
    """The camera URI to open: ``--camera`` or the recipe's; a folder whose frames bring their golden beside them
    lists only the frames (``glob=*TEST*``) unless the URI names its own ``glob``."""
    uri = uri or recipe.camera
    if not uri:
        raise CameraError(f"recipe {recipe.name!r} names no camera; give --camera URI "
                          f"({', '.join(s + ':...' for s in SCHEMES)})")
    beside = recipe.reference.beside if recipe.reference is not None else None
    if beside is not None and uri.startswith("folder:") and "glob=" not in uri:
        uri += ("&" if "?" in uri else "?") + f"glob=*{beside.test}*"
    return uri


def cmd_run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if recipe.kind == "wafer-lot":
        raise UsageError(f"recipe {recipe.name!r} is a wafer-lot recipe: grade its wafers with `inspect grade "
                         f"FOLDER --recipe {args.recipe}`")
    uri = _line_camera(recipe, args.camera)
    camera = open_camera(uri)
    store = ResultStore(args.db)
    run_id = store.start_run(camera=uri, recipe_name=recipe.name, recipe_sha256=recipe.sha256(),
                             software_version=software_version())
    status, failure, chain = "failed", None, None
    try:
        chain = build_chain(recipe, device=args.device)
        store.set_run_model(run_id, model_sha256=chain.model_sha256)
        stop = threading.Event()
        _install_stop_handlers(stop)
        model = (f", model {recipe.classify.model} on {chain.classifier.providers[0]}"
                 if recipe.classify is not None and chain.classifier is not None else
                 ", no classifier (verdicts by size)")
        print(f"inspect: run {run_id}: camera {uri}, recipe {recipe.name} ({recipe.source_path}){model}, "
              f"results -> {args.db}", file=sys.stderr)
        stats = run_line(camera, chain, store, run_id=run_id, stop=stop, max_frames=args.frames,
                         save_ng_dir=args.save_ng, on_status=_StatusPrinter(quiet=args.quiet))
        status = "stopped" if stop.is_set() else "completed"
        if stats.committed and stats.verdicts["error"] == stats.committed:
            status, failure = "failed", f"every one of the {stats.committed} frame(s) ended in error"
    except InspectionError as exc:
        failure = str(exc)
        raise
    finally:
        store.finish_run(run_id, status=status, reason=failure)
        store.close()
        if chain is not None:
            chain.close()
    if not args.quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    print(stats.status_line(), file=sys.stderr)
    if chain.batcher is not None and chain.batcher.stats.batches:
        batches = chain.batcher.stats
        print(f"inspect: classifier: {batches.items} candidate(s) in {batches.batches} batch(es), mean batch "
              f"{batches.items / batches.batches:.2f}, largest {batches.largest_batch}", file=sys.stderr)
    for skipped in stats.skipped:
        print(f"inspect: skipped {skipped.reason}", file=sys.stderr)
    print(f"inspect: run {run_id} {status}: {stats.committed} result(s) committed to {args.db}"
          + (f", pictures of non-passing parts in {args.save_ng}" if args.save_ng else ""), file=sys.stderr)
    if failure:
        print(f"inspect: error: {failure}", file=sys.stderr)
        return 1
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    with open_camera(args.camera) as camera:
        golden = teach_reference(camera, frames=args.frames, timeout_s=args.timeout)
    image = golden.image if golden.layout != "rgb" else golden.image[:, :, ::-1]  # PNG files are BGR in OpenCV
    path = save_png(args.out, image)
    print(f"inspect: golden reference {path}: {golden.width_px}x{golden.height_px} {golden.layout} "
          f"{golden.bit_depth}-bit, the median of {args.frames} frames from {golden.source_id}", file=sys.stderr)
    hint = f"reference: {{golden: {path.name}}}"
    if golden.bit_depth not in (8, 16):
        hint += f" and preprocess: {{bit_depth: {golden.bit_depth}}}"
    print(f"inspect: use it in a recipe beside it: {hint}", file=sys.stderr)
    return 0


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda", "trt", "auto"),
                        help="where the classifier runs (default: the recipe's classify.device)")


def _train_package():  # type: ignore[no-untyped-def]
    try:
        import inspection.train as train_package
    except ImportError as exc:
        raise UsageError(f"training needs the [train] extra (torch, torchvision, albumentations, onnx): "
                         f"pip install 'wafer-inspect[train]' ({exc})") from None
    return train_package


def _print_card_summary(card: ModelCard, model_dir: Path) -> None:
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


def cmd_synth(args: argparse.Namespace) -> int:
    if args.what == "lot":
        from inspection.sim.lot import make_lot

        manifest = make_lot(args.out, wafers=args.wafers, seed=args.seed)
        print(f"inspect: {args.wafers} wafers (seed {args.seed}) with their truth in {args.out}; manifest {manifest}",
              file=sys.stderr)
        return 0
    classes = args.classes.split(",") if args.classes else list(DIE_CLASSES)
    unknown = sorted(set(classes) - set(DIE_CLASSES))
    if unknown:
        raise UsageError(f"--classes: unknown die class(es) {', '.join(unknown)}; expected {', '.join(DIE_CLASSES)}")
    jobs = [(kind, index) for kind in classes for index in range(args.per_class)]
    for kind, index in progress(jobs, total=len(jobs), label="rendering dies"):
        image = render_die(kind, index, seed=args.seed, size_px=args.size)
        save_png(args.out / kind / f"{kind}_{index:05d}.png", image)
    print(f"inspect: {len(jobs)} die images ({args.per_class} per class, seed {args.seed}) in {args.out}",
          file=sys.stderr)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from inspection.acquire.lot import read_lot
    from inspection.chain.lot import run_lot
    from inspection.report.lot_report import write_lot_outputs

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    recipe = load_recipe(args.recipe)
    if recipe.kind != "wafer-lot" or recipe.classify is None or recipe.wafermap is None:
        raise UsageError(f"recipe {recipe.name!r} is a {recipe.kind} recipe; inspect grade takes a wafer-lot recipe "
                         "(bundled: wafer-lot)")
    update: dict[str, Any] = {}
    if args.model is not None or args.device is not None:
        update["classify"] = recipe.classify.model_copy(update={
            k: v for k, v in (("model", None if args.model is None else str(args.model)), ("device", args.device))
            if v is not None})
    if args.map_model is not None:
        update["wafermap"] = recipe.wafermap.model_copy(update={"model": str(args.map_model)})
    recipe = recipe.model_copy(update=update)
    build_chain(recipe).close()  # a missing model or a rule it cannot meet fails here, before any worker starts
    items = read_lot(args.source)
    db_path = args.out / "grade.sqlite"

    def report(wafer: GradedWafer) -> None:
        if args.quiet:
            return
        if wafer.status == "graded":
            line = (f"{wafer.item.wafer_id}: {wafer.verdict} yield {wafer.yield_fraction:.1%} {wafer.pattern} "
                    f"({wafer.pattern_confidence:.2f}) - {wafer.reason}")
        else:
            line = f"{wafer.item.wafer_id}: failed to grade - {wafer.reason}"
        print(line, file=sys.stderr, flush=True)

    run = run_lot(items, recipe, db_path=db_path, workers=args.workers, engine=args.engine,
                  ray_address=args.ray_address, software_version=software_version(), on_wafer=report)
    outputs, figures = write_lot_outputs(db_path, args.out,
                                         title=f"Lot grading: {', '.join(sorted({i.lot_id for i in items}))}",
                                         recipe_name=recipe.name, station=args.station)
    wph = run.graded_now / run.elapsed_s * 3600 if run.graded_now else 0.0
    summary = {"graded_now": run.graded_now, "skipped_already_graded": run.skipped,
               "elapsed_s": round(run.elapsed_s, 2), "wafers_per_hour": round(wph), **figures, "database": str(db_path),
               "outputs": {k: str(v) for k, v in outputs.items()}}
    print(json.dumps(summary, indent=1))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    train_package = _train_package()
    config = train_package.TrainConfig(
        folder=args.folder, out=args.out, arch=args.arch, img_size=args.img_size, colour=args.colour,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, device=args.device, seed=args.seed,
        weights=args.weights, resume=args.resume, patience=args.patience, good_class=args.good_class,
        target_recall=args.target_recall, flips=not args.no_flips, rot90=not args.no_rot90, **_training_options(args),
        command="inspect " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    card = train_package.train(config)
    _print_card_summary(card, args.out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    train_package = _train_package()
    if args.int8:
        if args.calib is None:
            raise UsageError("--int8 needs --calib FOLDER (real images to calibrate the quantiser on)")
        if not (args.model / "model.json").is_file():
            train_package.export_model(args.model, opset=args.opset)
        variant = train_package.quantize_int8(args.model, calibration_folder=args.calib, eval_folder=args.eval)
        print(f"inspect: {args.model / variant.file}: INT8 from {variant.calibration_images} calibration images; "
              f"on {variant.evaluated_on}:", file=sys.stderr)
        for precision in ("fp32", "int8"):
            numbers = getattr(variant, precision)
            print(f"  {precision}: " + ", ".join(f"{k} {v:.4f}" for k, v in numbers.items()), file=sys.stderr)
        return 0
    card = train_package.export_model(args.model, opset=args.opset, detector=_detector_settings(args.detector))
    _print_card_summary(card, args.model)
    return 0


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


def _glob(pattern: str, *, option: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise UsageError(f"{option} {pattern!r}: no files match")
    return paths


def _board(text: str) -> tuple[int, int]:
    try:
        columns, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS of inner corners, e.g. 9x6; got {text!r}") from None
    if columns < 2 or rows < 2:
        raise argparse.ArgumentTypeError(f"a board needs at least 2x2 inner corners; got {text!r}")
    return columns, rows


def cmd_calibrate_camera(args: argparse.Namespace) -> int:
    from inspection.calibrate import calibrate_camera, write_calibration

    calibration = calibrate_camera(_glob(args.images, option="--images"), inner_corners=args.board,
                                   square_mm=args.square_mm, station=args.station, min_boards=args.min_boards,
                                   max_rms_px=args.max_rms)
    path = write_calibration(calibration, args.root)
    matrix = calibration.camera_matrix
    print(f"{path}: {len(calibration.per_image_rms_px)} boards ({len(calibration.rejected)} rejected), RMS "
          f"{calibration.rms_px:.4f} px, focal length {matrix[0, 0]:.2f} x {matrix[1, 1]:.2f} px, principal point "
          f"({matrix[0, 2]:.2f}, {matrix[1, 2]:.2f}), {calibration.um_per_px:.3f} um/px at the working plane")
    for name, reason in calibration.rejected.items():
        print(f"  rejected {name}: {reason}", file=sys.stderr)
    return 0


def cmd_calibrate_flatfield(args: argparse.Namespace) -> int:
    from inspection.calibrate import make_flatfield

    path = make_flatfield(_glob(args.dark, option="--dark"), _glob(args.flat, option="--flat"), station=args.station,
                          root=args.root)
    print(f"{path}: dark and flat frames; name it in a recipe as preprocess.flatfield: {path.parent}")
    return 0


def _pcb_recipe(args: argparse.Namespace, *, model: Path | None = None, precision: str | None = None) -> Recipe:
    """The PCB recipe with the command line's model, precision, device and min_score in its classify section."""
    recipe = load_recipe(args.recipe)
    if recipe.kind != "pcb" or recipe.classify is None:
        raise UsageError(f"--recipe {args.recipe}: a {recipe.kind} recipe; inspect pcb takes a pcb recipe "
                         "(bundled: pcb-deeppcb)")
    overrides = {"model": None if model is None else str(model), "precision": precision, "device": args.device,
                 "min_score": args.min_score}
    classify = recipe.classify.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    return recipe.model_copy(update={"classify": classify})


def cmd_pcb_inspect(args: argparse.Namespace) -> int:
    from inspection.chain.pairs import inspect_pair

    with build_chain(_pcb_recipe(args, model=args.model, precision=args.precision)) as chain:
        part = inspect_pair(chain, args.test, args.template)
    assert part.image is not None and part.fit is not None
    boxes = [d.box_xyxy_px or d.region.box_xyxy_px for d in part.detections]
    detections = [{"kind": d.kind, "score": round(d.score, 4), "box_xyxy_px": [round(v, 1) for v in box],
                   "area_px": d.region.area_px} for d, box in zip(part.detections, boxes, strict=True)]
    if args.out:
        save_png(args.out, draw_boxes(part.image, np.array(boxes, float).reshape(-1, 4),
                                      [f"{d.kind} {d.score:.2f}" for d in part.detections],
                                      title=f"{args.test.name}: {len(detections)} defects"))
    fit = part.fit
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


def cmd_pcb_eval(args: argparse.Namespace) -> int:
    from inspection.acquire.deeppcb import read_pair_list
    from inspection.chain.pairs import evaluate_pairs

    recipe = _pcb_recipe(args, model=args.model, precision=args.precision)
    assert recipe.classify is not None
    chain = build_chain(recipe, rank_hypotheses=True, threads=1)
    # The baseline is always FP32, so `--int8 --compare` the same model measures what quantisation costs.
    baseline: Chain | None = None if args.compare is None else build_chain(
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
    print(f"precision {report['precision']:.4f} {_ci(interval['precision'])}  "
          f"recall {report['recall']:.4f} {_ci(interval['recall'])}  "
          f"F-score {report['f_score']:.4f} {_ci(interval['f_score'])}")
    print(f"mAP {report['map']:.4f} {_ci(interval['map'])} (reported detections alone "
          f"{report['map_at_min_score']:.4f})  {report['images_per_s']:.1f} pairs/s ({args.workers} workers); "
          "[low, high]: 95% bootstrap interval over the pairs")
    print("AP per class: " + ", ".join(f"{k} {v:.4f}" for k, v in report["per_class_ap"].items()))
    if baseline is not None:
        theirs = report["baseline"]
        difference, paired = theirs["difference"], theirs["difference_ci95"]
        print(f"against {args.compare}: F-score {theirs['f_score']:.4f}, mAP {theirs['map']:.4f} "
              f"({theirs['images_per_s']:.1f} pairs/s); difference " + ", ".join(
                  f"{name} {difference[name]:+.4f} {_ci(paired[name], signed=True)}" for name in difference)
              + "; paired 95% intervals, same pairs")
    for failure in report["failed"]:
        print(f"  failed: {failure}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    classifier = Classifier(args.model, precision=args.precision)
    # The baseline is always FP32, so `--int8 --compare` the same folder measures what quantisation costs.
    baseline = None if args.compare is None else Classifier(args.compare)
    report = evaluate_folder(classifier, args.folder, baseline=baseline)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['model']} on {args.folder}: {report['samples']} images")
    interval = report["ci95"]
    print(f"accuracy {report['accuracy']:.4f} {_ci(interval['accuracy'])}  "
          f"macro-F1 {report['macro_f1']:.4f} {_ci(interval['macro_f1'])}; [low, high]: 95% bootstrap interval")
    print(f"{'class':<18}{'precision':>10}{'recall':>10}{'recall 95%':>18}{'f1':>10}{'support':>9}")
    for name, row in report["per_class"].items():
        print(f"{name:<18}{row['precision']:>10.4f}{row['recall']:>10.4f}{_ci(interval['recall'][name]):>18}"
              f"{row['f1']:>10.4f}{row['support']:>9}")
    print("confusion (rows true, columns predicted):")
    for name, row in zip(report["class_names"], report["confusion"], strict=True):
        print(f"  {name:<18}" + " ".join(f"{v:>6}" for v in row))
    if "operating_point" in report:
        point = report["operating_point"]
        print(f"defect score >= {point['defect_score_threshold']:.6f}: defect recall {point['defect_recall']:.4%} "
              f"({point['defects']} defects), overkill {point['overkill']:.4%} ({point['good']} good)")
    if "baseline" in report:
        _print_baseline(report["baseline"], unit="images")
        if "operating_point" in report["baseline"]:
            point = report["baseline"]["operating_point"]
            print(f"  its defect recall {point['defect_recall']:.4%}, overkill {point['overkill']:.4%} at its own "
                  f"threshold {point['defect_score_threshold']:.6f}")
    for skipped in report["skipped"]:
        print(f"skipped {skipped}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from inspection.bench import format_table, run_bench, write_record

    try:
        batch_sizes = tuple(int(size) for size in args.batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r}: expected integers such as 1,8,32") from None
    if not batch_sizes or min(batch_sizes) < 1:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r}: every batch size must be at least 1")
    Classifier(args.model, device=args.device)  # a wrong folder or device fails here, before any worker starts
    record = run_bench(args.model, device=args.device, batch_sizes=batch_sizes, seconds=args.seconds,
                       int8=args.int8, stream_fps=args.stream_fps)
    path = write_record(record, args.out)
    if args.json:
        print(json.dumps(record))
    else:
        print(format_table(record))
    print(f"inspect: recorded in {path}", file=sys.stderr)
    return 0


def cmd_wafermap_show(args: argparse.Namespace) -> int:
    die_map, label = read_map_file(args.path, index=args.index)
    dies = int(np.count_nonzero(die_map))
    title = f"{args.path.name}" + (f" #{args.index}" if args.index is not None else "")
    if args.model.is_dir():
        from inspection.wafermap.classify import classify_maps

        predicted = classify_maps(_wafermap_model(args), [die_map])[0]
        title += f"  {predicted['pattern']} ({predicted['confidence']:.2f})"
        subtitle = f"likely cause: {predicted['root_cause']}" + (f"; labelled {label}" if label else "")
    else:
        subtitle = f"labelled {label}: {ROOT_CAUSES.get(label, 'unknown pattern')}" if label else ""
    title += f"  yield {yield_fraction(die_map):.1%} of {dies} dies"
    path = save_png(args.out, draw_wafer_map(die_map, title=title, subtitle=subtitle))
    print(f"inspect: {path}: {die_map.shape[1]}x{die_map.shape[0]} positions, {dies} dies, "
          f"{int((die_map == 2).sum())} failed" + (f", labelled {label}" if label else ""), file=sys.stderr)
    return 0


def _wafermap_model_dir(model_dir: Path, *, option: str = "--model") -> Path:
    if not model_dir.is_dir():
        raise UsageError(f"{option} {model_dir}: no such model folder (the shipped one is "
                         f"{DEFAULT_WAFERMAP_MODEL} in the repository; run from its root or give {option} DIR)")
    return model_dir


def _wafermap_model(args: argparse.Namespace) -> WaferMapModel:
    from inspection.wafermap.classify import load_wafermap_model  # ONNX Runtime loads only for map commands

    return load_wafermap_model(_wafermap_model_dir(args.model))


def cmd_wafermap_classify(args: argparse.Namespace) -> int:
    maps, names = [], []
    for path in args.paths:
        die_map, _ = read_map_file(path, index=args.index)
        maps.append(die_map)
        names.append(str(path) + (f"#{args.index}" if args.index is not None else ""))
    from inspection.wafermap.classify import classify_maps

    results = classify_maps(_wafermap_model(args), maps)
    for name, result in zip(names, results, strict=True):
        if args.json:
            print(json.dumps({"map": name, **result}))
        else:
            top = ", ".join(f"{t['pattern']} {t['probability']:.3f}" for t in result["top3"])
            print(f"{name}: {result['pattern']} ({result['confidence']:.3f}; top-3 {top}), yield "
                  f"{result['yield']:.1%}; likely cause: {result['root_cause']}")
    return 0


def cmd_wafermap_eval(args: argparse.Namespace) -> int:
    from inspection.wafermap.classify import WaferMapModelPool, evaluate_maps, load_wafermap_model

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: expected 1 or more")
    map_set = read_npz(args.data)
    model_dirs = [_wafermap_model_dir(args.model)]
    if args.compare is not None:
        model_dirs.append(_wafermap_model_dir(args.compare, option="--compare"))
    with ExitStack() as stack:
        if args.workers == 1:
            models = [load_wafermap_model(model_dir) for model_dir in model_dirs]
        else:
            models = [stack.enter_context(WaferMapModelPool(model_dir, workers=args.workers))
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
    print(f"{args.data}: {report['samples']} maps, accuracy {report['accuracy']:.4f} {_ci(interval['accuracy'])}, "
          f"macro-F1 {report['macro_f1']:.4f} {_ci(interval['macro_f1'])}, {report['maps_per_s']:.0f} maps/s; "
          "[low, high]: 95% bootstrap interval over the maps")
    for name, row in report["per_class"].items():
        print(f"  {name:<10} precision {row['precision']:.4f} recall {row['recall']:.4f} "
              f"{_ci(interval['recall'][name])} f1 {row['f1']:.4f} support {row['support']}")
    if "baseline" in report:
        _print_baseline(report["baseline"], unit="maps")
    return 0


def _print_baseline(baseline: dict[str, Any], *, unit: str) -> None:
    """The --compare lines of the classifiers' evals: the baseline's figures and the paired differences."""
    difference, paired = baseline["difference"], baseline["difference_ci95"]
    print(f"against {baseline['model']}: accuracy {baseline['accuracy']:.4f}, macro-F1 {baseline['macro_f1']:.4f}; "
          f"difference {difference['accuracy']:+.4f} {_ci(paired['accuracy'], signed=True)} and "
          f"{difference['macro_f1']:+.4f} {_ci(paired['macro_f1'], signed=True)}; paired 95% intervals, same {unit}")
    print("  recall difference: " + ", ".join(f"{name} {value:+.4f} {_ci(paired['recall'][name], signed=True)}"
                                              for name, value in difference["recall"].items()))


def _ci(bounds: list[float] | None, *, signed: bool = False) -> str:
    """A 95% interval as printed beside its figure, [low, high] (signed for differences), or [-] where it is
    undefined."""
    if bounds is None:
        return "[-]"
    return f"[{bounds[0]:+.4f}, {bounds[1]:+.4f}]" if signed else f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"


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


def cmd_wafermap_train(args: argparse.Namespace) -> int:
    _train_package()
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
                          channels=3 if args.scratch_channel else 1, **_training_options(args))
    _print_card_summary(card, args.out)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    rows = read_results(args.db, verdict=args.verdict, since=args.since, run_id=args.run)
    out = sys.stdout
    if args.format == "json":
        for row in rows:
            out.write(json.dumps(row) + "\n")
        return 0
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow([json.dumps(v) if isinstance(v, list | dict) else v for v in row.values()])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspect", description="wafer-inspect: wafer and PCB defect inspection.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wafer-inspect {software_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="inspect a camera stream on the line, committing each verdict to SQLite",
        description="Acquire -> preprocess -> align -> candidates -> CNN (batched across frames) -> grade, one "
                    "verdict per frame, each committed to the results database before it counts. Ctrl-C or "
                    "SIGTERM finish the frames in flight.",
    )
    run.add_argument("--camera", metavar="URI", help="folder:PATH[?glob=G&watch=1], genicam:[PRODUCER.cti][?serial=S], "
                     "pylon:[SERIAL|emu], opencv:INDEX|URL, sim:wafer|pcb[?fps=F&seed=S&defect_rate=R] "
                     "(default: the recipe's camera)")
    run.add_argument("--recipe", default="wafer-die", metavar="FILE",
                     help=f"recipe YAML file or a bundled one ({', '.join(BUNDLED_RECIPES)}); default: wafer-die")
    _add_device_option(run)
    run.add_argument("--frames", type=int, metavar="N", help="stop after N frames (default: until the source ends)")
    run.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    run.add_argument("--save-ng", type=Path, metavar="DIR", help="save pictures of non-passing parts here")
    run.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    run.set_defaults(handler=cmd_run)

    teach = commands.add_parser(
        "teach", help="teach a golden reference image from a camera (median of good parts)",
        description="Grab N frames of defect-free parts and write their per-pixel median as the golden "
                    "reference a recipe compares against (pixels, layout and bit depth kept).",
    )
    teach.add_argument("--camera", required=True, metavar="URI", help="the station's camera URI")
    teach.add_argument("--out", required=True, type=Path, metavar="PNG", help="where to write the golden image")
    teach.add_argument("--frames", type=int, default=9, metavar="N", help="frames to take the median of (default 9)")
    teach.add_argument("--timeout", type=float, default=5.0, metavar="S", help="fetch timeout per frame (default 5 s)")
    teach.set_defaults(handler=cmd_teach)

    synth = commands.add_parser("synth", help="render synthetic die images or a whole wafer lot with its truth")
    synth.add_argument("what", choices=("dies", "lot"),
                       help="dies: a labelled folder (OUT/<class>/*.png); lot: 2048x2048 wafer frames with about "
                            "1,000 dies, a spatial pattern per wafer, truth files and the lot.csv manifest")
    synth.add_argument("out", type=Path, help="output folder")
    synth.add_argument("--wafers", type=int, default=25, metavar="N", help="lot: wafers (default 25)")
    synth.add_argument("--per-class", type=int, default=500, metavar="N", help="images per class (default 500)")
    synth.add_argument("--seed", type=int, default=0, help="the stream; another seed gives other images")
    synth.add_argument("--size", type=int, default=64, metavar="PX", help="die image size in pixels (default 64)")
    synth.add_argument("--classes", metavar="A,B", help=f"a subset of {','.join(DIE_CLASSES)}")
    synth.set_defaults(handler=cmd_synth)

    grade = commands.add_parser(
        "grade", help="grade a lot of wafer images offline: die maps, patterns, verdicts, KLARF, HTML report",
        description="Per wafer: preprocess, wafer edge and notch, die grid (checked against the recipe), die "
                    "classifier, die map, wafer-map pattern and root cause, verdict from the recipe's rules; each "
                    "wafer committed to OUT/grade.sqlite as it finishes (a re-run skips finished wafers). Then "
                    "OUT/report.html, wafers.csv, lot.json, klarf/*.klarf and maps/*.sinf|*.e142.xml|*.png.")
    grade.add_argument("source", type=Path, metavar="FOLDER|MANIFEST",
                       help="a folder of wafer images (or one holding lot.csv), or a manifest CSV with columns image, "
                            "wafer_id[, lot_id, slot, truth_pattern, truth_dies]")
    grade.add_argument("--recipe", default="wafer-lot",
                       help="wafer-lot recipe YAML or the bundled 'wafer-lot' (default)")
    _add_device_option(grade)
    grade.add_argument("--out", type=Path, required=True, help="output folder (database and reports)")
    grade.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="wafers graded at once (processes, or Ray tasks; default: the CPU count)")
    grade.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: a process pool; ray: Ray tasks (local Ray unless --ray-address or RAY_ADDRESS)")
    grade.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster to join, e.g. ray://head:10001")
    grade.add_argument("--model", type=Path, help="die classifier model folder (default: the recipe's)")
    grade.add_argument("--map-model", type=Path, help="wafer-map model folder (default: the recipe's)")
    grade.add_argument("--station", default="wafer-inspect", help="station name written into KLARF files")
    grade.add_argument("--quiet", action="store_true", help="no per-wafer lines")
    grade.set_defaults(handler=cmd_grade)

    train = commands.add_parser(
        "train", help="train a defect classifier from a labelled folder and export it to ONNX with its card",
        description="Reads FOLDER/<class>/* (or FOLDER/train|val|test/<class>/*; otherwise a stratified split "
                    "by seed), trains from scratch (or from --weights), keeps the epoch with the best validation "
                    "macro-F1 and writes OUT/model.onnx, OUT/model.json, confusion.png and training.png.",
    )
    train.add_argument("folder", type=Path, help="labelled image folder")
    train.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/die-patchnet-v1")
    train.add_argument("--arch", default="patchnet", choices=TRAIN_ARCHITECTURES,
                       help="network (default patchnet: a compact CNN for small patches)")
    train.add_argument("--img-size", type=int, default=64, metavar="N", help="input size N x N (default 64)")
    train.add_argument("--colour", choices=("gray", "rgb"), default="gray", help="input colour (default gray)")
    train.add_argument("--epochs", type=int, default=30, metavar="E")
    train.add_argument("--batch-size", type=int, default=64, metavar="B")
    train.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (warm-up, then cosine decay)")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--weights", type=Path, metavar="PT", help="initialise from a local state dict")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--patience", type=int, default=6, help="stop after this many epochs without improvement")
    train.add_argument("--good-class", default="good", help="the defect-free class (default good)")
    train.add_argument("--target-recall", type=float, default=0.999,
                       help="defect recall the operating point must reach on validation (default 0.999)")
    train.add_argument("--no-flips", action="store_true", help="no flip augmentation (orientation matters)")
    train.add_argument("--no-rot90", action="store_true", help="no 90-degree rotation augmentation")
    _add_training_options(train)
    train.set_defaults(handler=cmd_train)

    export = commands.add_parser("export", help="re-export a trained model to ONNX, or add an INT8 variant")
    export.add_argument("model", type=Path, help="model folder written by inspect train")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--int8", action="store_true", help="static INT8 quantisation with ONNX Runtime")
    export.add_argument("--calib", type=Path, metavar="FOLDER", help="labelled images to calibrate INT8 on")
    export.add_argument("--eval", type=Path, metavar="FOLDER", help="labelled images to compare FP32 and INT8 on "
                        "(default: the calibration folder)")
    export.add_argument("--detector", type=Path, metavar="JSON", help="golden-template detector settings to put "
                        "in the card (PCB models; written by datasets/deeppcb_crops.py)")
    export.set_defaults(handler=cmd_export)

    evaluate = commands.add_parser("eval", help="evaluate a model on a labelled folder with the line's ONNX code")
    evaluate.add_argument("model", type=Path, help="model folder (model.onnx + model.json)")
    evaluate.add_argument("folder", type=Path, help="labelled image folder (classes among the model's)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    evaluate.add_argument("--int8", dest="precision", action="store_const", const="int8", default="fp32",
                          help="evaluate the INT8 variant")
    evaluate.add_argument("--compare", type=Path, metavar="MODEL",
                          help="also evaluate this model's FP32 graph (same classes) on the same images: the "
                               "difference and its paired 95%% interval (with --int8 and the same folder: what "
                               "quantisation costs)")
    evaluate.set_defaults(handler=cmd_eval)

    bench = commands.add_parser(
        "bench", help="throughput and latency of the inference core vs plain PyTorch, on CPU or GPU",
        description="For each batch size: images/s, p50/p99 latency and peak memory of the ONNX Runtime core, "
                    "of PyTorch eager (one at a time and batched, when torch is installed) on the same model and "
                    "inputs, the model's GFLOP/image against this machine's measured matmul GFLOP/s, and a "
                    "simulated camera stream through the micro-batcher. Recorded in benchmarks/results/.",
    )
    bench.add_argument("model", type=Path, help="model folder (model.onnx + model.json)")
    bench.add_argument("--device", choices=("cpu", "cuda", "trt", "auto"), default="cpu")
    bench.add_argument("--batch-sizes", default="1,8,32,128", metavar="A,B", help="default 1,8,32,128")
    bench.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration (default 3)")
    bench.add_argument("--int8", action="store_true", help="also the INT8 variant (inspect export --int8)")
    bench.add_argument("--stream-fps", type=float, default=200.0, help="simulated camera rate (default 200)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where the record is written")
    bench.set_defaults(handler=cmd_bench)

    wafermap = commands.add_parser("wafermap", help="die-level wafer maps")
    wafermap_commands = wafermap.add_subparsers(dest="wafermap_command", required=True, metavar="COMMAND")
    show = wafermap_commands.add_parser("show", help="draw a wafer map (npz, SINF or SEMI E142 XML) as a PNG")
    show.add_argument("path", type=Path, help=".npz (WM-811K layout), .xml (SEMI E142) or SINF text file")
    show.add_argument("--index", type=int, help="which map of an npz file (default 0)")
    show.add_argument("--out", type=Path, required=True, metavar="PNG")
    show.add_argument("--model", type=Path, default=DEFAULT_WAFERMAP_MODEL,
                      help=f"classify with this model when the folder exists (default {DEFAULT_WAFERMAP_MODEL})")
    show.set_defaults(handler=cmd_wafermap_show)

    classify = wafermap_commands.add_parser("classify", help="pattern, confidence, top-3, yield and root cause")
    classify.add_argument("paths", type=Path, nargs="+", help=".npz, SINF or E142 XML files")
    classify.add_argument("--index", type=int, help="which map of npz files (default 0)")
    classify.add_argument("--model", type=Path, default=DEFAULT_WAFERMAP_MODEL,
                          help=f"wafer-map model folder (default {DEFAULT_WAFERMAP_MODEL})")
    classify.add_argument("--json", action="store_true", help="one JSON object per map")
    classify.set_defaults(handler=cmd_wafermap_classify)

    wm_eval = wafermap_commands.add_parser("eval", help="accuracy, macro-F1 and per-class metrics on labelled maps")
    wm_eval.add_argument("data", type=Path, help="labelled maps in the WM-811K npz layout")
    wm_eval.add_argument("--model", type=Path, default=DEFAULT_WAFERMAP_MODEL,
                         help=f"wafer-map model folder (default {DEFAULT_WAFERMAP_MODEL})")
    wm_eval.add_argument("--workers", type=int, default=1,
                         help="processes sharing the maps (one thread each); 2 uses both cores of a 2-core machine")
    wm_eval.add_argument("--json", action="store_true")
    wm_eval.add_argument("--errors", type=Path, metavar="PNG",
                         help="draw the 48 most confident misclassified maps (truth -> prediction) into PNG")
    wm_eval.add_argument("--compare", type=Path, metavar="MODEL",
                         help="also evaluate this model on the same maps: the difference and its paired 95%% interval")
    wm_eval.set_defaults(handler=cmd_wafermap_eval)

    wm_train = wafermap_commands.add_parser("train", help="train a wafer-map CNN (real and/or synthetic maps)")
    wm_train.add_argument("data", type=Path, nargs="?", help="labelled maps in the WM-811K npz layout")
    wm_train.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/wafermap-patchnet-v6")
    wm_train.add_argument("--synthetic", type=int, default=0, metavar="N", help="add N synthetic maps per pattern")
    wm_train.add_argument("--img-size", type=int, default=48, metavar="N", help="map resized to N x N (default 48)")
    wm_train.add_argument("--epochs", type=int, default=15)
    wm_train.add_argument("--seed", type=int, default=0)
    wm_train.add_argument("--arch", default="patchnet", choices=TRAIN_ARCHITECTURES,
                          help="network (default patchnet; patchnet-l has 4.3x its weights)")
    wm_train.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    wm_train.add_argument("--scratch-channel", action="store_true",
                          help="three input channels: majority map, failure density (keeps thin scratches), footprint")
    wm_train.add_argument("--classical", action="store_true",
                          help="the fast classical model (density, Radon and geometry features + a small MLP)")
    _add_training_options(wm_train)
    wm_train.set_defaults(handler=cmd_wafermap_train)

    results = commands.add_parser("results", help="print stored results as CSV or JSON lines")
    results.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    results.add_argument("--format", choices=("csv", "json"), default="csv",
                         help="csv (one header row) or json (one object per line)")
    results.add_argument("--verdict", choices=[str(v) for v in Verdict], help="only results with this verdict")
    results.add_argument("--since", metavar="ISO", help="only results acquired at or after this time (UTC if naive)")
    results.add_argument("--run", type=int, metavar="ID", help="only results of this run")
    results.set_defaults(handler=cmd_results)

    calibrate = commands.add_parser("calibrate", help="station calibration: camera intrinsics, dark/flat frames")
    calibrate_commands = calibrate.add_subparsers(dest="calibrate_command", required=True, metavar="COMMAND")
    camera = calibrate_commands.add_parser("camera", help="intrinsics and distortion from checkerboard views")
    camera.add_argument("--images", required=True, metavar="GLOB", help="checkerboard images (quote the pattern)")
    camera.add_argument("--board", type=_board, required=True, metavar="COLSxROWS", help="inner corners, e.g. 9x6")
    camera.add_argument("--square-mm", type=float, required=True, help="side of one square in millimetres")
    camera.add_argument("--min-boards", type=int, default=5, help="refuse with fewer boards found (default 5)")
    camera.add_argument("--max-rms", type=float, default=0.5, help="refuse above this RMS in px (default 0.5)")
    camera.set_defaults(handler=cmd_calibrate_camera)
    flatfield = calibrate_commands.add_parser("flatfield", help="mean dark and flat frames for flat-field correction")
    flatfield.add_argument("--dark", required=True, metavar="GLOB", help="frames with the light off or lens capped")
    flatfield.add_argument("--flat", required=True, metavar="GLOB", help="frames of a uniform bright target")
    flatfield.set_defaults(handler=cmd_calibrate_flatfield)
    for sub in (camera, flatfield):
        sub.add_argument("--station", required=True, help="station name: results go to ROOT/STATION/")
        sub.add_argument("--root", type=Path, default=Path("calibration"), help="calibration folder (default "
                         "calibration)")

    pcb = commands.add_parser("pcb", help="PCB inspection against a golden template (DeepPCB types)")
    pcb_commands = pcb.add_subparsers(dest="pcb_command", required=True, metavar="COMMAND")
    pcb_inspect = pcb_commands.add_parser("inspect", help="defect boxes with type and score for one board")
    pcb_inspect.add_argument("test", type=Path, help="image of the board under test")
    pcb_inspect.add_argument("--template", type=Path, required=True, help="image of the defect-free golden board")
    pcb_inspect.add_argument("--out", type=Path, metavar="PNG", help="draw the boxes on the test image")
    pcb_inspect.add_argument("--json", action="store_true")
    pcb_eval = pcb_commands.add_parser("eval", help="DeepPCB metric (IoU > 0.33, same type) on a pair list")
    pcb_eval.add_argument("root", type=Path, help="folder the list's paths are relative to")
    pcb_eval.add_argument("--list", type=Path, required=True, help="pairs, one 'IMAGE.jpg ANNOTATION.txt' a line")
    pcb_eval.add_argument("--json", action="store_true")
    pcb_eval.add_argument("--workers", type=int, default=2, help="pairs inspected in parallel (default 2)")
    pcb_eval.add_argument("--shift-px", type=float, default=0.0, help="move each test image by up to this much")
    pcb_eval.add_argument("--rotate-deg", type=float, default=0.0, help="turn each test image by up to this much")
    pcb_eval.add_argument("--seed", type=int, default=0, help="seed of the moves")
    pcb_eval.add_argument("--compare", type=Path, metavar="MODEL", help="also evaluate this model on the same "
                          "(equally moved) pairs: the difference and its paired 95%% interval")
    for sub in (pcb_inspect, pcb_eval):
        sub.add_argument("--recipe", default="pcb-deeppcb", metavar="FILE",
                         help="pcb recipe YAML or the bundled pcb-deeppcb (default): its chain and classify section")
        sub.add_argument("--model", type=Path, help="PCB model folder (default: the recipe's classify.model)")
        sub.add_argument("--min-score", type=float, help="report defects at least this likely (default: the recipe's, "
                         "else the card's)")
        _add_device_option(sub)
        precision = sub.add_mutually_exclusive_group()
        precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                               help="classify with the model's INT8 variant (inspect export MODEL --int8 --calib "
                               "CROPS); default: the recipe's classify.precision")
        precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                               help="classify with the model's FP32 graph")
        sub.set_defaults(handler=cmd_pcb_inspect if sub is pcb_inspect else cmd_pcb_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("run", "teach") and args.frames is not None and args.frames < 1:
        print(f"inspect: error: --frames must be at least 1, got {args.frames}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except InspectionError as exc:
        print(f"inspect: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `inspect results | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
