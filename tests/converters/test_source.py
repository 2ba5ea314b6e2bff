"""converters/source.py: which sources may reach the network. Checked on real child processes whose Hugging
Face endpoint is a listener on loopback that counts the connections it gets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[int]]]:
    """A loopback address standing in for the hub, and how many connections reached it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            connections[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", connections
    stop.set()
    thread.join()
    server.close()


def convert(source: str, endpoint: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_ETAG_TIMEOUT": "2",
            "HF_HUB_DOWNLOAD_TIMEOUT": "2", "LOCALAI_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "localai.cli", "convert", source], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_missing_folder_never_reaches_the_network(endpoint, tmp_path):
    address, connections = endpoint
    result = convert("tok/missing-folder", address, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no checkpoint folder tok/missing-folder, and no Hugging Face repo tok/missing-folder in the local "
        "cache; to download it: localai convert hf:tok/missing-folder (or localai pull tok/missing-folder)"]
    assert connections[0] == 0


def test_the_hf_prefix_asks_the_hub(endpoint, tmp_path):
    address, connections = endpoint
    result = convert("hf:tok/missing-folder", address, tmp_path)
    assert result.returncode == 1 and connections[0] >= 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tok/missing-folder" in lines[0], lines


def test_a_source_that_is_neither_is_named(endpoint, tmp_path):
    address, connections = endpoint
    result = convert("not a folder", address, tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == "error: no checkpoint folder not a folder"
    assert connections[0] == 0
