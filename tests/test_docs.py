"""The Python examples in README.md and docs/ run as written, on a tiny package in place of the model they
name, and the server examples against a running `localai serve` (a renamed function, argument or field
breaks the example, so it breaks this test)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {f"{path.name}-{i}": code for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
            for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M))}
SERVER = "http://127.0.0.1:11435"


def test_the_docs_have_python_examples():
    assert {"README.md-0", "chat.md-0", "serve.md-0", "serve.md-1"} <= EXAMPLES.keys()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_python_example_runs(name, package, serve, tmp_path, monkeypatch):
    code = EXAMPLES[name]
    # tools need a template that renders them: the test model with Qwen3's conventions
    folder = package("qwen3_tools", "q8_0") if "tools=" in code else package("nemotron_h", "q8_0")
    if SERVER in code:
        served = json.loads((folder / "manifest.json").read_text())["name"]
        code = re.sub(r'model="[^"]+"', f'model="{served}"', code.replace(SERVER, serve(str(folder)).url))
    else:
        loaded = re.findall(r'localai\.load\("([^"]+)"', code)
        assert loaded, "an example loads a model by name or talks to the server"
        for model_name in loaded:
            code = code.replace(f'"{model_name}"', repr(str(folder)))
    monkeypatch.chdir(tmp_path)  # where an example writes its files
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, name, "exec"), namespace)
    finally:
        if "model" in namespace:
            namespace["model"].close()
