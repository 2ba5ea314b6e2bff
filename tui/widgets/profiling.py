"""The profiling panel: live tokens/s while generating, the last turn's costs, and a per-turn table."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Sparkline, Static

from localai.machine import gpu_memory_used_bytes, process_rss_bytes
from localai.profiling import TurnMetrics

HISTORY = 60  # sparkline samples kept


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


class ProfilingPanel(Vertical):
    DEFAULT_CSS = """
    ProfilingPanel { height: 1fr; padding: 0 1; }
    ProfilingPanel .title { text-style: bold; }
    ProfilingPanel Sparkline { height: 2; margin: 0 0 1 0; }
    ProfilingPanel DataTable { height: 1fr; }
    """

    def __init__(self, context_limit: int) -> None:
        super().__init__(id="profiling")
        self.context_limit = context_limit
        self.rates: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Label("Profiling", classes="title")
        yield Sparkline(list(self.rates), id="rate")
        yield Static("", id="live")
        yield Static(self._summary(None), id="summary")
        table = DataTable(id="turns", cursor_type="row", zebra_stripes=True)
        table.can_focus = False  # not a Tab stop: it scrolls with the mouse, and Ctrl+E exports it all
        table.add_columns("#", "TTFT ms", "decode t/s", "think", "answer", "ctx")
        yield table

    def sample(self, tokens_per_s: float) -> None:
        """Add one live tokens/s sample (called a few times a second while generating)."""
        self.rates.append(tokens_per_s)
        self.query_one("#rate", Sparkline).data = list(self.rates)
        gpu = gpu_memory_used_bytes()
        memory = f"RSS {process_rss_bytes() / 2**20:.0f} MB · GPU {'n/a' if gpu is None else f'{gpu / 2**20:.0f} MB'}"
        self.query_one("#live", Static).update(f"now {tokens_per_s:.0f} tok/s · {memory}")

    def record(self, metrics: TurnMetrics) -> None:
        self.query_one("#summary", Static).update(self._summary(metrics))
        self.query_one("#live", Static).update("")
        self.query_one("#turns", DataTable).add_row(
            str(metrics.turn), _fmt(metrics.ttft_ms), _fmt(metrics.decode_tokens_per_s), str(metrics.reasoning_tokens),
            str(metrics.answer_tokens), str(metrics.context_used))

    def clear(self) -> None:
        self.query_one("#turns", DataTable).clear()
        self.query_one("#summary", Static).update(self._summary(None))
        self.rates.extend([0.0] * HISTORY)
        self.query_one("#rate", Sparkline).data = list(self.rates)
        self.query_one("#live", Static).update("")

    def _summary(self, m: TurnMetrics | None) -> str:
        if m is None:
            return (f"TTFT —\nprefill — · decode —\nreasoning — · answer —\ncontext — / {self.context_limit}\n"
                    "RSS — · GPU —")
        gpu = "n/a" if m.gpu_mb is None else f"{m.gpu_mb:.0f} MB"
        return (f"TTFT {_fmt(m.ttft_ms, ' ms')}\n"
                f"prefill {_fmt(m.prefill_tokens_per_s, ' tok/s')} · "
                f"decode {_fmt(m.decode_tokens_per_s, ' tok/s', 1)}\n"
                f"reasoning {m.reasoning_tokens} · answer {m.answer_tokens} tokens\n"
                f"context {m.context_used} / {m.context_limit}\n"
                f"RSS {m.rss_mb:.0f} MB · GPU {gpu}")
