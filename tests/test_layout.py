"""The package layout: inspect/ is a source folder, never a package that shadows the standard library."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_cli

PACKAGE = REPO_ROOT / "inspect" / "inspection"
# Data flows one way; each stage may import only the stages before it (and the shared modules).
STAGES = ["acquire", "preprocess", "align", "measure", "classify", "wafermap", "grade", "report"]
SHARED = {"types", "recipe", "synthetic"}


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


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_data_flows_one_way_and_torch_stays_in_train() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        module = parts[0]
        for name in _imports(path):
            top = name.split(".")[0]
            if top in {"torch", "torchvision", "albumentations"} and module != "train":
                problems.append(f"{path}: imports {name} outside train/")
            if not name.startswith("inspection.") or module not in STAGES:
                continue
            target = name.split(".")[1]
            if target in STAGES and STAGES.index(target) > STAGES.index(module):
                problems.append(f"{path}: stage {module} imports the later stage {target}")
            if target in {"pipeline", "cli", "train"}:
                problems.append(f"{path}: stage {module} imports {target}")
    assert not problems, "\n".join(problems)


def test_inference_path_does_not_import_torch() -> None:
    code = ("import sys, inspection.cli, inspection.pipeline, inspection.classify, inspection.pcb; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_lists_the_architectures_and_loss_weightings_training_builds() -> None:
    pytest.importorskip("torch", reason="training needs the [train] extra")
    from inspection.cli import CLASS_WEIGHTINGS, TRAIN_ARCHITECTURES
    from inspection.train import ARCHITECTURES
    from inspection.train.loop import CLASS_WEIGHTINGS as TRAINING_CLASS_WEIGHTINGS

    assert TRAIN_ARCHITECTURES == ARCHITECTURES
    assert CLASS_WEIGHTINGS == TRAINING_CLASS_WEIGHTINGS
