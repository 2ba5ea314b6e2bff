"""A package's tokenizer.json (the `tokenizers` library) with the token methods of the backend protocol,
for the backends whose runtime has no tokenizer of its own (ONNX Runtime, TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from localai.backends.base import checked_tokens
from localai.errors import BackendError

# token texts that end generation besides the declared end-of-sequence tokens: the set llama.cpp uses, so
# that a model stops at the same token on every backend
END_OF_TURN_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                     "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                     "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                     "<｜end▁of▁sentence｜>", "[e~[")


class PackageTokenizer:
    """tokenizer.json in `folder`; `summary` is the manifest's tokenizer section (BOS and EOS ids)."""

    def __init__(self, folder: Path, summary: dict[str, Any], n_vocab: int) -> None:
        path = folder / "tokenizer.json"
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise BackendError(f"cannot read {path}: {exc}") from exc
        self._bos = summary.get("bos_token_id")
        self._n_vocab = n_vocab
        self._end_ids = _end_of_generation_ids(self._tokenizer, summary)
        self._token_bytes = _token_bytes_table(self._tokenizer, n_vocab)
        self.control_tokens = frozenset(i for i, t in self._tokenizer.get_added_tokens_decoder().items()
                                        if t.special and i < n_vocab)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of `text`; without `special`, control-token texts are plain text, as in llama.cpp."""
        self._tokenizer.encode_special_tokens = not special
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return [int(self._bos), *ids] if add_bos and self._bos is not None else ids

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token id."""
        checked_tokens([token], n_vocab=self._n_vocab)
        return self._token_bytes[token]

    def is_end_of_generation(self, token: int) -> bool:
        """Whether `token` is an end-of-sequence or end-of-turn token."""
        return token in self._end_ids


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
