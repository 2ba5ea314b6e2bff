"""Constrained decoding on every backend: before each answer token, llguidance says which tokens keep the
answer inside a grammar, and the others' logits become -inf before the sampler sees them. Sampling lives
above the backend, so this one module constrains llama.cpp, ONNX Runtime and TensorRT alike.

- `vocabulary(backend, end_ids)`: the model's vocabulary as llguidance sees it (every token's bytes, the
  control tokens a grammar names but never spells, the tokens that end a turn), built once per loaded
  model from the backend protocol alone; forced text is tokenized by the backend itself, so the tokens
  a grammar forces are the ones the model would have read.
- `Guide`: one request's grammar, from its first answer token (`LazyGuide`: from each time the answer
  writes a trigger text, until the grammar is complete; tool calls in "auto" mode).
- `grammar_problem(text)`: why llguidance refuses a grammar, in one line, checked without a model.

Grammars come from requests, so every matcher runs under `LIMITS` (llguidance's fuel and size limits:
a 20-byte regular expression can otherwise cost a second and 300 MB on its first mask), and a matcher
that fails later (some grammars only fail on their first mask) raises `GuideError`, never a crash.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Protocol

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from localai.backends.base import Backend
from localai.errors import LocalAIError

LIMITS = llguidance.LLParserLimits(
    max_items_in_row=500, initial_lexer_fuel=200_000, step_lexer_fuel=100_000, step_max_items=20_000,
    max_lexer_states=20_000, max_grammar_size=50_000, verbose_errors=False)
_VOCABULARIES: weakref.WeakKeyDictionary[Backend, llguidance.LLTokenizer] = weakref.WeakKeyDictionary()
_VOCABULARY_LOCK = threading.Lock()
TRIGGER_TAIL = 256  # characters of the answer a LazyGuide keeps to find a trigger in


class GuideError(LocalAIError):
    """A grammar that failed while constraining an answer."""


class AnswerGuide(Protocol):
    """What the token loop needs of a guide: `restrict` before each answer token, `advance` after it;
    `finished` once the constrained answer is complete."""

    @property
    def finished(self) -> bool: ...

    def restrict(self, logits: np.ndarray, also: Sequence[int] = ()) -> np.ndarray: ...

    def restrict_thought(self, logits: np.ndarray) -> np.ndarray: ...

    def advance(self, token: int, text: str) -> None: ...


def grammar_problem(grammar: str) -> str:
    """Why llguidance refuses `grammar` (its first line), or "" when it takes it."""
    return one_line(llguidance.LLMatcher.validate_grammar(grammar, None, limits=LIMITS))


def one_line(message: str) -> str:
    """llguidance's multi-line message as one line: the first line, plus a regex engine's reason."""
    lines = [line.strip() for line in message.split("<state>")[0].splitlines() if line.strip()]
    if not lines:
        return ""
    reason = next((line[len("error:") :].strip() for line in lines if line.startswith("error:")), "")
    first = lines[0].split(" (in regex)")[0].rstrip(":")
    return f"{first}: {reason}" if reason and reason not in first else first


def vocabulary(backend: Backend, end_ids: Iterable[int]) -> llguidance.LLTokenizer:
    """llguidance's view of `backend`'s vocabulary, made on first use and kept while the backend lives.
    `end_ids`: tokens besides the backend's own end-of-generation ones that end a turn; a grammar allows
    them once the answer is complete."""
    with _VOCABULARY_LOCK:
        if backend not in _VOCABULARIES:
            tokens = _Tokens(backend, end_ids)
            _VOCABULARIES[backend] = llguidance.LLTokenizer(tokens, eos_token=tokens.end_ids or None)
        return _VOCABULARIES[backend]


class _Tokens:
    """The backend's vocabulary in the shape llguidance's TokenizerWrapper reads: every token's bytes
    (control tokens and ids with no bytes marked special, so no grammar spells them as text), the end
    token, and the backend's own tokenizer for the text a grammar forces."""

    is_tokenizer_wrapper = True
    bos_token_id = None

    def __init__(self, backend: Backend, end_ids: Iterable[int]) -> None:
        self.tokens = [backend.token_bytes(t) for t in range(backend.n_vocab)]
        ends = {*end_ids, *(t for t in range(backend.n_vocab) if backend.is_end_of_generation(t))}
        control = backend.control_tokens() | ends | {t for t, data in enumerate(self.tokens) if not data}
        self.special_token_ids = sorted(control)
        self.eos_token_id = min(ends) if ends else None
        self.end_ids = sorted(ends)
        self._backend = backend

    def __call__(self, text: str) -> list[int]:
        try:  # runs inside llguidance: raising there would put the matcher in its error state
            return self._backend.tokenize(text, add_bos=False, special=False)
        except LocalAIError:
            return []


class Guide:
    """One answer's grammar on one model's vocabulary. Before each token `restrict` masks the logits;
    after it `advance` feeds the token. `finished`: the grammar can take nothing more (the answer is whole).
    Not shared between threads (llguidance's matcher is not)."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str) -> None:
        self._tokenizer = tokenizer
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0, limits=LIMITS)
        self._check()
        self._bits = allocate_token_bitmask(1, tokenizer.vocab_size)
        self._ends = list(tokenizer.eos_tokens)

    @property
    def finished(self) -> bool:
        return self._matcher.is_stopped()

    def restrict(self, logits: np.ndarray, also: Sequence[int] = ()) -> np.ndarray:
        """`logits` with every token the grammar forbids at -inf; `also` stay allowed (the token that opens a
        think block, before the answer starts)."""
        fill_next_token_bitmask(self._matcher, self._bits)
        self._check()
        allowed = np.unpackbits(self._bits.view(np.uint8), count=logits.size, bitorder="little").astype(bool)
        allowed[list(also)] = True
        return np.where(allowed, logits, np.float32(-np.inf))

    def restrict_thought(self, logits: np.ndarray) -> np.ndarray:
        """`logits` inside the think block: free, but the turn cannot end there (the answer must follow)."""
        logits[self._ends] = -np.inf
        return logits

    def advance(self, token: int, text: str) -> None:
        """The answer's next token (one `restrict` allowed) and its text."""
        self._matcher.consume_token(token)
        self._check()

    def feed_text(self, text: str) -> bool:
        """Feed `text` the model already wrote (tokenized again); False if the grammar refuses it."""
        tokens = self._tokenizer.tokenize_str(text) if text else []
        return self._matcher.try_consume_tokens(tokens) == len(tokens) and not self._matcher.is_error()

    def _check(self) -> None:
        if self._matcher.is_error():
            raise GuideError(f"the output constraint failed: {one_line(self._matcher.get_error()) or 'no reason'}")


class LazyGuide:
    """A grammar that starts each time the answer writes one of `triggers` and ends when it is complete: in
    between the answer is free. Tool calls in "auto" mode: the model decides whether to call, and a call it
    opens is written as the grammar says. Text written in the same token as the trigger, after it, is fed to
    the grammar; if the grammar refuses it, that call stays unconstrained."""

    finished = False

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str, triggers: Sequence[str]) -> None:
        if problem := grammar_problem(grammar):  # refused now, not at the first call
            raise GuideError(f"the tool-call grammar failed: {problem}")
        self._tokenizer, self._grammar, self._triggers = tokenizer, grammar, tuple(triggers)
        self._guide: Guide | None = None
        self._tail = ""

    def restrict(self, logits: np.ndarray, also: Sequence[int] = ()) -> np.ndarray:
        return self._guide.restrict(logits, also) if self._guide else logits

    def restrict_thought(self, logits: np.ndarray) -> np.ndarray:
        """Free: the model may answer without calling (and end its turn) anywhere."""
        return logits

    def advance(self, token: int, text: str) -> None:
        if self._guide is not None:
            self._guide.advance(token, text)
            if self._guide.finished:
                self._guide = None
            return
        self._tail = (self._tail + text)[-TRIGGER_TAIL:]
        for trigger in self._triggers:
            at = self._tail.find(trigger)
            if at >= 0:
                written, self._tail = self._tail[at + len(trigger) :], ""
                guide = Guide(self._tokenizer, self._grammar)
                self._guide = guide if guide.feed_text(written) else None
                return
