"""llama.cpp backend (through llama-cpp-python) for GGUF files.

Batches are decoded here rather than through `Llama.eval`, so that full-sequence logits need no
n_ctx x n_vocab score matrix and logits are read straight from llama.cpp's output buffer.

Every call into llama.cpp holds the backend's lock, and `close()` takes it too: a model closed while
another thread generates (an app quitting mid-answer) fails that thread's next call with a
BackendError instead of letting it touch freed memory.

The thread count of every decode call comes from a `threads.Governor`: all physical cores while the
machine is otherwise idle, fewer while other processes keep cores busy (see localai/backends/threads.py).

llama-cpp-python compiles every chat template in a GGUF's metadata while a model loads, with Jinja2
outside localai's sandbox (localai/chat_template.py): a template bomb in a dead branch took 847 MB there,
and a template with a syntax error made the file unusable even for raw completion. localai renders
templates itself and never uses llama-cpp-python's chat handlers, so the load runs with a formatter
that compiles nothing (`_templates_left_alone`).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator, Sequence

import llama_cpp
import numpy as np
from llama_cpp import llama_chat_format

from localai.backends import llama_log
from localai.backends.base import BackendState, checked_tokens, guarded
from localai.backends.threads import Governor, ThreadPolicy
from localai.errors import BackendError
from localai.package import Artifact, Package

_CTX_GRANULARITY = 256  # llama.cpp rounds context sizes up to this


_LOADING = threading.Lock()


class _UncompiledTemplate:
    """What `Llama` builds for each metadata template while `_templates_left_alone` holds: nothing."""

    def __init__(self, **_: object) -> None:
        pass

    def to_chat_handler(self) -> None:
        return None


@contextlib.contextmanager
def _templates_left_alone() -> Iterator[None]:
    """`Llama(...)` without compiling the GGUF's chat templates (see the module docstring). Loads in other
    threads wait, so that none restores the formatter while another still loads."""
    with _LOADING:
        original = llama_chat_format.Jinja2ChatFormatter
        llama_chat_format.Jinja2ChatFormatter = _UncompiledTemplate  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            llama_chat_format.Jinja2ChatFormatter = original  # type: ignore[misc]
KV_CACHE_TYPES = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}


class LlamaCppBackend:
    """A GGUF model and one llama.cpp context (one sequence)."""

    name = "llama.cpp"
    device = "cpu"

    def __init__(self, package: Package, artifact: Artifact, *, n_ctx: int, n_threads: int | None = None,
                 kv_cache: str = "f16", device: str = "auto", n_batch: int = 512) -> None:
        path = package.path_of(artifact)
        if device not in ("auto", "cpu"):
            raise BackendError(f"the llama.cpp backend runs on the CPU only here (asked for {device!r})")
        if n_ctx <= 0:
            raise BackendError(f"context size must be positive, got {n_ctx}")
        if kv_cache not in KV_CACHE_TYPES:
            raise BackendError(f"unknown KV cache type {kv_cache!r} (choose from {', '.join(KV_CACHE_TYPES)})")
        policy = ThreadPolicy.from_option(n_threads)
        self.max_threads, self.thread_policy = policy.threads, policy.describe()
        threads = policy.threads
        self._governor = Governor(policy)  # measuring from here, the first window covers the load
        with llama_log.capture() as log, _templates_left_alone():
            try:
                self._llm = llama_cpp.Llama(
                    str(path),
                    n_ctx=-(-n_ctx // _CTX_GRANULARITY) * _CTX_GRANULARITY,
                    n_batch=min(n_batch, n_ctx),
                    n_ubatch=min(n_batch, n_ctx),
                    n_threads=threads,
                    n_threads_batch=threads,
                    type_k=KV_CACHE_TYPES[kv_cache],
                    type_v=KV_CACHE_TYPES[kv_cache],
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"llama.cpp cannot load {path.name}: {log.last_error() or exc}") from exc
        self._lock = threading.RLock()
        self._closed = False
        self.n_ctx = n_ctx
        self.n_vocab = self._llm.n_vocab()
        self._vocab = self._llm._model.vocab
        self._ctx = self._llm.ctx
        self._batch = self._llm._batch
        self._n_batch = min(n_batch, n_ctx)
        self._n_past = 0

    @property
    def threads(self) -> int:
        """The threads of the latest call."""
        return self._governor.threads

    @property
    def n_past(self) -> int:
        return self._n_past

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF key/value pairs (scalars only, as strings)."""
        return dict(self._llm.metadata)

    @guarded
    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        # llama-cpp-python's own tokenize allocates the model's whole declared context on every call
        data = text.encode("utf-8")
        size = len(data) + 2
        while True:
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, special)
            if n >= 0:
                return list(buf[:n])
            size = -n  # llama.cpp reports the size it needs

    @guarded
    def token_bytes(self, token: int) -> bytes:
        checked_tokens([token], n_vocab=self.n_vocab)
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, True)
            if n >= 0:
                return buf.raw[:n]
            size = -n  # llama.cpp reports the size it needs

    @guarded
    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    @guarded
    def control_tokens(self) -> frozenset[int]:
        return frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_control(self._vocab, t))

    @guarded
    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        if not tokens:
            raise BackendError("eval() needs at least one token")
        self._decode(tokens, all_logits=False)
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        if not ptr:
            raise BackendError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    @guarded
    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        self.reset()
        return self._decode(tokens, all_logits=True)

    @guarded
    def reset(self) -> None:
        memory = llama_cpp.llama_get_memory(self._ctx)
        if memory is not None:
            llama_cpp.llama_memory_clear(memory, True)
        self._n_past = 0

    @guarded
    def save_state(self) -> BackendState:
        size = llama_cpp.llama_state_get_size(self._ctx)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(self._ctx, buf, size)
        return BackendState(self._n_past, written, ctypes.string_at(buf, written))

    @guarded
    def load_state(self, state: BackendState) -> None:
        if not isinstance(state.data, bytes):
            raise BackendError("this state was not taken by a llama.cpp backend")
        buf = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if llama_cpp.llama_state_set_data(self._ctx, buf, len(state.data)) != len(state.data):
            raise BackendError("llama.cpp could not restore the state")
        self._n_past = state.n_past

    def close(self) -> None:
        """Free the model; waits for a call in progress on another thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._llm.close()

    def _decode(self, tokens: Sequence[int], *, all_logits: bool) -> np.ndarray:
        tokens = checked_tokens(tokens, n_vocab=self.n_vocab, n_past=self._n_past, n_ctx=self.n_ctx)
        rows: list[np.ndarray] = []
        threads = self._governor.threads
        if self._governor.update() != threads:
            llama_cpp.llama_set_n_threads(self._ctx, self._governor.threads, self._governor.threads)
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            self._batch.set_batch(chunk, n_past=self._n_past, logits_all=all_logits)
            with llama_log.capture() as log:
                try:
                    self._llm._ctx.decode(self._batch)
                except RuntimeError as exc:
                    raise BackendError(f"llama.cpp decode failed: {log.last_error() or exc}") from exc
            self._n_past += len(chunk)
            if all_logits:
                ptr = llama_cpp.llama_get_logits(self._ctx)
                rows.append(np.ctypeslib.as_array(ptr, shape=(len(chunk), self.n_vocab)).copy())
        return np.concatenate(rows) if rows else np.empty((0, self.n_vocab), np.float32)
