"""``inspect run``, ``inspect teach``, ``inspect results``: the line loop, its golden and its results."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import yaml

from inspection.acquire import SCHEMES, CameraError, open_camera, stream_frames
from inspection.align.wafer import whole_wafer_radius_px
from inspection.chain.chain import PartChain, build_chain
from inspection.chain.hooks import Hook, HookDispatcher, installed_hooks, load_hook
from inspection.chain.line import LineStats, StationCheck, check_station, run_line, teach_reference
from inspection.chain.metrics import LineMetrics
from inspection.cli.common import (
    UsageError,
    add_device_option,
    integer,
    number,
    software_version,
)
from inspection.model_paths import ModelNotFoundError, find_model
from inspection.recipe import BUNDLED_RECIPES, Recipe, load_recipe, read_recipe_yaml
from inspection.report import ResultStore, StoreError, read_results, save_png
from inspection.report.store import RESULT_COLUMNS
from inspection.report.tables import spreadsheet_safe
from inspection.types import Frame, InspectionError, Verdict

if TYPE_CHECKING:
    from inspection.chain.opcua import OpcUaServer

DEFAULT_DB = Path("results/inspect.db")
OPCUA_PASSWORD_VARIABLE = "INSPECT_OPCUA_PASSWORD"


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


class _StoppedWhileStarting(BaseException):
    """SIGTERM before the line runs: nothing in flight to finish."""


class _StartupStop:
    """SIGTERM while the line starts: raised at once, or, while the run's row is being written (``deferred``),
    kept until the run can be marked (a SIGTERM between the insert and the code that marks it left the run
    "running")."""

    def __init__(self) -> None:
        self.deferred = False
        self.pending = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        if self.deferred:
            self.pending = True
            return
        raise _StoppedWhileStarting

    def resume(self) -> None:
        """End the deferral; a SIGTERM that came meanwhile is raised now."""
        self.deferred = False
        if self.pending:
            raise _StoppedWhileStarting


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


def line_camera(recipe: Recipe, uri: str | None) -> str:
    """The camera URI to open: ``--camera`` or the recipe's.

    A folder whose frames bring their golden beside them lists only the frames (``glob=*TEST*``) unless the URI
    names its own ``glob``.

    Parameters
    ----------
    recipe : Recipe
    uri : str, optional
        The command line's ``--camera``.

    Returns
    -------
    str
    """
    uri = uri or (recipe.camera.uri if recipe.camera is not None else None)
    if not uri:
        raise CameraError(f"recipe {recipe.name!r} names no camera; give --camera URI "
                          f"({', '.join(s + ':...' for s in SCHEMES)})")
    beside = recipe.reference.beside if recipe.reference is not None else None
    if beside is not None and uri.startswith("folder:") and "glob=" not in uri:
        uri += ("&" if "?" in uri else "?") + f"glob=*{beside.test}*"
    return uri


def _opcua(args: argparse.Namespace, recipe: Recipe) -> OpcUaServer | None:
    """The OPC UA server --opcua asks for, started (a port in use fails before the camera or database)."""
    endpoint = args.opcua or (recipe.opcua.endpoint if recipe.opcua is not None else None)
    if endpoint is None:
        return None
    try:
        from inspection.chain.opcua import NAMESPACE, OpcUaServer, TriggerGate  # asyncua only for a run that asks
    except ImportError as exc:
        raise UsageError(f"--opcua needs the [opcua] extra (asyncua): pip install -e '.[opcua]' ({exc})") from None

    user = args.opcua_user or (recipe.opcua.user if recipe.opcua is not None else None)
    users = {}
    if user is not None:
        password = os.environ.get(OPCUA_PASSWORD_VARIABLE)
        if not password:
            raise UsageError(f"OPC UA user {user}: set its password in the environment variable "
                             f"{OPCUA_PASSWORD_VARIABLE} (never on the command line or in the recipe)")
        users[user] = password
    security = recipe.opcua
    trusted = security.trusted_users if security is not None else {}
    port = endpoint.rstrip("/").rsplit(":", 1)[-1]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--opcua {endpoint}: expected opc.tcp://HOST:PORT with a port within 1..65535")
    plaintext = args.opcua_plaintext_passwords or (security is not None and security.plaintext_passwords)
    try:
        server = OpcUaServer(endpoint, recipe=f"{recipe.name} ({recipe.sha256()[:12]})", users=users,
                             gate=TriggerGate(), certificate=security.certificate if security is not None else None,
                             private_key=security.private_key if security is not None else None,
                             trusted_users=trusted, plaintext_passwords=plaintext,
                             unencrypted_endpoint=security is not None and security.unencrypted_endpoint)
    except InspectionError as exc:
        raise UsageError(str(exc)) from None
    server.start()
    writers = [*users, *(f"{name} (certificate)" for name in trusted)]
    if server.certificate is None:
        print(f"inspect: warning: OPC UA on {endpoint} offers only the unencrypted endpoint (security None): "
              "anyone on the network reads the results" + (" and the password crosses it in clear text"
                                                           if users else "")
              + "; give the recipe's opcua section a certificate and private_key to encrypt", file=sys.stderr)
    signed = (", signed and encrypted" + (" and unencrypted endpoints" if server.unencrypted_endpoint else
                                          " endpoint only") if server.certificate is not None else "")
    print(f"inspect: OPC UA on {endpoint} (namespace {NAMESPACE}{signed}); "
          + (f"{', '.join(writers)} may trigger, start and stop" if writers else "read-only: no user named"),
          file=sys.stderr)
    return server


def _recipe_selector(args: argparse.Namespace, chain: PartChain, store: ResultStore, *, run_id: int
                     ) -> Callable[[str], str]:
    """What OPC UA's SelectRecipe does: build the named recipe's chain and put it in place between parts; the
    selection is stored as an event of the run (its results name the recipe by that event)."""

    def select(name: str) -> str:
        recipe = load_recipe(name)
        if recipe.kind == "wafer-lot":
            raise UsageError(f"recipe {recipe.name!r} is a wafer-lot recipe; the line runs wafer-die and pcb recipes")
        chain.replace_with(build_chain(recipe.with_classify(device=args.device)))
        active = f"{recipe.name} ({recipe.sha256()[:12]})"
        store.add_event(run_id, kind="recipe-selected", source=str(recipe.source_path or name),
                        detail=f"{active}, model {chain.model_sha256 or 'none'}")
        return active

    return select


def _hooks(args: argparse.Namespace) -> list[Hook]:
    """The run's result hooks: the metrics endpoint, --hook callables, installed entry points."""
    hooks: list[Hook] = []
    if args.metrics_port is not None:
        metrics = LineMetrics()
        try:
            metrics.serve(args.metrics_port, host=args.metrics_host)
        except OSError as exc:
            raise UsageError(f"--metrics-port {args.metrics_port}: cannot listen on {args.metrics_host} "
                             f"({exc.strerror or exc})") from None
        print(f"inspect: metrics on http://{args.metrics_host}:{args.metrics_port}/metrics", file=sys.stderr)
        hooks.append(metrics)
    hooks += [load_hook(spec) for spec in args.hook]
    return hooks + installed_hooks()


def _model_given_here(model: str) -> str:
    """A model named on the command line: a folder here is meant from here, not from the recipe's folder; anything
    else is an installed model's name, found as a recipe's would be."""
    given = Path(model)
    return str(given.resolve()) if given.is_dir() else model


def _cmd_run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if recipe.kind == "wafer-lot":
        raise UsageError(f"recipe {recipe.name!r} is a wafer-lot recipe: grade its wafers with `inspect grade "
                         f"FOLDER --recipe {args.recipe}`")
    if args.model is not None:
        if recipe.classify is None:
            raise UsageError(f"--model {args.model}: recipe {recipe.name!r} has no classify section (its verdicts "
                             "are by size); give a recipe with one")
        recipe = recipe.with_classify(model=_model_given_here(args.model))
    if args.anomaly is not None:
        if recipe.anomaly is None:
            raise UsageError(f"--anomaly {args.anomaly}: recipe {recipe.name!r} has no anomaly section; give one with "
                             "it (bundled: pcb-anomaly)")
        recipe = recipe.model_copy(update={"anomaly": recipe.anomaly.model_copy(update={
            "model": _model_given_here(args.anomaly)})})
    uri = line_camera(recipe, args.camera)
    hooks = _hooks(args)  # a hook that cannot load, or a port in use, fails before the camera or database
    opcua = _opcua(args, recipe)
    if opcua is not None:
        hooks.insert(0, opcua)
    try:
        return _run(args, recipe, uri, hooks, opcua)
    finally:
        if opcua is not None:
            opcua.close()


def _run(args: argparse.Namespace, recipe: Recipe, uri: str, hooks: list[Hook], opcua: OpcUaServer | None) -> int:
    camera = open_camera(uri)
    if opcua is not None:  # a frame per PLC trigger
        from inspection.chain.opcua import TriggeredCamera  # asyncua only for a run that asks

        camera = TriggeredCamera(camera, opcua.gate)
    if recipe.camera is not None:
        camera.set_up(recipe.camera)  # exposure, gain, trigger ...: applied when opened, read back
    camera.open()  # a wrong camera fails here, before the database is created or touched
    # Until the line's draining handler takes over, SIGTERM ends the start-up (model loading can take seconds)
    # through the finally below, so the run is marked, not left "running" by a process killed at once.
    startup_stop = _StartupStop()
    startup_stop.deferred = True  # until the try below can mark the run
    signal.signal(signal.SIGTERM, startup_stop)
    try:
        store = ResultStore(args.db)
        run_id = store.start_run(camera=uri, recipe_name=recipe.name, recipe_sha256=recipe.sha256(),
                                 software_version=software_version())
        if camera.applied:
            store.add_event(run_id, kind="camera-settings", source=uri, detail=json.dumps(camera.applied))
            print(f"inspect: camera set up: {json.dumps(camera.applied)}", file=sys.stderr)
    except BaseException:
        camera.close()
        raise
    status, failure, chain, dispatcher = "failed", None, None, None
    try:
        startup_stop.resume()
        chain = build_chain(recipe.with_classify(device=args.device))
        store.set_run_model(run_id, model_sha256=chain.model_sha256)
        if opcua is not None:
            opcua.select_recipe = _recipe_selector(args, chain, store, run_id=run_id)
        stop = threading.Event()
        _install_stop_handlers(stop)
        checked = chain.classifier.check_report if chain.classifier is not None else None
        model = (f", model {recipe.classify.model} {chain.classifier.variant}"
                 + (f" (checked here: max |dp| {checked['max_abs_diff']:.1e} on {checked['images']} check inputs)"
                    if checked else "")
                 if recipe.classify is not None and chain.classifier is not None else
                 ", no classifier (verdicts by size)")
        print(f"inspect: run {run_id}: camera {uri}, recipe {recipe.name} ({recipe.source_path}){model}, "
              f"results -> {args.db}", file=sys.stderr)
        dispatcher = HookDispatcher(hooks)
        stats = run_line(camera, chain, store, run_id=run_id, stop=stop, max_frames=args.frames,
                         save_ng_dir=args.save_ng, on_status=_StatusPrinter(quiet=args.quiet), hooks=dispatcher)
        status = "stopped" if stop.is_set() else "completed"
        if stats.committed and stats.verdicts["error"] == stats.committed:
            status, failure = "failed", f"every one of the {stats.committed} frame(s) ended in error"
    except InspectionError as exc:
        failure = str(exc)
        raise
    except _StoppedWhileStarting:
        status, failure = "stopped", "SIGTERM while the line was starting"
        raise KeyboardInterrupt from None
    finally:
        try:
            store.finish_run(run_id, status=status, reason=failure)
        except StoreError as exc:  # the database that failed the run may not take its end either
            print(f"inspect: error: run {run_id} could not be marked {status}: {exc}", file=sys.stderr)
        store.close()
        camera.close()  # run_line closed it, unless the run ended before it started
        if dispatcher is not None:
            dispatcher.close()
            if dispatcher.dropped or dispatcher.errors:
                print(f"inspect: result hooks: {dispatcher.dropped} event(s) dropped (hooks too slow), errors "
                      f"{dict(dispatcher.errors) or 0}", file=sys.stderr)
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
    pictures = ""
    if args.save_ng:
        pictures = (f", {stats.pictures_not_saved} picture(s) of non-passing parts could not be saved in "
                    f"{args.save_ng}" if stats.pictures_not_saved else f", pictures of non-passing parts in "
                    f"{args.save_ng}")
    print(f"inspect: run {run_id} {status}: {stats.committed} result(s) committed to {args.db}{pictures}",
          file=sys.stderr)
    if failure:
        print(f"inspect: error: {failure}", file=sys.stderr)
        return 1
    return 0


def _cmd_teach(args: argparse.Namespace) -> int:
    if args.recipe is not None:
        return _teach_station(args)
    with open_camera(args.camera) as camera:
        golden = teach_reference(camera, frames=args.frames, timeout_s=args.timeout)
    path = _save_golden(golden, args.out, frames=args.frames)
    hint = f"reference: {{golden: {path.name}}}"
    if golden.bit_depth not in (8, 16):
        hint += f" and preprocess: {{bit_depth: {golden.bit_depth}}}"
    print(f"inspect: use it in a recipe beside it: {hint} (or let inspect teach --recipe write the recipe)",
          file=sys.stderr)
    return 0


def _save_golden(golden: Frame, out: Path, *, frames: int) -> Path:
    image = golden.image if golden.layout != "rgb" else golden.image[:, :, ::-1]  # PNG files are BGR in OpenCV
    path = save_png(out, image)
    print(f"inspect: golden reference {path}: {golden.width_px}x{golden.height_px} {golden.layout} "
          f"{golden.bit_depth}-bit, the median of {frames} frames from {golden.source_id}", file=sys.stderr)
    return path


def _teach_station(args: argparse.Namespace) -> int:
    """A new station's recipe: the given recipe with this camera and a golden taught from it, checked on a few
    more frames."""
    if args.out.suffix.lower() not in (".yaml", ".yml"):
        raise UsageError(f"--out {args.out}: with --recipe, --out is the station's new recipe (a .yaml file); its "
                         "golden is written beside it")
    base = load_recipe(args.recipe)
    if base.kind == "wafer-lot":
        raise UsageError(f"--recipe {args.recipe}: a wafer-lot recipe grades whole wafers without a golden; "
                         f"inspect grade FOLDER --recipe {args.recipe}")
    if base.reference is None or base.reference.beside is not None:
        raise UsageError(f"--recipe {args.recipe}: recipe {base.name!r} takes no taught golden (its frames bring "
                         "their template beside them, or it has none); give a wafer-die or pcb recipe with one")
    data, _ = read_recipe_yaml(args.recipe)
    with open_camera(args.camera) as camera:
        golden = teach_reference(camera, frames=args.frames, timeout_s=args.timeout)
        trial = list(stream_frames(camera, timeout_s=args.timeout, stop=threading.Event(),
                                   max_frames=args.check_frames, give_up_after_s=args.timeout))
    golden_path = _save_golden(golden, args.out.with_name(args.out.stem + "-golden.png"), frames=args.frames)
    data["name"] = args.out.stem
    camera_section = data.get("camera")
    data["camera"] = {**(camera_section if isinstance(camera_section, dict) else {}), "uri": args.camera}
    data["reference"] = {**data["reference"], "golden": golden_path.name}
    if golden.bit_depth not in (8, 16):
        data["preprocess"] = {**(data.get("preprocess") or {}), "bit_depth": golden.bit_depth}
    if base.classify is not None:
        data["classify"] = {**data["classify"], "model": _model_reference(Path(base.classify.model), args.out.parent)}
    text = (f"# Made by inspect teach from recipe {args.recipe} and camera {args.camera} on "
            f"{time.strftime('%Y-%m-%d')}; every key is described in the README's recipe section.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot be written ({exc.strerror or exc})") from None
    recipe = load_recipe(args.out)
    with build_chain(recipe) as chain:
        check = check_station(chain, trial)
    _print_station_check(check, recipe=args.out, golden=golden)
    return 0


def _model_reference(model: Path, recipe_folder: Path) -> str:
    """How a new recipe in ``recipe_folder`` names ``model``: by name when the search path finds it from
    anywhere, else its path from the recipe's folder."""
    try:
        if find_model(model.name) == model.resolve():
            return model.name
    except ModelNotFoundError:
        pass
    return os.path.relpath(model.resolve(), recipe_folder.resolve())


def _print_station_check(check: StationCheck, *, recipe: Path, golden: Frame) -> None:
    scores, candidates = check.alignment_scores, check.candidates
    width, height = check.size_px or (golden.width_px, golden.height_px)
    aligned = (f"alignment score median {statistics.median(scores):.3f}, lowest {min(scores):.3f}" if scores
               else "no frame aligned")
    found = (f"candidates per frame mean {statistics.mean(candidates):.1f}, most {max(candidates)}" if candidates
             else "no candidates")
    verdicts = ", ".join(f"{name} {count}" for name, count in sorted(check.verdicts.items()))
    print(f"inspect: checked {check.frames} more frame(s) of {width}x{height} px through {recipe}: {aligned}; "
          f"{found}; {verdicts or 'no verdicts'}", file=sys.stderr)
    for reason, count in check.errors.most_common(3):
        print(f"inspect: {count} frame(s): {reason}", file=sys.stderr)
    mostly_errors = sum(check.errors.values()) * 2 >= check.frames > 0
    troubled = mostly_errors or bool(candidates and statistics.mean(candidates) > 20)
    whole = whole_wafer_radius_px(golden.image) if troubled else None
    if whole is not None:
        print(f"inspect: these frames look like whole wafers (a wafer of radius {whole:.0f} px in view): grade "
              f"them with inspect grade FOLDER --recipe wafer-lot (this recipe judges die areas against a golden)",
              file=sys.stderr)
    elif troubled:
        print(f"inspect: most frames did not pass cleanly: check the camera's focus and lighting, and the recipe's "
              f"align and inspect sections in {recipe}", file=sys.stderr)
    else:
        print(f"inspect: run it: inspect run --recipe {recipe}", file=sys.stderr)


def _cmd_results(args: argparse.Namespace) -> int:
    rows = read_results(args.db, verdict=args.verdict, since=args.since, run_id=args.run)
    first = next(rows, None)  # a database that cannot be read fails here, before anything is printed
    rows = itertools.chain([first] if first is not None else [], rows)
    out = sys.stdout
    if args.format == "json":
        for row in rows:
            out.write(json.dumps(row) + "\n")
        return 0
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow(spreadsheet_safe(json.dumps(v) if isinstance(v, list | dict) else v for v in row.values()))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``inspect`` parser.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``inspect`` parser's sub-commands.
    """
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
    run.add_argument("--model", metavar="MODEL", help="run this classifier instead of the recipe's classify.model "
                     "(a folder or an installed model's name; the run records it)")
    run.add_argument("--anomaly", metavar="MODEL", help="run this anomaly model instead of the recipe's anomaly.model "
                     "(a product's model from inspect train-anomaly --init)")
    add_device_option(run)
    run.add_argument("--frames", type=integer(1, 10**12), metavar="N",
                     help="stop after N frames (default: until the source ends)")
    run.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    run.add_argument("--save-ng", type=Path, metavar="DIR", help="save pictures of non-passing parts here")
    run.add_argument("--metrics-port", type=integer(1, 65_535), metavar="PORT",
                     help="serve Prometheus metrics on this port (http://HOST:PORT/metrics) while the run lasts")
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                     help="address the metrics endpoint listens on (0.0.0.0: every interface)")
    run.add_argument("--opcua", metavar="opc.tcp://HOST:PORT",
                     help="serve the vision system over OPC UA (OPC 40100 style: state, Start/Stop/Reset, the PLC "
                          "trigger handshake, each part's result and an event); frames are then grabbed per trigger "
                          "(default: the recipe's opcua.endpoint, if any)")
    run.add_argument("--opcua-user", metavar="NAME",
                     help="the user who may write (trigger) and call methods; its password comes from "
                          f"${OPCUA_PASSWORD_VARIABLE}. Without one (here or as the recipe's opcua.user), the "
                          "server is read-only")
    run.add_argument("--opcua-plaintext-passwords", action="store_true",
                     help="let --opcua-user's password cross the unencrypted endpoint (a closed network only); "
                          "otherwise a user needs the recipe's opcua certificate and private_key")
    run.add_argument("--hook", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="call this after every commit with the line's event (repeatable; a class is instantiated "
                          "once); it runs on its own thread and can neither stall nor stop the line")
    run.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    run.set_defaults(handler=_cmd_run)

    teach = commands.add_parser(
        "teach", help="teach a golden reference from a camera, and with --recipe the station's own recipe",
        description="Grab N frames of defect-free parts and write their per-pixel median as the golden "
                    "reference a recipe compares against (pixels, layout and bit depth kept). With --recipe, "
                    "--out is a new recipe: the given one with this camera and the golden (written beside it as "
                    "NAME-golden.png), checked on --check-frames more frames (frame size, alignment, candidates, "
                    "verdicts).",
    )
    teach.add_argument("--camera", required=True, metavar="URI", help="the station's camera URI")
    teach.add_argument("--out", required=True, type=Path, metavar="PNG|YAML",
                       help="the golden image; with --recipe, the station's new recipe")
    teach.add_argument("--recipe", metavar="FILE",
                       help=f"make a recipe for this camera from this one (a file or {', '.join(BUNDLED_RECIPES)})")
    teach.add_argument("--check-frames", type=integer(1, 1000), default=5, metavar="N",
                       help="with --recipe: frames to check the new recipe's chain on (default 5)")
    teach.add_argument("--frames", type=integer(1, 1000), default=9, metavar="N",
                       help="frames to take the median of (default 9)")
    teach.add_argument("--timeout", type=number(0.01, 3600), default=5.0, metavar="S",
                       help="fetch timeout per frame (default 5 s)")
    teach.set_defaults(handler=_cmd_teach)

    results = commands.add_parser(
        "results", help="print stored results as CSV or JSON lines",
        description="Print the results the line committed to its database, oldest first: per part its run, "
                    "source and frame, times, verdict and reason, detections (class, score, box, area in um2), "
                    "per-stage latency and the files of its picture and crops. Filters combine.")
    results.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results database (default: {DEFAULT_DB})")
    results.add_argument("--format", choices=("csv", "json"), default="csv",
                         help="csv (one header row) or json (one object per line)")
    results.add_argument("--verdict", choices=[str(v) for v in Verdict], help="only results with this verdict")
    results.add_argument("--since", metavar="ISO", help="only results acquired at or after this time (UTC if naive)")
    results.add_argument("--run", type=integer(1, 2**62), metavar="ID", help="only results of this run")
    results.set_defaults(handler=_cmd_results)
