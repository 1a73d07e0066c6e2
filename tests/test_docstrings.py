"""The public API documents itself in one style (numpydoc), so the reference that pdoc builds is complete."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from numpydoc.docscrape import FunctionDoc

STAGE_PACKAGES = ("acquire", "preprocess", "calibrate", "align", "measure", "classify", "wafermap", "grade",
                  "report")
TOOLKIT_MODULES = ("measure.metrology", "measure.grid", "align.wafer", "align.match")
RUNNER_PACKAGES = ("chain", "serve", "cli")
"""Every module of these: its public functions (the runners, the web application, the command line)."""


def _public_functions() -> list[tuple[str, object]]:
    found = []
    for name in STAGE_PACKAGES:
        package = importlib.import_module(f"inspection.{name}")
        assert hasattr(package, "__all__"), f"inspection.{name} names its public API in __all__"
        found += [(f"{name}.{member}", getattr(package, member)) for member in package.__all__
                  if inspect.isfunction(getattr(package, member, None))]  # submodules are listed too
    runner_modules = [info.name.removeprefix("inspection.") for name in RUNNER_PACKAGES
                      for info in pkgutil.iter_modules(importlib.import_module(f"inspection.{name}").__path__,
                                                       f"inspection.{name}.")]
    for name in (*TOOLKIT_MODULES, *RUNNER_PACKAGES, *runner_modules):
        module = importlib.import_module(f"inspection.{name}")
        found += [(f"{name}.{member}", value) for member, value in vars(module).items()
                  if inspect.isfunction(value) and value.__module__ == module.__name__ and not member.startswith("_")]
    return found


@pytest.mark.parametrize(("name", "function"), _public_functions(), ids=lambda value: value if isinstance(value, str)
                         else "")
def test_public_function_documents_its_parameters_and_result(name: str, function: object) -> None:
    doc = FunctionDoc(function)
    documented = {part.strip().lstrip("*") for parameter in doc["Parameters"] for part in parameter.name.split(",")}
    wanted = [p for p in inspect.signature(function).parameters if p not in ("self", "args", "kwargs")]
    assert not [p for p in wanted if p not in documented], f"{name}: parameters without a Parameters entry"
    returns_something = inspect.signature(function).return_annotation not in ("None", None)
    assert not returns_something or doc["Returns"] or doc["Yields"], f"{name}: no Returns or Yields section"
    assert doc["Summary"], f"{name}: no one-line summary"


def test_the_api_reference_builds(tmp_path: Path) -> None:
    pytest.importorskip("pdoc", reason="the [docs] extra builds the API reference")
    out = tmp_path / "api"
    subprocess.run([sys.executable, "-m", "pdoc", "--docformat", "numpy", "--output-directory", str(out),
                    "inspection", "!inspection.train", "!inspection.cli"], check=True, capture_output=True,
                   timeout=300)
    page = (out / "inspection" / "measure" / "metrology.html").read_text()
    assert "edge_to_edge_px" in page and "Parameters" in page
