"""The Python examples in README.md and docs/ run as written, on a tiny package in place of the model name
they load (a renamed function or argument breaks the example, so it breaks this test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {f"{path.name}-{i}": code for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
            for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M))}


def test_the_docs_have_python_examples():
    assert {"README.md-0", "chat.md-0"} <= EXAMPLES.keys()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_python_example_runs(name, package, tmp_path, monkeypatch, capsys):
    code = EXAMPLES[name]
    loaded = re.findall(r'localai\.load\("([^"]+)"', code)
    assert loaded, "an example loads a model by name"
    for model_name in loaded:
        code = code.replace(f'"{model_name}"', repr(str(package("nemotron_h", "q8_0"))))
    monkeypatch.chdir(tmp_path)  # where an example writes its files
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, name, "exec"), namespace)
    finally:
        if "model" in namespace:
            namespace["model"].close()
    assert capsys.readouterr().out  # every example prints what it made
