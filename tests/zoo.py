"""Tiny checkpoints for the tests, built with transformers from random weights (no downloads).

Every model the suite uses is declared here; `conftest.py` builds each once per session. transformers
(float32) is the numerical reference the converted models are compared against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.vocab import GPT4O_REGEX, LLAMA3_REGEX, QWEN2_REGEX
from localai.demo_model import save_tokenizer, train_tokenizer
from localai.quality import kl_divergence

# TensorRT engines the tests build: context and prefill limits small enough to build fast
ENGINE_MAX_CONTEXT, ENGINE_MAX_PREFILL = 256, 64

# A text that exercises pre-tokenizers: scripts, digits, whitespace runs, contractions, markers.
MIXED_TEXT = (
    "Hello, wörld!  Ünïcödé 東京タワー and привет мир 🙂🚀\n\n\tTabs\t\tand   spaces   \r\n"
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000; I'VE they'll we'd DON'T\n"
    "<think>step 1: carry the 1</think><|end|> <|user|>x=y+z<|assistant|>   trailing   "
)

TOKENIZER_STYLES: dict[str, dict[str, Any]] = {
    "gpt-2": {"split": None},
    "llama-bpe": {"split": LLAMA3_REGEX, "ignore_merges": True},
    "dbrx": {"split": LLAMA3_REGEX, "ignore_merges": False},
    "qwen2": {"split": QWEN2_REGEX},
    "gpt-4o": {"split": GPT4O_REGEX},
    "starcoder": {"split": None, "individual_digits": True},
}


@dataclass(frozen=True)
class Spec:
    """How to build one tiny checkpoint."""

    kind: str  # transformers config class: nemotron_h, llama, mistral, qwen3, qwen2
    tokenizer: str  # key of TOKENIZER_STYLES
    config: dict[str, Any] = field(default_factory=dict)
    legacy_nemotron_config: bool = False  # rewrite config.json the way NVIDIA's releases spell it


NEMOTRON_BASE = {
    "hidden_size": 256, "num_attention_heads": 4, "head_dim": 64, "intermediate_size": 512,
    "mamba_num_heads": 8, "mamba_head_dim": 32, "ssm_state_size": 32, "conv_kernel": 4,
    "chunk_size": 16, "max_position_embeddings": 2048, "initializer_range": 0.05,
}

ZOO: dict[str, Spec] = {
    # transformers 5.x layout: layers_block_type list and all MoE defaults; n_groups > 1, GQA, conv bias
    "nemotron_h": Spec("nemotron_h", "gpt-2", {
        **NEMOTRON_BASE, "num_key_value_heads": 2, "n_groups": 2, "use_conv_bias": True,
        "layers_block_type": ["linear_attention", "mlp", "full_attention", "linear_attention", "mlp",
                              "linear_attention"],
    }),
    # NVIDIA release layout: hybrid_override_pattern string; one group, full MHA, no conv bias, tied head
    "nemotron_h_legacy": Spec("nemotron_h", "llama-bpe", {
        **NEMOTRON_BASE, "hidden_size": 128, "num_key_value_heads": 4, "head_dim": 32, "n_groups": 1,
        "use_conv_bias": False, "tie_word_embeddings": True,
        "layers_block_type": ["linear_attention", "full_attention", "mlp", "linear_attention", "mlp"],
    }, legacy_nemotron_config=True),
    # Llama 3 style: GQA, and frequency-dependent RoPE scaling (rope_freqs) with every band in use
    "llama": Spec("llama", "llama-bpe", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "initializer_range": 0.05,
        "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64, "rope_theta": 10000.0},
    }),
    "qwen3": Spec("qwen3", "qwen2", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 2048, "tie_word_embeddings": True,
        "initializer_range": 0.05, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    }),
    "mistral": Spec("mistral", "llama-bpe", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 2048, "sliding_window": None,
        "initializer_range": 0.05,
    }),
    "qwen2": Spec("qwen2", "qwen2", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "initializer_range": 0.05,
    }),
}


def build_tokenizer(style: str, folder: Path) -> Any:
    tok = train_tokenizer(512, **TOKENIZER_STYLES[style])
    save_tokenizer(tok, folder)
    return tok


def build_checkpoint(name: str, folder: Path) -> Path:
    """Write checkpoint `name` of the ZOO to `folder` with transformers' save_pretrained."""
    import torch
    import transformers

    spec = ZOO[name]
    tok = build_tokenizer(spec.tokenizer, folder)
    config_class = {"nemotron_h": transformers.NemotronHConfig, "llama": transformers.LlamaConfig,
                    "mistral": transformers.MistralConfig, "qwen3": transformers.Qwen3Config,
                    "qwen2": transformers.Qwen2Config}[spec.kind]
    config = config_class(vocab_size=tok.get_vocab_size(), bos_token_id=tok.token_to_id("<s>"),
                          eos_token_id=tok.token_to_id("<|end|>"), pad_token_id=0, **spec.config)
    torch.manual_seed(sum(map(ord, name)))
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    if spec.legacy_nemotron_config:
        _rewrite_as_legacy_nemotron(folder / "config.json")
    return folder


def _rewrite_as_legacy_nemotron(path: Path) -> None:
    config = json.loads(path.read_text())
    kinds = {"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}
    pattern = "".join(kinds[k] for k in config.pop("layers_block_type"))
    for key in [k for k in config if k.startswith(("moe_", "n_routed", "n_shared", "num_experts", "mtp_"))]:
        del config[key]
    config |= {"hybrid_override_pattern": pattern, "num_hidden_layers": len(pattern),
               "mamba_n_groups": config.pop("n_groups"), "mamba_conv_bias": config.pop("use_conv_bias")}
    path.write_text(json.dumps(config, indent=2))


def reference_model(folder: Path) -> Any:
    """The checkpoint loaded back by transformers in float32, in eval mode."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.eval()


def reference_logits(model: Any, tokens: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False)
    return out.logits[0].float().numpy()


def random_tokens(n: int, vocab: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def mean_kl(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL divergence KL(reference || model) of the next-token distributions, per position."""
    return float(kl_divergence(reference_logits, logits).mean())
