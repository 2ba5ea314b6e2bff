"""ONNX Runtime backend for the decoder graphs `localai convert --to onnx` writes.

The graph takes the past states (KV per attention layer, conv and SSM per Mamba2 layer) as inputs and
returns the present ones; they stay ONNX Runtime values bound to the session's device between calls (I/O
binding), so decode never copies them through numpy. Tokenization uses the `tokenizers` library on the
package's tokenizer.json.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from localai.backends.base import BackendState, checked_tokens, default_threads, guarded
from localai.errors import BackendError, PackageError
from localai.package import Package

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
FALLBACK_ORDER = ("tensorrt", "cuda", "cpu")
# token texts that end generation besides the declared end-of-sequence tokens: the set llama.cpp uses, so
# that a model stops at the same token on either backend
END_OF_TURN_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                     "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                     "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                     "<｜end▁of▁sentence｜>", "[e~[")


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for `device`. auto: CUDA if installed, else CPU; TensorRT only when
    asked for, since it builds engines for the shapes it meets (slow to start, and the `ort` flavour's
    contrib operators fall back to CUDA)."""
    available = ort.get_available_providers()
    if device == "auto":
        return [PROVIDERS[d] for d in ("cuda", "cpu") if PROVIDERS[d] in available]
    if device not in PROVIDERS:
        raise BackendError(f"unknown device {device!r}; choose from auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[device] not in available:
        hint = " (install onnxruntime-gpu)" if device != "cpu" else ""
        raise BackendError(f"this onnxruntime has no {device} support{hint}; it offers "
                           f"{', '.join(p.removesuffix('ExecutionProvider') for p in available)}")
    # the asked-for provider first; the ones after it take the operators it lacks
    return [PROVIDERS[d] for d in FALLBACK_ORDER[FALLBACK_ORDER.index(device):] if PROVIDERS[d] in available]


class OnnxRuntimeBackend:
    """An ONNX decoder graph in one ONNX Runtime session, holding one sequence's states."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int | None = None, kv_cache: str = "f32",
                 device: str = "auto", n_batch: int = 512) -> None:
        if n_ctx <= 0:
            raise BackendError(f"context size must be positive, got {n_ctx}")
        if kv_cache != "f32":
            raise BackendError(f"the ONNX graph keeps its KV state in float32 (asked for {kv_cache!r})")
        try:
            manifest = Package.open(path.parent).manifest
        except PackageError as exc:
            raise BackendError(f"{path.name} is not inside a localai ONNX package: {exc}") from exc
        spec = manifest.graph
        if not spec.get("inputs"):
            raise BackendError(f"package {manifest.name} does not describe its ONNX graph's inputs")
        self._tokenizer = _load_tokenizer(path.parent / "tokenizer.json")
        self._bos = manifest.tokenizer.get("bos_token_id")
        self._end_ids = _end_of_generation_ids(self._tokenizer, manifest.tokenizer)

        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.providers = providers_for(device)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for every load failure
            raise BackendError(f"onnxruntime cannot load {path.name}: {str(exc).strip().splitlines()[0]}") from exc
        self.device = next(d for d, p in PROVIDERS.items() if p == self._session.get_providers()[0])
        self._device = "cpu" if self.device == "cpu" else "cuda"  # where OrtValues live
        self._lock = threading.RLock()
        self._closed = False
        self.n_ctx = n_ctx
        self.n_vocab = int(next(o for o in spec["outputs"] if o["name"] == "logits")["shape"][-1])
        self._n_batch = n_batch
        self._state_inputs = [i for i in spec["inputs"] if i["name"].startswith("past.")]
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._token_bytes = _token_bytes_table(self._tokenizer, self.n_vocab)
        self._states: dict[str, ort.OrtValue] = {}
        self._n_past = 0
        self._reset_states()

    @property
    def n_past(self) -> int:
        return self._n_past

    @guarded
    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        # without `special`, control-token texts are plain text, as in llama.cpp
        self._tokenizer.encode_special_tokens = not special
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return [int(self._bos), *ids] if add_bos and self._bos is not None else ids

    @guarded
    def token_bytes(self, token: int) -> bytes:
        checked_tokens([token], n_vocab=self.n_vocab)
        return self._token_bytes[token]

    @guarded
    def is_end_of_generation(self, token: int) -> bool:
        return token in self._end_ids

    @guarded
    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        if not tokens:
            raise BackendError("eval() needs at least one token")
        return self._run(tokens, all_logits=False)[-1]

    @guarded
    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        self._reset_states()
        return self._run(tokens, all_logits=True)

    @guarded
    def reset(self) -> None:
        self._reset_states()

    @guarded
    def save_state(self) -> BackendState:
        # every call binds fresh output buffers and never writes into its inputs, so the current state
        # tensors stay valid as they are: the snapshot shares them instead of copying
        nbytes = sum(int(np.prod(v.shape())) * 4 for v in self._states.values())
        return BackendState(self._n_past, nbytes, (self, dict(self._states)))

    @guarded
    def load_state(self, state: BackendState) -> None:
        owner, states = state.data if isinstance(state.data, tuple) else (None, None)
        if owner is not self:
            raise BackendError("this state was not taken by this ONNX Runtime model")
        self._states, self._n_past = dict(states), state.n_past

    def close(self) -> None:
        """Release the session; waits for a call in progress on another thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._states.clear()
                del self._session

    def _reset_states(self) -> None:
        self._states = {spec["name"]: ort.OrtValue.ortvalue_from_numpy(
            np.zeros([_concrete(d) for d in spec["shape"]], np.float32), self._device, 0)
            for spec in self._state_inputs}
        self._n_past = 0

    def _run(self, tokens: Sequence[int], *, all_logits: bool) -> np.ndarray:
        tokens = checked_tokens(tokens, n_vocab=self.n_vocab, n_past=self._n_past, n_ctx=self.n_ctx)
        rows = []
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            binding = self._session.io_binding()
            binding.bind_cpu_input("input_ids", np.asarray([chunk], np.int64))
            binding.bind_cpu_input("logits_to_keep", np.asarray(len(chunk) if all_logits else 1, np.int64))
            for name, value in self._states.items():
                binding.bind_ortvalue_input(name, value)
            for name in self._output_names:
                binding.bind_output(name, "cpu" if name == "logits" else self._device)
            try:
                self._session.run_with_iobinding(binding)
            except Exception as exc:  # onnxruntime's own exception types
                raise BackendError(f"onnxruntime failed: {str(exc).strip().splitlines()[0]}") from exc
            outputs = dict(zip(self._output_names, binding.get_outputs(), strict=True))
            self._states = {name: outputs[name.replace("past.", "present.", 1)] for name in self._states}
            self._n_past += len(chunk)
            rows.append(np.array(outputs["logits"].numpy()[0]))  # a copy: .numpy() views ORT's buffer
        return np.concatenate(rows) if all_logits else rows[-1]



def _concrete(dim: Any) -> int:
    """A state's starting size: one sequence, no past tokens."""
    return int(dim) if isinstance(dim, int) else (1 if dim == "batch" else 0)


def _load_tokenizer(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise BackendError(f"cannot read {path}: {exc}") from exc


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte, reversed."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes, strict=True)}


def _token_bytes_table(tok: Tokenizer, n_vocab: int) -> list[bytes]:
    """The raw bytes of every token id: added tokens are their text, the rest byte-level symbols."""
    decoder = _byte_decoder()
    added = {i: t.content for i, t in tok.get_added_tokens_decoder().items()}
    table = []
    for token_id in range(n_vocab):
        if token_id in added:
            table.append(added[token_id].encode("utf-8"))
            continue
        piece = tok.id_to_token(token_id)  # None for ids the embedding pads beyond the vocabulary
        table.append(bytes(decoder[ch] for ch in piece) if piece is not None and all(
            ch in decoder for ch in piece) else (piece or "").encode("utf-8"))
    return table


def _end_of_generation_ids(tok: Tokenizer, summary: dict[str, Any]) -> frozenset[int]:
    ids = {summary.get("eos_token_id"), *summary.get("eos_token_ids", [])}
    ids |= {tok.token_to_id(text) for text in END_OF_TURN_TEXTS}
    return frozenset(int(i) for i in ids if i is not None)
