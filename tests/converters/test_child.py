"""converters/child.py: native work in a child process, reported back whatever the child prints."""

from __future__ import annotations

from converters import child, to_gguf


def test_the_child_never_imports_from_the_folder_localai_runs_in(tmp_path, monkeypatch):
    """A `converters` package planted in the current folder (a stray checkout, a downloaded folder) is not
    what the child runs: the real quantizer runs, and refuses the missing input in its own words."""
    (tmp_path / "converters").mkdir()
    (tmp_path / "converters" / "__init__.py").write_text("raise SystemExit('planted code ran')")
    monkeypatch.chdir(tmp_path)
    done = child.run(to_gguf.CHILD, {"src": str(tmp_path / "missing.gguf"), "dst": str(tmp_path / "out.gguf"),
                                     "quant": "q4_k_m", "threads": None})
    assert done.error is not None and done.error.startswith("llama.cpp could not quantize to q4_k_m"), done
    assert "planted" not in done.stderr_tail


def test_whatever_a_dying_child_prints_is_no_crash_of_the_parent():
    program = ("import os, sys\nsys.stdout.buffer.write(b'{not json\\n\\xff\\xfe garbage\\n[1, 2]\\n')\n"
               "sys.stdout.flush()\nos.abort()\n")
    done = child.run(program, {})
    assert done.result is None and done.error is None and done.returncode < 0
    assert done.crash.startswith("signal 6")
