"""Hugging Face `tokenizer.json` (byte-level BPE) -> llama.cpp's GGUF tokenizer metadata.

llama.cpp splits text with one of a fixed set of pre-tokenizers, named in `tokenizer.ggml.pre`.
llama.cpp's converter picks that name from a table of hashes of known models' token ids, so any new
tokenizer, e.g. one trained with the `tokenizers` library, is refused. Here the name is derived from
what the tokenizer actually does: its pre-tokenizer steps and regexes, and its `ignore_merges` flag,
matched against the pre-tokenizers llama.cpp implements (see docs/gguf-conversion.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from converters.checkpoint import read_json
from localai.errors import ConversionError
from localai.package import KNOWN_THINK_TOKENS, ThinkTokens

# Split regexes exactly as tokenizer.json files carry them.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT4O_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
               r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
               r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
               r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
               r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# (pre-tokenizer steps, ignore_merges) -> llama.cpp pre-tokenizer with the same regexes and flags.
# "bytelevel-regex" is GPT-2's built-in regex; "digits" splits every digit off (Digits(individual)).
PRE_TOKENIZERS: dict[tuple[tuple[str, ...], bool], str] = {
    (("bytelevel-regex",), False): "gpt-2",
    (("digits", "bytelevel-regex"), False): "starcoder",
    ((LLAMA3_REGEX, "bytelevel"), True): "llama-bpe",
    ((LLAMA3_REGEX, "bytelevel"), False): "dbrx",
    ((QWEN2_REGEX, "bytelevel"), False): "qwen2",
    ((GPT4O_REGEX, "bytelevel"), False): "gpt-4o",
}
SPECIAL_KINDS = ("bos", "eos", "unk", "pad")
_SPACE_IN_MERGE = chr(32 + 256)  # byte-level BPE's stand-in for a space ("Ġ")


@dataclass(frozen=True)
class GGUFVocab:
    """Everything llama.cpp needs to tokenize like the original tokenizer."""

    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    chat_template: str | None

    def write(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        writer.add_token_merges(self.merges)
        adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id,
                  "unk": writer.add_unk_token_id, "pad": writer.add_pad_token_id}
        for kind, token_id in self.special_ids.items():
            adders[kind](token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


@dataclass
class HFTokenizer:
    """The parts of a Hugging Face tokenizer folder that a converted package keeps."""

    vocab: dict[str, int]
    added: list[dict[str, Any]]
    merges: list[str]
    pre: str
    normalizer: str | None
    special_tokens: dict[str, str] = field(default_factory=dict)
    special_ids: dict[str, int] = field(default_factory=dict)
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    end_of_turn_ids: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return max([*self.vocab.values(), *(a["id"] for a in self.added)], default=-1) + 1

    def id_of(self, text: str) -> int | None:
        for token in self.added:
            if token["content"] == text:
                return int(token["id"])
        return self.vocab.get(text)

    @property
    def think_tokens(self) -> ThinkTokens | None:
        for pair in KNOWN_THINK_TOKENS:
            if self.id_of(pair.start) is not None and self.id_of(pair.end) is not None:
                return pair
        return None

    def gguf_vocab(self, n_vocab: int) -> GGUFVocab:
        """Token list and types for a model whose embedding has `n_vocab` rows (extra rows: unused)."""
        if self.size > n_vocab:
            raise ConversionError(f"the tokenizer has {self.size} tokens but the model's vocab_size is {n_vocab}")
        by_id: dict[int, tuple[str, int]] = {i: (t, gguf.TokenType.NORMAL) for t, i in self.vocab.items()}
        for token in self.added:
            special = token.get("special") or _looks_special(token["content"])
            by_id[int(token["id"])] = (token["content"],
                                       gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        tokens, types = [], []
        for i in range(n_vocab):
            text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
            tokens.append(text)
            types.append(int(kind))
        if len(set(tokens)) != len(tokens):
            seen: set[str] = set()
            duplicate = next(t for t in tokens if t in seen or seen.add(t))
            raise ConversionError(f"token text {duplicate!r} appears twice in the vocabulary; "
                                  "llama.cpp needs unique tokens")
        return GGUFVocab(self.pre, tokens, types, self.merges, dict(self.special_ids), self.add_bos, self.add_eos,
                         self.chat_template)

    def summary(self) -> dict[str, Any]:
        """Tokenizer facts recorded in the package manifest."""
        return {
            "model": "bpe",
            "pre": self.pre,
            "normalizer": self.normalizer,
            "size": self.size,
            **{f"{k}_token": self.special_tokens.get(k) for k in SPECIAL_KINDS},
            **{f"{k}_token_id": self.special_ids.get(k) for k in SPECIAL_KINDS},
            "eos_token_ids": self.end_of_turn_ids,
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
        }


def _looks_special(text: str) -> bool:
    # llama.cpp's converter treats these shapes as control tokens even when not flagged special
    return (text.startswith("<|") and text.endswith("|>")) or (text.startswith("<｜") and text.endswith("｜>"))


def read_hf_tokenizer(root: Path) -> HFTokenizer:
    """Read tokenizer.json, tokenizer_config.json, chat_template.jinja and the end-of-turn ids of a checkpoint."""
    if not (root / "tokenizer.json").is_file():
        raise ConversionError(f"missing tokenizer: no tokenizer.json in {root}")
    data = read_json(root / "tokenizer.json", "tokenizer.json")
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError(f"tokenizer.json: only BPE tokenizers are supported (got {model.get('type')!r})")
    if model.get("byte_fallback"):
        raise ConversionError("tokenizer.json: SentencePiece-style BPE (byte_fallback) is not supported yet")
    tok = HFTokenizer(
        vocab={str(k): int(v) for k, v in model["vocab"].items()},
        added=[a for a in data.get("added_tokens") or [] if "content" in a and "id" in a],
        merges=_merges(model.get("merges") or []),
        pre=pre_tokenizer_name(data.get("pre_tokenizer"), bool(model.get("ignore_merges"))),
        normalizer=_normalizer(data.get("normalizer")),
    )
    config_path = root / "tokenizer_config.json"
    config = read_json(config_path, "tokenizer_config.json") if config_path.is_file() else {}
    _read_special_tokens(tok, config, root, data.get("post_processor"))
    tok.chat_template = _chat_template(config, root)
    return tok


def pre_tokenizer_name(pre_tokenizer: dict[str, Any] | None, ignore_merges: bool) -> str:
    """The llama.cpp pre-tokenizer that splits text exactly like `pre_tokenizer`."""
    steps = tuple(_pre_steps(pre_tokenizer))
    name = PRE_TOKENIZERS.get((steps, ignore_merges))
    if name is None:
        shown = json.dumps(pre_tokenizer)[:200]
        raise ConversionError(
            f"tokenizer.json: no llama.cpp pre-tokenizer splits text like this one "
            f"(ignore_merges={ignore_merges}, pre_tokenizer={shown}); supported: GPT-2 byte-level, "
            "Llama 3, Qwen2/3, GPT-4o and StarCoder styles"
        )
    return name


def _pre_steps(node: dict[str, Any] | None) -> list[str]:
    if node is None:
        raise ConversionError("tokenizer.json has no pre_tokenizer; byte-level BPE needs one")
    kind = node.get("type")
    if kind == "Sequence":
        return [step for child in node.get("pretokenizers", []) for step in _pre_steps(child)]
    if kind == "ByteLevel":
        if node.get("add_prefix_space"):
            raise ConversionError("tokenizer.json: ByteLevel(add_prefix_space=True) has no llama.cpp equivalent")
        return ["bytelevel-regex" if node.get("use_regex", True) else "bytelevel"]
    if kind == "Split" and node.get("behavior") == "Isolated" and not node.get("invert"):
        pattern = node.get("pattern") or {}
        if "Regex" in pattern:
            return [pattern["Regex"]]
    if kind == "Digits" and node.get("individual_digits"):
        return ["digits"]
    raise ConversionError(f"tokenizer.json: unsupported pre-tokenizer step {json.dumps(node)[:160]}")


def _normalizer(node: dict[str, Any] | None) -> str | None:
    # llama.cpp applies no normaliser to BPE input; NFC only matters for text that is not already NFC
    if node is None:
        return None
    if node.get("type") == "NFC":
        return "NFC"
    raise ConversionError(f"tokenizer.json: normalizer {node.get('type')!r} has no llama.cpp equivalent")


# llama.cpp refuses a BPE vocabulary without a merges array and gguf-py cannot write an empty array, so a
# tokenizer without merges (every token a single byte symbol) gets this one merge instead. It never fires:
# symbols start as single characters and only merges make longer ones, so no pair ever equals it.
UNREACHABLE_MERGE = "<no-merges> <no-merges>"


def _merges(raw: list[Any]) -> list[str]:
    if not raw:
        return [UNREACHABLE_MERGE]
    merges = []
    for merge in raw:
        if isinstance(merge, str):
            merges.append(merge)
        elif isinstance(merge, list) and len(merge) == 2:
            merges.append(" ".join(part.replace(" ", _SPACE_IN_MERGE) for part in merge))
        else:
            raise ConversionError(f"tokenizer.json: malformed merge {merge!r}")
    return merges


def _read_special_tokens(tok: HFTokenizer, config: dict[str, Any], root: Path,
                         post_processor: dict[str, Any] | None) -> None:
    model_config = read_json(root / "config.json", "config.json") if (root / "config.json").is_file() else {}
    for kind in SPECIAL_KINDS:
        text = config.get(f"{kind}_token")
        if isinstance(text, dict):
            text = text.get("content")
        token_id = tok.id_of(text) if isinstance(text, str) else None
        if token_id is None:
            fallback = model_config.get(f"{kind}_token_id")
            token_id = fallback[0] if isinstance(fallback, list) and fallback else fallback
            text = _text_of(tok, token_id)
        if isinstance(token_id, int) and 0 <= token_id < tok.size:
            tok.special_ids[kind] = token_id
            if text is not None:
                tok.special_tokens[kind] = text
    template_bos, template_eos = _post_processor_adds(post_processor, tok.special_tokens)
    tok.add_bos = bool(config.get("add_bos_token", template_bos))
    tok.add_eos = bool(config.get("add_eos_token", template_eos))
    generation = root / "generation_config.json"
    candidates = [tok.special_ids.get("eos"), model_config.get("eos_token_id")]
    if generation.is_file():
        candidates.append(read_json(generation, "generation_config.json").get("eos_token_id"))
    ids: list[int] = []
    for value in candidates:
        for token_id in value if isinstance(value, list) else [value]:
            if isinstance(token_id, int) and 0 <= token_id < tok.size and token_id not in ids:
                ids.append(token_id)
    tok.end_of_turn_ids = ids


def _text_of(tok: HFTokenizer, token_id: Any) -> str | None:
    if not isinstance(token_id, int):
        return None
    for token in tok.added:
        if token["id"] == token_id:
            return str(token["content"])
    return next((t for t, i in tok.vocab.items() if i == token_id), None)


def _post_processor_adds(node: dict[str, Any] | None, specials: dict[str, str]) -> tuple[bool, bool]:
    """Whether a TemplateProcessing post-processor puts BOS first / EOS last in single sequences."""
    if not node:
        return False, False
    if node.get("type") == "Sequence":
        results = [_post_processor_adds(child, specials) for child in node.get("processors", [])]
        return any(r[0] for r in results), any(r[1] for r in results)
    if node.get("type") != "TemplateProcessing":
        return False, False
    single = [item.get("SpecialToken", {}).get("id") for item in node.get("single", [])]
    return (bool(single) and single[0] == specials.get("bos"), bool(single) and single[-1] == specials.get("eos"))


def _chat_template(config: dict[str, Any], root: Path) -> str | None:
    # as in transformers, a separate chat_template.jinja takes priority over tokenizer_config.json
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) and template else None
