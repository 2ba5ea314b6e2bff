"""Benchmark: grammar engines for constrained decoding (llguidance, xgrammar, outlines-core) on a numpy backend.

Each engine is given a byte-level BPE vocabulary (trained here, offline, with `tokenizers`: 24,000 and
131,072 tokens, GPT-2-style ByteLevel pre-tokenizer, five special tokens) built from the token byte
strings or tokenizer.json -- never through transformers. For two grammars (a JSON schema with pattern,
enum, integer range, array and nested-object constraints, and "any JSON object") it measures:

* compile: building the grammar for that vocabulary (and the matcher), median over the repeats;
* mask: filling the next-token bitmask (uint32 words, bit i = token i allowed) before every token of a
  fixed valid answer, tokenized with the same tokenizer, walked token by token, plus the final mask
  (where EOS must be allowed); median and p95 over all of them, and the first mask (median over repeats);
* commit: advancing the matcher by the chosen token; compile+walk: compile plus all masks and commits;
* apply: turning a bitmask into one byte per token (np.unpackbits, little bit order) and writing -inf into
  a float32 logits vector of vocabulary size, by a masked np.copyto ("where", whose speed depends on the
  pattern of the mask) and by bitwise operations on the float bit patterns ("bitwise", constant time).

`--features` instead probes which JSON-schema keywords, regexes and grammar syntaxes each engine
enforces, ignores or refuses, by compiling a small case and walking valid and invalid instances.

Run it from a scratch virtual environment (the engines are not dependencies of localai):

    python3.11 -m venv /tmp/gramvenv
    /tmp/gramvenv/bin/pip install llguidance outlines-core xgrammar tokenizers numpy
    /tmp/gramvenv/bin/python benchmarks/grammar_engines.py [--cache-dir DIR] [--repeats 5] [--features]

`pip install xgrammar` also pulls torch, transformers and triton (gigabytes); for a lean venv install it with
`pip install --no-deps xgrammar apache-tvm-ffi pydantic typing-extensions` instead: the script then puts empty
stand-in `torch`/`transformers` modules in place while importing xgrammar (its import needs them, its numpy
path does not). Engines that do not import are skipped with a printed line. The tokenizers are trained once
on the *.py/*.txt/*.md/*.rst files of this Python installation (~20 s) and cached in --cache-dir.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import sysconfig
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

VOCAB_SIZES = (24_000, 131_072)
EOS_TOKEN = "<|end|>"
SPECIAL_TOKENS = (EOS_TOKEN, "<think>", "</think>", "<tool_call>", "</tool_call>")
CORPUS_SUFFIXES = frozenset({".py", ".txt", ".md", ".rst"})
CORPUS_MAX_BYTES = 64 << 20
CORPUS_MAX_FILE_BYTES = 1 << 20
SLOW_COMPILE_MS = 20_000

PET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 1, "maxItems": 3},
        "owner": {
            "type": "object",
            "properties": {"first": {"type": "string"}, "score": {"type": "number"}},
            "required": ["first", "score"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "kind", "age", "tags", "owner"],
    "additionalProperties": False,
}
PET_ANSWER: dict[str, Any] = {
    "name": "whiskers",
    "kind": "cat",
    "age": 7,
    "tags": ["indoor", "calm"],
    "owner": {"first": "Ada Lovelace, Countess", "score": 93.25},
}
ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def corpus_files(max_bytes: int = CORPUS_MAX_BYTES) -> list[str]:
    """Text files of this Python installation (stdlib and site-packages), sorted, up to max_bytes in all."""
    roots = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]})
    files: list[str] = []
    total = 0
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.suffix not in CORPUS_SUFFIXES or not path.is_file():
                continue
            size = path.stat().st_size
            if size > CORPUS_MAX_FILE_BYTES or total + size > max_bytes:
                continue
            files.append(str(path))
            total += size
    return files


def train_tokenizer(vocab_size: int, files: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = (Path(path).read_text(encoding="utf-8", errors="replace") for path in files)
    tokenizer.train_from_iterator(texts, trainer, length=len(files))
    return tokenizer


def load_tokenizer(cache_dir: Path, vocab_size: int) -> Tokenizer:
    path = cache_dir / f"bpe-{vocab_size}.json"
    if not path.exists():
        start = time.perf_counter()
        tokenizer = train_tokenizer(vocab_size, corpus_files())
        cache_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(path))
        print(f"trained {path.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return Tokenizer.from_file(str(path))


def byte_level_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character table that the ByteLevel pre-tokenizer uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


@dataclass(frozen=True)
class Vocab:
    """What every engine is built from: token byte strings, the special tokens, EOS and the encoder."""

    tokenizer: Tokenizer
    tokens: list[bytes]
    special_ids: frozenset[int]
    eos_id: int

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def tokenizer_json(self) -> str:
        return self.tokenizer.to_str()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids


def make_vocab(tokenizer: Tokenizer) -> Vocab:
    decode = byte_level_decoder()
    specials = {tokenizer.token_to_id(t): t for t in SPECIAL_TOKENS}
    tokens: list[bytes] = []
    for token_id in range(tokenizer.get_vocab_size(with_added_tokens=True)):
        text = tokenizer.id_to_token(token_id)
        tokens.append(text.encode() if token_id in specials else bytes(decode[c] for c in text))
    return Vocab(tokenizer, tokens, frozenset(specials), tokenizer.token_to_id(EOS_TOKEN))


# ---------------------------------------------------------------------------------------------------------------
# Engines: each compiles a grammar into a Matcher that fills a (1, words) int32 bitmask and consumes tokens.


class Unsupported(Exception):
    """The engine has no input of this kind."""


class Matcher(Protocol):
    def fill(self, bitmask: np.ndarray) -> None: ...

    def consume(self, token: int) -> bool: ...

    def accepting(self) -> bool: ...


class Engine(Protocol):
    name: str

    def compile(self, kind: str, text: str) -> Matcher: ...


class LLGuidanceMatcher:
    def __init__(self, matcher: Any) -> None:
        self.m = matcher

    def fill(self, bitmask: np.ndarray) -> None:
        self.m.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)

    def consume(self, token: int) -> bool:
        return bool(self.m.consume_token(token))

    def accepting(self) -> bool:
        return bool(self.m.is_accepting())


class LLGuidanceEngine:
    """llguidance: LLTokenizer parses tokenizer.json itself (Rust `tokenizers`), EOS given explicitly.

    Its added special tokens are known as special and never allowed unless the grammar names them.
    """

    name = "llguidance"

    def __init__(self, vocab: Vocab) -> None:
        self.ll = importlib.import_module("llguidance")
        self.tokenizer = self.ll.LLTokenizer(vocab.tokenizer_json, eos_token=vocab.eos_id)

    def compile(self, kind: str, text: str) -> Matcher:
        formats = {"json_schema": "json_schema", "regex": "regex", "lark": "lark", "gbnf": "gbnf"}
        if kind not in formats:
            raise Unsupported(kind)
        grammar = self.ll.grammar_from(formats[kind], text)
        matcher = self.ll.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return LLGuidanceMatcher(matcher)


class XGrammarMatcher:
    def __init__(self, matcher: Any) -> None:
        self.m = matcher

    def fill(self, bitmask: np.ndarray) -> None:
        self.m.fill_next_token_bitmask(bitmask)

    def consume(self, token: int) -> bool:
        return bool(self.m.accept_token(token))

    def accepting(self) -> bool:
        return bool(self.m.is_completed())


class XGrammarEngine:
    """xgrammar: TokenizerInfo from the decoded token bytes (VocabType.RAW) and the stop token id.

    Special tokens other than the stop token are passed as b"": xgrammar then lists them as special and never
    allows them; with their text ("<think>") they would be allowed inside JSON strings.
    """

    name = "xgrammar"

    def __init__(self, vocab: Vocab) -> None:
        self.xgr = import_xgrammar()
        tokens = [b"" if i in vocab.special_ids and i != vocab.eos_id else t for i, t in enumerate(vocab.tokens)]
        info = self.xgr.TokenizerInfo(
            tokens, self.xgr.VocabType.RAW, vocab_size=vocab.size, stop_token_ids=[vocab.eos_id]
        )
        self.compiler = self.xgr.GrammarCompiler(info, max_threads=os.cpu_count() or 1, cache_enabled=False)

    def compile(self, kind: str, text: str) -> Matcher:
        if kind == "json_schema":
            compiled = self.compiler.compile_json_schema(text)
        elif kind == "regex":
            compiled = self.compiler.compile_regex(text)
        elif kind == "lark":
            compiled = self.compiler.compile_lark(text)
        elif kind == "gbnf":
            compiled = self.compiler.compile_grammar(text)
        else:
            raise Unsupported(kind)
        return XGrammarMatcher(self.xgr.GrammarMatcher(compiled))


def import_xgrammar() -> Any:
    """Import xgrammar; where torch/transformers are absent, with empty stand-ins that its import needs."""
    if "xgrammar" in sys.modules:
        return sys.modules["xgrammar"]
    importlib.import_module("tvm_ffi")  # before any stand-in: it probes for a real torch
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    for name in missing:
        stub = types.ModuleType(name)
        stub.__getattr__ = lambda attr: type(attr, (), {"__init__": lambda *args, **kwargs: None})
        sys.modules[name] = stub
    try:
        return importlib.import_module("xgrammar")
    finally:
        for name in missing:
            del sys.modules[name]


class OutlinesMatcher:
    def __init__(self, guide: Any) -> None:
        self.g = guide

    def fill(self, bitmask: np.ndarray) -> None:
        self.g.write_mask_into(bitmask.ctypes.data, bitmask.size, 4)

    def consume(self, token: int) -> bool:
        try:
            self.g.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True

    def accepting(self) -> bool:
        return bool(self.g.is_finished())


class OutlinesEngine:
    """outlines-core: Vocabulary(eos_id, {token bytes: [ids]}) without the other special tokens; regexes only."""

    name = "outlines-core"

    def __init__(self, vocab: Vocab) -> None:
        self.oc = importlib.import_module("outlines_core")
        by_bytes: dict[bytes, list[int]] = {}
        for token_id, token in enumerate(vocab.tokens):
            if token_id not in vocab.special_ids:
                by_bytes.setdefault(token, []).append(token_id)
        self.vocabulary = self.oc.Vocabulary(vocab.eos_id, by_bytes)

    def compile(self, kind: str, text: str) -> Matcher:
        if kind == "json_schema":
            regex = self.oc.json_schema.build_regex_from_schema(text)
        elif kind == "regex":
            regex = text
        else:
            raise Unsupported(kind)
        return OutlinesMatcher(self.oc.Guide(self.oc.Index(regex, self.vocabulary)))


ENGINES: dict[str, tuple[str, Callable[[Vocab], Engine]]] = {
    "llguidance": ("llguidance", LLGuidanceEngine),
    "xgrammar": ("xgrammar", XGrammarEngine),
    "outlines-core": ("outlines_core", OutlinesEngine),
}


def available_engines() -> list[str]:
    names = []
    for name, (module, _) in ENGINES.items():
        try:
            import_xgrammar() if module == "xgrammar" else importlib.import_module(module)
        except Exception as error:  # ImportError, or a failing import of the xgrammar build at hand
            print(f"skipping {name}: {type(error).__name__}: {error}")
            continue
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------------------
# Walking a fixed answer


def new_bitmask(vocab_size: int) -> np.ndarray:
    return np.zeros((1, (vocab_size + 31) // 32), dtype=np.int32)


def allowed(bitmask: np.ndarray, token: int) -> bool:
    return bool((int(bitmask[0, token >> 5]) >> (token & 31)) & 1)


@dataclass
class Walk:
    mask_us: list[float]
    commit_us: list[float]
    masks: np.ndarray  # (steps, words) int32, one row per mask computed
    valid: bool  # every answer token allowed and consumed, EOS allowed and the matcher accepting at the end


def walk(matcher: Matcher, tokens: list[int], vocab: Vocab) -> Walk:
    bitmask = new_bitmask(vocab.size)
    masks = np.zeros((len(tokens) + 1, bitmask.shape[1]), dtype=np.int32)
    mask_us: list[float] = []
    commit_us: list[float] = []
    valid = True
    for step, token in enumerate([*tokens, vocab.eos_id]):
        start = time.perf_counter_ns()
        matcher.fill(bitmask)
        mask_us.append((time.perf_counter_ns() - start) / 1e3)
        masks[step] = bitmask[0]
        valid = valid and allowed(bitmask, token)
        if token == vocab.eos_id:
            break
        start = time.perf_counter_ns()
        valid = matcher.consume(token) and valid
        commit_us.append((time.perf_counter_ns() - start) / 1e3)
    return Walk(mask_us, commit_us, masks, valid and matcher.accepting())


def accepts(matcher: Matcher, text: str, vocab: Vocab) -> bool:
    """Whether the matcher takes the tokens of text, with every token in the mask, and then allows EOS."""
    bitmask = new_bitmask(vocab.size)
    for token in vocab.encode(text):
        matcher.fill(bitmask)
        if not allowed(bitmask, token) or not matcher.consume(token):
            return False
    matcher.fill(bitmask)
    return allowed(bitmask, vocab.eos_id) and matcher.accepting()


def unpack(bitmask_row: np.ndarray, vocab_size: int) -> np.ndarray:
    """One uint8 (0 or 1) per token: bit i of the little-endian int32 words is token i."""
    return np.unpackbits(bitmask_row.view(np.uint8), bitorder="little", count=vocab_size)


def apply_where(logits: np.ndarray, bitmask_row: np.ndarray, out: np.ndarray) -> None:
    """out = logits, with -inf where the token is not allowed (a masked copy: its speed depends on the pattern)."""
    ok = unpack(bitmask_row, logits.shape[0]).view(np.bool_)
    np.copyto(out, logits)
    np.copyto(out, -np.inf, where=~ok)


NEG_INF_BITS = np.array(-np.inf, dtype=np.float32).view(np.int32)


def apply_bitwise(logits: np.ndarray, bitmask_row: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """The same result without branches: out = (logits & keep) | (-inf & ~keep) on the float32 bit patterns."""
    np.negative(unpack(bitmask_row, logits.shape[0]), out=scratch, dtype=np.int32)  # allowed -> -1 (all ones)
    out_bits = out.view(np.int32)
    np.bitwise_and(logits.view(np.int32), scratch, out=out_bits)
    np.invert(scratch, out=scratch)
    np.bitwise_and(scratch, NEG_INF_BITS, out=scratch)
    np.bitwise_or(out_bits, scratch, out=out_bits)


def apply_us(masks: np.ndarray, vocab_size: int) -> tuple[float, float]:
    """Median times of apply_where and apply_bitwise over the masks of a walk (checked to agree)."""
    logits = np.random.default_rng(0).standard_normal(vocab_size, dtype=np.float32)
    out_where, out_bitwise = np.empty_like(logits), np.empty_like(logits)
    scratch = np.empty(vocab_size, dtype=np.int32)
    where_us, bitwise_us = [], []
    for row in masks:
        start = time.perf_counter_ns()
        apply_where(logits, row, out_where)
        where_us.append((time.perf_counter_ns() - start) / 1e3)
        start = time.perf_counter_ns()
        apply_bitwise(logits, row, out_bitwise, scratch)
        bitwise_us.append((time.perf_counter_ns() - start) / 1e3)
        assert np.array_equal(out_where, out_bitwise)
    return float(np.median(where_us)), float(np.median(bitwise_us))


# ---------------------------------------------------------------------------------------------------------------
# Benchmark


@dataclass
class Row:
    engine: str
    vocab: int
    grammar: str
    tokens: int
    compile_ms: float
    first_mask_us: float
    mask_median_us: float
    mask_p95_us: float
    commit_median_us: float
    generation_ms: float  # compile + every mask + every commit of one walk, median over the repeats
    apply_where_us: float
    apply_bitwise_us: float
    valid: bool

    def cells(self) -> list[str]:
        return [
            self.engine,
            f"{self.vocab:,}",
            self.grammar,
            str(self.tokens),
            f"{self.compile_ms:.1f}",
            f"{self.first_mask_us:.0f}",
            f"{self.mask_median_us:.1f}",
            f"{self.mask_p95_us:.0f}",
            f"{self.commit_median_us:.1f}",
            f"{self.generation_ms:.1f}",
            f"{self.apply_where_us:.0f}",
            f"{self.apply_bitwise_us:.0f}",
            "yes" if self.valid else "NO",
        ]


ROW_HEADERS = [
    "library",
    "vocab",
    "grammar",
    "tokens",
    "compile ms",
    "first mask µs",
    "mask median µs",
    "mask p95 µs",
    "commit median µs",
    "compile+walk ms",
    "apply where µs",
    "apply bitwise µs",
    "walk valid",
]


def bench(engine: Engine, vocab: Vocab, grammar: str, schema: dict[str, Any], repeats: int) -> Row:
    tokens = vocab.encode(json.dumps(PET_ANSWER))
    compile_ms: list[float] = []
    generation_ms: list[float] = []
    first: list[float] = []
    masks: list[float] = []
    commits: list[float] = []
    valid = True
    for _ in range(repeats):
        start = time.perf_counter_ns()
        matcher = engine.compile("json_schema", json.dumps(schema))
        compile_ms.append((time.perf_counter_ns() - start) / 1e6)
        result = walk(matcher, tokens, vocab)
        generation_ms.append(compile_ms[-1] + (sum(result.mask_us) + sum(result.commit_us)) / 1e3)
        valid = valid and result.valid
        first.append(result.mask_us[0])
        masks += result.mask_us
        commits += result.commit_us
        if sum(compile_ms) > SLOW_COMPILE_MS:
            break  # slow compiles: fewer repeats
    return Row(
        engine.name,
        vocab.size,
        grammar,
        len(tokens),
        float(np.median(compile_ms)),
        float(np.median(first)),
        float(np.median(masks)),
        float(np.percentile(masks, 95)),
        float(np.median(commits)),
        float(np.median(generation_ms)),
        *apply_us(result.masks, vocab.size),
        valid,
    )


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_benchmark(vocabs: list[Vocab], names: list[str], repeats: int) -> None:
    rows: list[Row] = []
    setup: list[list[str]] = []
    grammars = {"pet schema": PET_SCHEMA, "any object": ANY_OBJECT_SCHEMA}
    for vocab in vocabs:
        for name in names:
            start = time.perf_counter()
            engine = ENGINES[name][1](vocab)
            setup.append([name, f"{vocab.size:,}", f"{(time.perf_counter() - start) * 1e3:.0f}"])
            for grammar, schema in grammars.items():
                try:
                    rows.append(bench(engine, vocab, grammar, schema, repeats))
                except Exception as error:  # report the engine's refusal and go on
                    print(f"{name} {vocab.size} {grammar}: {type(error).__name__}: {error}")
    print(f"load average after: {load()}\n")
    print(markdown(["library", "vocab", "tokenizer info ms"], setup) + "\n")
    rows.sort(key=lambda r: (r.grammar, r.vocab, r.engine))
    print(markdown(ROW_HEADERS, [row.cells() for row in rows]))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------------------------
# Feature probe


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # json_schema, regex, lark or gbnf
    grammar: str
    valid: tuple[str, ...]
    invalid: tuple[str, ...]


def schema_case(name: str, schema: dict[str, Any], valid: list[Any], invalid: list[Any]) -> Case:
    return Case(name, "json_schema", json.dumps(schema), tuple(map(json.dumps, valid)), tuple(map(json.dumps, invalid)))


def value_case(name: str, schema: dict[str, Any], valid: list[Any], invalid: list[Any]) -> Case:
    """A case for a value schema, put in an object ({"v": value}) so that top-level quirks do not interfere."""
    wrapped = obj({"v": schema}, required=["v"], additionalProperties=False)
    return schema_case(name, wrapped, [{"v": x} for x in valid], [{"v": x} for x in invalid])


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


INT = {"type": "integer"}
STR = {"type": "string"}
ARITH_LARK = 'start: expr\nexpr: term (("+" | "-") term)*\nterm: NUMBER | "(" expr ")"\nNUMBER: /[0-9]+/\n'
ARITH_GBNF = 'root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= [0-9]+ | "(" expr ")"\n'
ARITH_OK, ARITH_BAD = ("(1+23)-4",), ("1++2", "(1")


def value_cases() -> Iterator[Case]:
    yield value_case("pattern", {"type": "string", "pattern": "^[a-z]{1,3}$"}, ["abc"], ["abcd", "A"])
    yield value_case("pattern without anchors", {"type": "string", "pattern": "\\d{3}"}, ["123"], ["12"])
    yield value_case("enum (mixed types)", {"enum": ["cat", "dog", 3]}, ["dog", 3], ["cow", 4])
    yield value_case("const", {"const": "x1"}, ["x1"], ["x2"])
    yield value_case(
        "minItems/maxItems", {"type": "array", "items": INT, "minItems": 1, "maxItems": 2}, [[1, 2]], [[], [1, 2, 3]]
    )
    yield value_case("uniqueItems", {"type": "array", "items": INT, "uniqueItems": True}, [[1, 2]], [[1, 1]])
    yield value_case(
        "prefixItems", {"type": "array", "prefixItems": [INT, STR], "items": False}, [[1, "a"]], [["a", 1], [1, "a", 2]]
    )
    yield value_case("integer minimum/maximum", {"type": "integer", "minimum": 0, "maximum": 120}, [42, 120], [121, -1])
    yield value_case("integer exclusiveMinimum", {"type": "integer", "exclusiveMinimum": 0}, [1], [0])
    yield value_case("number minimum/maximum", {"type": "number", "minimum": 0.5, "maximum": 2.5}, [1.5], [3.0, 0.1])
    yield value_case("multipleOf", {"type": "integer", "multipleOf": 5}, [15], [7])
    yield value_case("minLength/maxLength", {"type": "string", "minLength": 2, "maxLength": 4}, ["abc"], ["a", "abcde"])
    yield value_case(
        "format date-time", {"type": "string", "format": "date-time"}, ["2024-01-02T03:04:05Z"], ["yesterday"]
    )
    yield value_case("format date", {"type": "string", "format": "date"}, ["2024-01-02"], ["2024-13-45x"])
    yield value_case("format email", {"type": "string", "format": "email"}, ["ada@example.com"], ["nope"])
    yield value_case(
        "format uuid", {"type": "string", "format": "uuid"}, ["123e4567-e89b-12d3-a456-426614174000"], ["123"]
    )
    either = [INT, {"type": "string", "maxLength": 2}]
    yield value_case("anyOf", {"anyOf": either}, [5, "ab"], [True, "abc"])
    yield value_case("oneOf", {"oneOf": either}, [5, "ab"], [True, "abc"])
    yield value_case("allOf", {"allOf": [INT, {"minimum": 3}]}, [4], [2])
    yield value_case("not", {"not": INT}, ["a"], [1])
    yield value_case("type list", {"type": ["string", "null"]}, ["a", None], [1])


def object_cases() -> Iterator[Case]:
    yield schema_case(
        "$ref/$defs",
        {"$defs": {"p": INT}, **obj({"a": {"$ref": "#/$defs/p"}}, required=["a"])},
        [{"a": 1}],
        [{"a": "x"}],
    )
    node = obj({"c": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, additionalProperties=False)
    yield schema_case(
        "recursive $ref", {"$defs": {"n": node}, "$ref": "#/$defs/n"}, [{"c": [{"c": [{"c": []}]}]}], [{"c": 1}]
    )
    yield schema_case(
        "additionalProperties false", obj({"a": INT}, additionalProperties=False), [{"a": 1}], [{"a": 1, "b": 2}]
    )
    yield schema_case(
        "additionalProperties true", obj({"a": INT}, additionalProperties=True), [{"a": 1, "b": "x"}], [{"a": "x"}]
    )
    yield schema_case("additionalProperties absent", obj({"a": INT}), [{"a": 1, "b": "x"}], [{"a": "x"}])
    yield schema_case(
        "additionalProperties schema",
        obj({"a": INT}, additionalProperties=INT),
        [{"a": 1, "b": 2}],
        [{"a": 1, "b": "x"}],
    )
    inner = obj({"x": INT, "y": INT}, required=["x"])
    yield schema_case("nested required", obj({"o": inner}, required=["o"]), [{"o": {"x": 1}}], [{"o": {"y": 2}}, {}])
    yield schema_case("optional property omitted", obj({"a": INT, "b": INT}, required=["b"]), [{"b": 1}], [{}])
    yield schema_case(
        "properties in another order", obj({"a": INT, "b": INT}, required=["a", "b"]), [{"b": 1, "a": 2}], [{"a": 1}]
    )
    yield schema_case(
        "minProperties", {"type": "object", "additionalProperties": INT, "minProperties": 1}, [{"a": 1}], [{}]
    )
    yield schema_case(
        "patternProperties", {"type": "object", "patternProperties": {"^x": INT}}, [{"x1": 1}], [{"x1": "s"}]
    )
    yield schema_case("top-level number 1.5", {"type": "number"}, [1.5], ["1.5"])


def grammar_cases() -> Iterator[Case]:
    yield Case("regex", "regex", "[0-9]{3}-[a-z]+", ("123-ab",), ("12-ab", "123-"))
    yield Case("regex, match goes on after a full match", "regex", "[0-9]+(\\.[0-9]+)?", ("1.5",), ("1.",))
    yield Case("regex lookahead", "regex", "(?=a)[a-z]+", ("ab",), ("ba",))
    yield Case("Lark grammar", "lark", ARITH_LARK, ARITH_OK, ARITH_BAD)
    yield Case("GBNF grammar", "gbnf", ARITH_GBNF, ARITH_OK, ARITH_BAD)


def feature_cases() -> Iterator[Case]:
    yield from value_cases()
    yield from object_cases()
    yield from grammar_cases()


def probe(engine: Engine, case: Case, vocab: Vocab) -> str:
    try:
        engine.compile(case.kind, case.grammar)
    except Unsupported:
        return "n/a"
    except Exception as error:  # any compile failure is a refusal
        message = re.sub(r"\[[0-9:]+\] \S+: ", "", " ".join(str(error).split()))
        return f"refused ({message[:70]})".replace("|", "/")
    rejected = [text for text in case.valid if not accepts(engine.compile(case.kind, case.grammar), text, vocab)]
    if rejected:
        return f"rejects valid {' '.join(rejected)}".replace("|", "/")
    wrongly = [text for text in case.invalid if accepts(engine.compile(case.kind, case.grammar), text, vocab)]
    return f"ignored (accepts {' '.join(wrongly)})".replace("|", "/") if wrongly else "yes"


def run_features(vocab: Vocab, names: list[str]) -> None:
    engines = [ENGINES[name][1](vocab) for name in names]
    rows = [[case.name, *(probe(engine, case, vocab) for engine in engines)] for case in feature_cases()]
    print(markdown(["feature", *names], rows))


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "localai-grammar-bench",
        help="where the trained tokenizer.json files are kept",
    )
    parser.add_argument("--repeats", type=int, default=5, help="compiles and walks per engine, vocab and grammar")
    parser.add_argument("--vocab", type=int, nargs="+", default=list(VOCAB_SIZES), help="vocabulary sizes")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--features", action="store_true", help="probe schema/grammar features instead")
    args = parser.parse_args()

    vocabs = [make_vocab(load_tokenizer(args.cache_dir, size)) for size in args.vocab]
    names = [name for name in available_engines() if name in args.engines]
    print(f"load average: {load()}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}; numpy {np.__version__}")
    for name in names:
        print(f"{name} {importlib.metadata.version(name)}")
    if args.features:
        run_features(vocabs[0], names)
    else:
        run_benchmark(vocabs, names, args.repeats)


if __name__ == "__main__":
    main()
