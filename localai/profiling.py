"""What a turn costs: per-turn metrics (tokens, speeds, memory, context use) and their CSV/JSON export, for the
chat app's profiling panel and Ctrl+E. The memory probes they read are in localai/machine.py.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localai.events import Final
from localai.files import write_text_atomic
from localai.machine import gpu_memory_used_bytes, process_rss_bytes


@dataclass(frozen=True)
class TurnMetrics:
    """One answered turn, as the profiling table and the exports show it."""

    turn: int
    finished_at: str
    finish_reason: str
    prompt_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    ttft_ms: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    total_ms: float
    context_used: int
    context_limit: int
    rss_mb: float
    gpu_mb: float | None
    # the settings the turn ran with (`chat.turn_settings`), so figures tie back to the controls
    think: bool | None = None
    reasoning_budget: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, turn: int, final: Final, context_limit: int, settings: dict[str, Any] | None = None) -> TurnMetrics:
        gpu = gpu_memory_used_bytes()
        return cls(
            **(settings or {}),
            turn=turn,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            finish_reason=final.finish_reason,
            prompt_tokens=final.usage.prompt_tokens,
            reasoning_tokens=final.usage.reasoning_tokens,
            answer_tokens=final.usage.completion_tokens - final.usage.reasoning_tokens,
            ttft_ms=final.timings.ttft_ms,
            prefill_tokens_per_s=final.timings.prefill_tokens_per_s,
            decode_tokens_per_s=final.timings.decode_tokens_per_s,
            total_ms=final.timings.total_ms,
            context_used=final.usage.prompt_tokens + len(final.tokens),
            context_limit=context_limit,
            rss_mb=round(process_rss_bytes() / 2**20, 1),
            gpu_mb=round(gpu / 2**20, 1) if gpu is not None else None,
        )


def metrics_csv(rows: list[TurnMetrics]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(TurnMetrics)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def metrics_json(rows: list[TurnMetrics]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"


def export_metrics(rows: list[TurnMetrics], path: Path) -> Path:
    """Write `rows` as CSV or JSON, chosen by the file's suffix."""
    text = metrics_json(rows) if path.suffix.lower() == ".json" else metrics_csv(rows)
    write_text_atomic(path, text)
    return path
