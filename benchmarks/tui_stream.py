"""Benchmark: the chat app under a fast stream, with a fake backend (no model: the UI is what is measured).

A fake backend streams a long Markdown answer (headings, lists, code blocks) at a fixed token rate.
While it streams, a key press goes to the budget slider every 100 ms; the script reports how long each
press took to take effect, and the UI thread's CPU time per frame and per token (all of the event loop's
work: widget updates, layout, rendering) in the first and the last fifth of the answer; flat means the
cost does not grow with the answer's length. `--baseline` runs the same
stream into one Textual Markdown widget fed by MarkdownStream, the straightforward design, for comparison.

    .venv/bin/python benchmarks/tui_stream.py [--rate 600] [--tokens 4000] [--baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from textual import events
from textual.widgets import Markdown

from localai.model import Model
from localai.package import Artifact, Manifest, Package
from tui.app import ChatApp
from tui.screens.chat import ChatScreen
from tui.widgets.slider import Slider
from tui.widgets.transcript import AssistantMessage

ANSWER = """\
## Step {n}

The model explains **part {n}** of the answer with some `inline code`, a [link](https://example.org) and
enough words to wrap across the terminal's width, as long answers do.

- first point of section {n}
- second point, with *emphasis*
- third point: 3.14159 × {n}

```python
def section_{n}(x):
    return x * {n}
```

"""


class FakeBackend:
    """Streams words of ANSWER at `rate` tokens/s; never ends the turn by itself."""

    name = "fake"

    def __init__(self, rate: float, n_ctx: int) -> None:
        pieces = re.findall(r"\S+[ ]*|\n", "".join(ANSWER.format(n=i) for i in range(400)))  # word-sized tokens
        self.vocab = sorted(set(pieces))
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        self.script = [self.ids[p] for p in pieces]
        self.n_vocab, self.n_ctx, self.rate = len(self.vocab), n_ctx, rate
        self._n_past, self._step, self._started = 0, 0, 0.0

    @property
    def n_past(self) -> int:
        return self._n_past

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return [self.ids.get(w, 0) for w in text.split()] or [0]

    def token_bytes(self, token: int) -> bytes:
        return self.vocab[token].encode()

    def is_end_of_generation(self, token: int) -> bool:
        return False

    def control_tokens(self) -> frozenset[int]:
        return frozenset()

    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        self._n_past += len(tokens)
        if self._step == 0:
            self._started = time.perf_counter()
        # a fixed schedule: a token delayed by the interface is made up by the next ones
        time.sleep(max(0.0, self._started + self._step / self.rate - time.perf_counter()))
        logits = np.full(self.n_vocab, -1e9, np.float32)  # the script's token, whatever the sampler
        logits[self.script[self._step % len(self.script)]] = 0.0
        self._step += 1
        return logits

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        self._n_past = self._step = 0

    def close(self) -> None:
        pass


async def _baseline_add_answer(self: AssistantMessage, text: str) -> None:
    """The straightforward design: the whole answer in one Markdown widget fed by MarkdownStream."""
    if not hasattr(self, "_stream"):
        self._markdown = Markdown()
        await self.mount(self._markdown, before=self.tail)
        self._stream = Markdown.get_stream(self._markdown)
    self._tail += text
    await self._stream.write(text)


def fake_model(rate: float, n_ctx: int) -> Model:
    manifest = Manifest(name="fake-stream", architecture="fake", artifacts=[Artifact("none", "fake", "-", 0, "")],
                        context_length=n_ctx, chat_template="{{ messages[-1]['content'] }}")
    return Model.bind(Package(Path(tempfile.gettempdir()), manifest), FakeBackend(rate, n_ctx))


async def run(rate: float, tokens: int, baseline: bool = False) -> dict[str, float]:
    if baseline:
        AssistantMessage.add_answer = _baseline_add_answer  # type: ignore[method-assign]
    app = ChatApp(None, save_dir=Path(tempfile.mkdtemp()))
    # per frame: tokens applied, and CPU time the UI thread (the event loop: updates, layout, rendering)
    # spent since the previous frame
    frames: list[tuple[int, float]] = []
    original = ChatScreen._flush
    clock = {"last": time.thread_time()}

    async def timed_flush(self: ChatScreen, reasoning: list[str], answer: list[str]) -> None:
        await original(self, reasoning, answer)
        now = time.thread_time()
        if reasoning or answer:
            frames.append((len(reasoning) + len(answer), now - clock["last"]))
        clock["last"] = now

    ChatScreen._flush = timed_flush  # type: ignore[method-assign]
    latencies: list[float] = []
    async with app.run_test(size=(140, 45)) as pilot:
        app._open_chat(fake_model(rate, tokens + 64))
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.query_one("#max_tokens").value = str(tokens)
        screen.query_one("#think").value = False
        started = time.perf_counter()
        await screen.on_prompt_input_submitted(type("M", (), {"text": "go"})())
        slider = screen.query_one("#budget", Slider)
        slider.focus()
        while screen.busy:
            await asyncio.sleep(0.1)
            before, pressed = slider.position, time.perf_counter()
            app.post_message(events.Key("left" if before else "right", None))
            while slider.position == before and screen.busy:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - pressed)
        elapsed = time.perf_counter() - started
        final = screen.metrics[-1]
    ChatScreen._flush = original  # type: ignore[method-assign]
    fifth = max(1, len(frames) // 5)

    def per_token_us(part: list[tuple[int, float]]) -> float:
        return sum(s for _, s in part) / max(1, sum(n for n, _ in part)) * 1e6

    def per_frame_ms(part: list[tuple[int, float]]) -> float:
        return statistics.median(s for _, s in part) * 1000

    return {
        "first_fifth_ms_per_frame": per_frame_ms(frames[:fifth]),
        "last_fifth_ms_per_frame": per_frame_ms(frames[-fifth:]),
        "tokens": final.answer_tokens, "backend_tok_s": final.decode_tokens_per_s or 0.0, "wall_s": elapsed,
        "key_p50_ms": statistics.median(latencies) * 1000, "key_p95_ms": np.percentile(latencies, 95) * 1000,
        "key_max_ms": max(latencies) * 1000, "presses": len(latencies),
        "first_fifth_us_per_token": per_token_us(frames[:fifth]),
        "last_fifth_us_per_token": per_token_us(frames[-fifth:]),
        "frames": len(frames),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=600.0, help="tokens per second the fake backend streams")
    parser.add_argument("--tokens", type=int, default=4000, help="length of the answer")
    parser.add_argument("--baseline", action="store_true", help="one Markdown widget fed by MarkdownStream instead")
    args = parser.parse_args()
    r = asyncio.run(run(args.rate, args.tokens, args.baseline))
    design = "baseline: one Textual Markdown widget" if args.baseline else "localai: frozen chunks + live tail"
    print(f"{design}; machine: {platform.machine()}, Python {platform.python_version()}; "
          f"fake backend asked for {args.rate:.0f} tok/s")
    print(f"streamed {r['tokens']} tokens in {r['wall_s']:.1f} s (backend {r['backend_tok_s']:.0f} tok/s), "
          f"{r['frames']} UI frames")
    print(f"key press to effect: p50 {r['key_p50_ms']:.1f} ms, p95 {r['key_p95_ms']:.1f} ms, "
          f"max {r['key_max_ms']:.1f} ms over {r['presses']} presses")
    ratio = r["last_fifth_us_per_token"] / r["first_fifth_us_per_token"]
    frame_ratio = r["last_fifth_ms_per_frame"] / r["first_fifth_ms_per_frame"]
    print(f"UI CPU per frame (median): first fifth {r['first_fifth_ms_per_frame']:.1f} ms, last fifth "
          f"{r['last_fifth_ms_per_frame']:.1f} ms (x{frame_ratio:.2f})")
    print(f"UI CPU per token: first fifth {r['first_fifth_us_per_token']:.0f} µs, last fifth "
          f"{r['last_fifth_us_per_token']:.0f} µs (x{ratio:.2f})")


if __name__ == "__main__":
    main()
