"""The package layout: inspect/ is a source folder, never a package that shadows the standard library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from tests.conftest import REPO_ROOT, run_cli


def test_inspect_folder_is_not_a_package() -> None:
    assert not (REPO_ROOT / "inspect" / "__init__.py").exists(), "inspect/__init__.py shadows the stdlib inspect"


def test_import_inspect_from_repo_root_is_the_standard_library() -> None:
    code = "import inspect, sysconfig, pathlib; print(pathlib.Path(inspect.__file__).parent == " \
           "pathlib.Path(sysconfig.get_paths()['stdlib']))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def test_dataclasses_work_from_repo_root() -> None:
    code = "from dataclasses import dataclass\n@dataclass\nclass A:\n    x: int\nprint(A(1))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "A(x=1)", out.stderr


def test_console_script_and_module_entry_point() -> None:
    script = Path(sys.executable).with_name("inspect")
    assert script.exists() or shutil.which("inspect"), "the console script 'inspect' is not installed"
    out = subprocess.run([str(script) if script.exists() else "inspect", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("wafer-inspect")
    assert "run" in run_cli("--help").stdout


def test_the_import_contracts_hold() -> None:
    """The layering, the records' independence, torch only in train/, no cycles (pyproject.toml's contracts)."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_no_module_import_cycles() -> None:
    import grimp

    graph = grimp.build_graph("inspection")
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported):], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph.modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_inference_path_does_not_import_torch() -> None:
    code = ("import sys, inspection.cli, inspection.chain.line, inspection.chain.lot, inspection.chain.pairs; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_station_without_simulated_parts_never_loads_the_generators(tmp_path: Path) -> None:
    from inspection.sim.frames import golden_image, render_frame

    golden = tmp_path / "golden.png"
    cv2.imwrite(str(golden), golden_image("wafer"))
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "0001.png"), render_frame("wafer", 0, seed=1, defect_rate=1.0)[0])
    recipe = yaml.safe_load((REPO_ROOT / "inspect" / "inspection" / "recipes" / "wafer-die.yaml").read_text())
    recipe["reference"]["golden"] = str(golden)
    recipe["classify"]["model"] = str(REPO_ROOT / "models" / "wafer-line-patchnet-v1")
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(recipe))
    code = (
        "import sys\n"
        "from inspection.acquire import open_camera\n"
        "from inspection.chain.chain import build_chain, build_wafer_chain\n"
        "from inspection.recipe import load_recipe\n"
        f"with open_camera('folder:{tmp_path / 'frames'}') as camera, "
        f"build_chain(load_recipe('{tmp_path / 'station.yaml'}')) as chain:\n"
        "    part = chain(camera.grab(timeout_s=5))\n"
        "build_wafer_chain(load_recipe('wafer-lot')).close()\n"
        "print(part.verdict, sorted(m for m in sys.modules if m.startswith(('inspection.sim', 'inspection.samples'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    verdict, loaded = out.stdout.strip().split(" ", 1)
    assert verdict in ("pass", "fail", "review") and loaded == "[]", out.stdout


WRITES = {"write_text", "write_bytes", "imwrite", "savez", "savez_compressed", "mkdir", "tofile", "writerows"}
WRITERS = ("report", "calibrate", "classify")
"""What writes files: report (results, pictures, KLARF, SINF, E142, npz), calibrate (a station's calibration) and
classify (a model's card and its engine caches); training and the command line above them."""


def test_only_the_writers_write_files() -> None:
    import ast

    found = []
    for package in ("acquire", "preprocess", "align", "measure", "wafermap", "grade", "evaluate", "sim"):
        for path in sorted((REPO_ROOT / "inspect" / "inspection" / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                mode = next((arg.value for arg in node.args[:2] if isinstance(arg, ast.Constant)
                             and isinstance(arg.value, str) and arg.value[:1] in "wax"), None)
                if name in WRITES or (name == "open" and mode is not None):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert not found, f"only {', '.join(WRITERS)} write files: {found}"


def test_every_option_with_a_default_shows_it_in_help() -> None:
    import argparse

    from inspection.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        text = "".join(parser.format_help().split())  # help wraps lines, also at hyphens
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                  and not isinstance(action, argparse._StoreConstAction | argparse._CountAction | argparse._HelpAction
                                     | argparse._VersionAction)):
                shown = "default:" + "".join(str(action.default).split()) in text or "default" in (action.help or "")
                if not shown:
                    missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "inspect")
    assert not missing, missing


def test_every_benchmark_and_dataset_script_starts() -> None:
    # Scripts are outside the package, so nothing else imports them: a moved module would break them silently.
    scripts = sorted([*(REPO_ROOT / "benchmarks").glob("*.py"), *(REPO_ROOT / "datasets").glob("*.py")])
    assert len(scripts) >= 8
    code = ("import runpy, sys\n"
            "for path in sys.argv[1:]:\n"
            "    sys.argv = [path, '--help']\n"
            "    try:\n"
            "        runpy.run_path(path, run_name='__main__')\n"
            "    except SystemExit as stop:\n"
            "        assert stop.code in (0, None), (path, stop.code)\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, scripts)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


EXTRA_ONLY_MODULES = {"asyncua", "torch", "torchvision", "albumentations", "onnx", "matplotlib", "fastapi", "uvicorn",
                      "httpx", "harvesters", "genicam", "pypylon", "ray", "pytest", "hypothesis"}
"""Top-level modules that only an extra brings (the line's defaults must run without them)."""


@pytest.mark.slow
def test_an_installed_wheel_runs_every_default_from_an_empty_folder(tmp_path: Path) -> None:
    """What a line PC gets from `pip install wafer-inspect`: the shipped models travel inside the package."""
    dist, site, empty = tmp_path / "dist", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(REPO_ROOT)], check=True, capture_output=True)
    [wheel] = dist.glob("wafer_inspect-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    # Only `pip install wafer-inspect[cpu]`: every extra's packages are made unimportable (a sitecustomize that
    # refuses them), so a default that imports one fails here.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        f"EXTRAS = {sorted(EXTRA_ONLY_MODULES)!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in EXTRAS:\n"
        "            raise ImportError(f'No module named {name!r} (an extra this test leaves out)')\n"
        "sys.meta_path.insert(0, Block())\n")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{blocker}", "HOME": str(tmp_path)}  # the wheel's package

    def inspect(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "inspection", *args], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=600, check=True)

    code = "import inspection.model_paths as m; print(m.bundled_models_folder())"
    where = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True,
                           check=True).stdout.strip()
    assert where.startswith(str(site))
    shipped = sorted(p.name for p in Path(where).iterdir())
    assert "wafer-line-patchnet-v1" in shipped and not list(Path(where).glob("*/weights.pt"))
    inspect("synth", "lot", "lot", "--wafers", "2")
    summary = json.loads(inspect("grade", "lot", "--out", "graded", "--quiet", "--json").stdout)
    assert summary["graded"] == 2
    inspect("run", "--frames", "3", "--db", "line.db", "-q")
    refused = subprocess.run([sys.executable, "-m", "inspection", "run", "--opcua", "opc.tcp://127.0.0.1:4840",
                              "--frames", "1", "--db", "line.db"], cwd=empty, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "pip install -e '.[opcua]'" in refused.stderr
    assert "Center" in inspect("wafermap", "classify", "graded/maps/LOT0000_wafer-01.sinf").stdout
