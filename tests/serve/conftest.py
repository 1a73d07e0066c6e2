"""A real line's results database, and ``inspect serve`` over it as a user starts it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def line_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames of the bundled wafer station with the pictures and crops of the parts that did not pass."""
    root = tmp_path_factory.mktemp("serve")
    run_cli("run", "--recipe", "wafer-die", "--camera", "sim:wafer?seed=2", "--frames", "40", "--db",
            str(root / "line.db"), "--save-ng", str(root / "ng"), "-q")
    return root / "line.db"


@pytest.fixture(scope="module")
def graded_lots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of lot reports holding one generated lot of two wafers, graded with the bundled recipe."""
    root = tmp_path_factory.mktemp("lots")
    run_cli("synth", "lot", str(root / "lot-a"), "--wafers", "2", timeout=300)
    run_cli("grade", str(root / "lot-a"), "--out", str(root / "lots" / "lot-a"), "--workers", "1", timeout=600)
    return root / "lots"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served(db: Path, *, review_token: str | None = None) -> Iterator[str]:
    """``inspect serve --db DB`` on a free port (with ``INSPECT_REVIEW_TOKEN`` when given); yields its URL."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key != "INSPECT_REVIEW_TOKEN"}
    if review_token is not None:
        env["INSPECT_REVIEW_TOKEN"] = review_token
    server = subprocess.Popen([sys.executable, "-m", "inspection", "serve", "--db", str(db), "--port", str(port)],
                              stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the server's start-up, slow on a busy machine
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=5)
                break
            except urllib.error.HTTPError:  # it answers (a refusal of stored data is an answer)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"inspect serve did not answer at {url}: {server.stderr.read()}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def local_client(app: Any) -> Any:
    """A test client that reaches the station by its loopback address, as a browser on the station does (the
    station answers 421 to other Host names)."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1")
