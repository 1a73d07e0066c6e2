from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be collected


def pool_workers(process: subprocess.Popen[Any], *, count: int = 2, timeout_s: float = 120) -> set[int]:
    """The child processes of ``process`` once ``count`` of them have started (Linux /proc)."""
    deadline, workers = time.monotonic() + timeout_s, set()
    while len(workers) < count and time.monotonic() < deadline and process.poll() is None:
        workers = _children(process.pid)
        time.sleep(0.05)
    assert len(workers) >= count, "the pool's workers did not start"
    return workers


def survivors(pids: set[int], *, timeout_s: float = 10) -> list[int]:
    """Those of ``pids`` still running after up to ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]
