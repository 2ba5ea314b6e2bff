"""localai/backends/llama_log.py: captures of llama.cpp's log, also when several calls capture at once."""

from __future__ import annotations

from localai.backends import llama_log


def test_overlapping_captures_end_in_any_order():
    """Two empty captures are equal as values: ending the later one must not remove the earlier one. A
    server runs two models' calls at once; this failed there with `list.remove(x): x not in list`."""
    outer = llama_log.capture()
    first = outer.__enter__()
    inner = llama_log.capture()
    inner.__enter__()
    inner.__exit__(None, None, None)
    llama_log._on_log(3, b"a line while only the first capture runs", None)
    outer.__exit__(None, None, None)
    assert llama_log._captures == []
    assert first.lines == [(3, "a line while only the first capture runs")]
