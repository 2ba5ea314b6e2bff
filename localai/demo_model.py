"""Build small checkpoints offline: a BPE tokenizer trained with `tokenizers`, and a random-weight
Nemotron-H written with numpy + safetensors.

This is the embedded default of `localai demo` until a trained demo model ships; its weights are
random, so it prints noise. Tests build their tokenizers here too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
THINK_TOKENS = ["<think>", "</think>"]
CHAT_TEMPLATE = """\
{%- set ns = namespace(thinking=true, system='') -%}
{%- for m in messages if m['role'] in ('system', 'user') -%}
  {%- if '/no_think' in m['content'] -%}{%- set ns.thinking = false -%}
  {%- elif '/think' in m['content'] -%}{%- set ns.thinking = true -%}{%- endif -%}
{%- endfor -%}
{{- bos_token -}}
{%- for m in messages -%}
  {%- if m['role'] == 'assistant' -%}
    {%- set text = m['content'].split('</think>')[-1] | trim -%}
  {%- else -%}
    {%- set text = m['content'] | replace('/no_think', '') | replace('/think', '') | trim -%}
  {%- endif -%}
<|{{ m['role'] }}|>{{ text }}<|end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|assistant|>{{ '<think>\n' if ns.thinking else '<think></think>' }}
{%- endif -%}
"""

_WORDS = (
    "the", "model", "reads", "a", "short", "note", "about", "rivers", "mountains", "and", "small", "towns",
    "where", "people", "count", "apples", "and", "oranges", "every", "morning", "before", "they", "walk", "to",
    "the", "market", "think", "answer", "question", "reason", "step", "because", "therefore", "first", "second",
    "third", "number", "digit", "sum", "carry", "result", "check", "again", "done", "café", "naïve", "straße",
    "déjà", "vu", "東京", "京都", "数字", "привет", "мир", "¿qué", "tal?", "über", "ñandú", "hello", "world",
)


def sample_corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """Deterministic text with words, numbers, punctuation, whitespace runs and non-ASCII scripts."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.5:
            words.insert(rng.randint(0, len(words)), str(rng.randint(0, 10**rng.randint(1, 7))))
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
        lines.append(sep.join(words) + rng.choice([".", "?", "!", ",", "", " 🙂"]))
    return lines


def train_tokenizer(vocab_size: int = 512, *, split: str | None = None, ignore_merges: bool = False,
                    individual_digits: bool = False, seed: int = 0, corpus: list[str] | None = None) -> Any:
    """A byte-level BPE tokenizer trained on `sample_corpus`.

    `split=None` gives GPT-2's byte-level pre-tokenizer; a regex gives Llama 3 / Qwen's layout
    (a Split step, then byte-level mapping without its own regex). `ignore_merges` is Llama 3's flag:
    a pre-token that is itself in the vocabulary is taken whole. `individual_digits` splits every digit
    off first (StarCoder's layout). `corpus` replaces the built-in sample text.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if split is None:
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                             if individual_digits else byte_level)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(THINK_TOKENS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
                                  show_progress=False)
    tok.train_from_iterator(corpus or sample_corpus(seed=seed), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tok.model.ignore_merges = ignore_merges
    return tok


def save_tokenizer(tok: Any, folder: Path, *, add_bos: bool = True) -> None:
    """tokenizer.json + tokenizer_config.json (with the chat template), as transformers would ship them."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "bos_token": "<s>", "eos_token": "<|end|>", "unk_token": "<unk>", "pad_token": "<unk>",
        "add_bos_token": add_bos, "add_eos_token": False, "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096, "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def nemotron_h_config(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    """A small dense Nemotron-H config in the legacy (NVIDIA release) layout."""
    config: dict[str, Any] = {
        "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "vocab_size": vocab_size,
        "hidden_size": 256, "hybrid_override_pattern": "M-M*-M-", "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "mamba_num_heads": 8,
        "mamba_head_dim": 64, "ssm_state_size": 64, "n_groups": 2, "conv_kernel": 4, "use_conv_bias": True,
        "mamba_hidden_act": "silu", "mlp_hidden_act": "relu2", "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": False, "max_position_embeddings": 4096, "chunk_size": 128,
        "bos_token_id": 1, "eos_token_id": 6, "pad_token_id": 0,
    }
    config.update(overrides)
    config["num_hidden_layers"] = len(config["hybrid_override_pattern"])
    return config


def random_nemotron_h_weights(config: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights for `config`, initialised the way the transformers model initialises them."""
    rng = np.random.default_rng(seed)
    h, v = config["hidden_size"], config["vocab_size"]
    nh, hd = config["mamba_num_heads"], config["mamba_head_dim"]
    d_inner, groups, state = nh * hd, config["n_groups"], config["ssm_state_size"]
    conv_dim = d_inner + 2 * groups * state
    heads, kv, head_dim, ff = (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"],
                               config["intermediate_size"])

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, shape).astype(np.float32)

    weights = {"backbone.embeddings.weight": normal(v, h), "backbone.norm_f.weight": np.ones(h, np.float32),
               "lm_head.weight": normal(v, h)}
    for i, kind in enumerate(config["hybrid_override_pattern"]):
        p = f"backbone.layers.{i}"
        weights[f"{p}.norm.weight"] = np.ones(h, np.float32)
        if kind == "M":
            weights |= {
                f"{p}.mixer.in_proj.weight": normal(2 * d_inner + 2 * groups * state + nh, h),
                f"{p}.mixer.conv1d.weight": rng.normal(0, 0.2, (conv_dim, 1, config["conv_kernel"])).astype(np.float32),
                f"{p}.mixer.conv1d.bias": np.zeros(conv_dim, np.float32),
                f"{p}.mixer.dt_bias": np.ones(nh, np.float32),
                f"{p}.mixer.A_log": np.log(np.arange(1, nh + 1, dtype=np.float32)),
                f"{p}.mixer.D": np.ones(nh, np.float32),
                f"{p}.mixer.norm.weight": np.ones(d_inner, np.float32),
                f"{p}.mixer.out_proj.weight": normal(h, d_inner),
            }
        elif kind == "*":
            weights |= {
                f"{p}.mixer.q_proj.weight": normal(heads * head_dim, h),
                f"{p}.mixer.k_proj.weight": normal(kv * head_dim, h),
                f"{p}.mixer.v_proj.weight": normal(kv * head_dim, h),
                f"{p}.mixer.o_proj.weight": normal(h, heads * head_dim),
            }
        elif kind == "E":
            weights |= random_moe_weights(config, f"{p}.mixer", normal, rng)
        else:
            weights |= {f"{p}.mixer.up_proj.weight": normal(ff, h), f"{p}.mixer.down_proj.weight": normal(h, ff)}
    return weights


def random_moe_weights(config: dict[str, Any], mixer: str, normal: Any, rng: np.random.Generator,
                       ) -> dict[str, np.ndarray]:
    """A Nemotron 3 MoE mixer: a router that spreads tokens over the experts (a selection bias too), the
    routed experts one tensor each (as releases store them), the shared expert, LatentMoE's projections."""
    h, experts = config["hidden_size"], config["n_routed_experts"]
    ff, shared = config["moe_intermediate_size"], config["moe_shared_expert_intermediate_size"]
    width = config.get("moe_latent_size") or h
    weights = {f"{mixer}.gate.weight": rng.normal(0.0, 0.1, (experts, h)).astype(np.float32),
               f"{mixer}.gate.e_score_correction_bias": rng.normal(0.0, 0.05, experts).astype(np.float32),
               f"{mixer}.shared_experts.up_proj.weight": normal(shared, h),
               f"{mixer}.shared_experts.down_proj.weight": normal(h, shared)}
    for e in range(experts):
        weights[f"{mixer}.experts.{e}.up_proj.weight"] = normal(ff, width)
        weights[f"{mixer}.experts.{e}.down_proj.weight"] = normal(width, ff)
    if config.get("moe_latent_size"):
        weights |= {f"{mixer}.fc1_latent_proj.weight": normal(width, h),
                    f"{mixer}.fc2_latent_proj.weight": normal(h, width)}
    return weights


def write_random_nemotron_h(folder: Path, *, tokenizer: Any = None, seed: int = 0, **overrides: Any) -> Path:
    """A complete random-weight Nemotron-H checkpoint folder with a trained tokenizer (or `tokenizer`)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer or train_tokenizer(512, seed=seed)
    save_tokenizer(tok, folder)
    config = nemotron_h_config(tok.get_vocab_size(), **overrides)
    config["eos_token_id"] = tok.token_to_id("<|end|>")
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    generation = {"temperature": 0.6, "top_p": 0.95, "eos_token_id": [config["eos_token_id"], 2]}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    save_file(random_nemotron_h_weights(config, seed), str(folder / "model.safetensors"))
    return folder
