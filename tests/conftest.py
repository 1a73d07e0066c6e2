from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m inspection ARGS`` as a user would, returning the finished process."""
    process = subprocess.run([sys.executable, "-m", "inspection", *args], capture_output=True, text=True,
                             timeout=timeout, cwd=cwd, env=env)
    if check and process.returncode != 0:
        raise AssertionError(f"inspect {' '.join(args)} exited {process.returncode}:\n{process.stderr}")
    return process


def results_json(db: Path, *extra: str) -> list[dict]:
    out = run_cli("results", "--db", str(db), "--format", "json", *extra).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="session")
def viky_cti() -> Path:
    """The GenTL producer of virtual cameras shipped inside the genicam package."""
    spec = importlib.util.find_spec("genicam")
    if spec is None or spec.origin is None:
        pytest.skip("the genicam package ([camera] extra) is not installed")
    path = Path(spec.origin).parent / "viky.cti"
    if not path.is_file():
        pytest.skip(f"genicam package has no viky.cti at {path}")
    pytest.importorskip("harvesters")
    return path


@pytest.fixture(scope="session")
def pylon_emulator() -> None:
    pytest.importorskip("pypylon", reason="pypylon ([camera] extra) is not installed")
