"""packaging/build_bundle.py: the offline bundle installs into a fresh venv with no index, models included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_bundle_installs_offline_and_lists_its_models(demo_package, tmp_path):
    if not list((ROOT / ".wheels").glob("llama_cpp_python-*.whl")):
        pytest.skip("no prebuilt llama-cpp-python wheel in .wheels/ (`make test` builds it)")
    bundle = tmp_path / "bundle"
    built = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_bundle.py"), "-o", str(bundle),
                            "--model", str(demo_package("gguf", "q4_k_m"))], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    assert len(list((bundle / "models").glob("*.tar"))) == 1
    wheels = {p.name.split("-")[0].lower() for p in (bundle / "wheels").glob("*.whl")}
    assert {"localai", "llama_cpp_python", "onnxruntime", "textual", "numpy"} <= wheels

    # the workstation: no index at all, a store of its own
    env = {**os.environ, "LOCALAI_HOME": str(tmp_path / "home"), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    venv = tmp_path / "venv"
    installed = subprocess.run(["sh", str(bundle / "install.sh"), str(venv)], capture_output=True, text=True, env=env,
                               cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run([str(venv / "bin" / "localai"), "ls", "--json"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [model] = json.loads(listed.stdout)
    assert model["quant"] == "q4_k_m" and model["architecture"] == "nemotron_h"
    answer = subprocess.run([str(venv / "bin" / "localai"), "run", model["name"], "--prompt", "What is 123 + 4567?",
                             "--temperature", "0"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert answer.returncode == 0 and "4690" in answer.stdout, answer.stderr
