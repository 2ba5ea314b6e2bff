"""Tiny checkpoints for the tests, built with transformers from random weights (no downloads).

Every model the suite uses is declared here; `conftest.py` builds each once per session. transformers
(float32) is the numerical reference the converted models are compared against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from converters.vocab import GPT4O_REGEX, LLAMA3_REGEX, QWEN2_REGEX
from localai.demo_model import save_tokenizer, train_tokenizer
from localai.quality import kl_divergence
from tests.tool_templates import HERMES_TOOLS

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
    release_config: bool = False  # write `config` itself as config.json (a release's exact key set)
    dtype: str = "float32"  # of the saved weights (MoE routers stay float32, as in the releases)
    mtp_head: bool = False  # add a random MTP head (which transformers ignores) in a second shard
    chatml: bool = False  # Nemotron 3's chat conventions: ChatML turns, NEMOTRON3_TEMPLATE
    template: str | None = None  # with `chatml`: this chat template instead (tests/tool_templates.py)


NEMOTRON_BASE = {
    "hidden_size": 256, "num_attention_heads": 4, "head_dim": 64, "intermediate_size": 512,
    "mamba_num_heads": 8, "mamba_head_dim": 32, "ssm_state_size": 32, "conv_kernel": 4,
    "chunk_size": 16, "max_position_embeddings": 2048, "initializer_range": 0.05,
}

# Nemotron 3 (MoE hybrids): ReLU² experts, a shared expert, sigmoid routing with a selection bias
MOE_BASE = {
    **NEMOTRON_BASE, "num_key_value_heads": 2, "n_groups": 2, "use_conv_bias": True, "n_shared_experts": 1,
    "moe_intermediate_size": 256, "moe_shared_expert_intermediate_size": 256, "norm_topk_prob": True,
}
# NVIDIA Nemotron 3 Nano 30B-A3B's config.json key set and 52-layer pattern (4.55-era legacy layout: the
# pattern string, `num_hidden_layers`, top-level RoPE keys), every size scaled down; 128 experts, top-6
NANO3_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
NANO3_RELEASE_CONFIG: dict[str, Any] = {
    "architectures": ["NemotronHForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "chunk_size": 16,
    "conv_kernel": 4, "expand": 2, "head_dim": 16, "hidden_dropout": 0.0, "hidden_size": 64,
    "hybrid_override_pattern": NANO3_PATTERN, "initializer_range": 0.05, "intermediate_size": 32,
    "layer_norm_epsilon": 1e-05, "mamba_head_dim": 16, "mamba_hidden_act": "silu", "mamba_num_heads": 8,
    "mamba_proj_bias": False, "mamba_ssm_cache_dtype": "float32", "max_position_embeddings": 2048,
    "mlp_bias": False, "mlp_hidden_act": "relu2", "model_type": "nemotron_h", "moe_intermediate_size": 32,
    "moe_shared_expert_intermediate_size": 64, "n_group": 1, "n_groups": 8, "n_routed_experts": 128,
    "n_shared_experts": 1, "norm_eps": 1e-05, "norm_topk_prob": True, "num_attention_heads": 4,
    "num_experts_per_tok": 6, "num_hidden_layers": len(NANO3_PATTERN), "num_key_value_heads": 2,
    "num_logits_to_keep": 1, "partial_rotary_factor": 1.0, "rescale_prenorm_residual": True,
    "residual_in_fp32": False, "rope_theta": 10000, "routed_scaling_factor": 2.5, "sliding_window": None,
    "ssm_state_size": 16, "tie_word_embeddings": False, "time_step_floor": 0.0001, "time_step_max": 0.1,
    "time_step_min": 0.001, "topk_group": 1, "torch_dtype": "bfloat16", "transformers_version": "4.55.4",
    "use_bias": False, "use_cache": True, "use_conv_bias": True, "use_mamba_kernels": True,
}
MOE_MODELS = ["nemotron3_moe", "nemotron3_latent", "nemotron3_mtp", "nemotron3_nano"]

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
    # Nemotron 3 Nano-like: M, E and * layers; 8 experts, top-2, scaling 2.5; transformers 5.x list layout
    "nemotron3_moe": Spec("nemotron_h", "gpt-2", {
        **MOE_BASE, "n_routed_experts": 8, "num_experts_per_tok": 2, "routed_scaling_factor": 2.5,
        "n_group": 1, "topk_group": 1,
        "layers_block_type": ["linear_attention", "moe", "full_attention", "linear_attention", "moe",
                              "linear_attention", "moe"],
    }, chatml=True),
    # LatentMoE (Nemotron 3 Super): experts in a 128-wide latent space; 16 experts in 4 groups, the best 2
    # groups chosen, top-4
    "nemotron3_latent": Spec("nemotron_h", "qwen2", {
        **MOE_BASE, "n_routed_experts": 16, "num_experts_per_tok": 4, "routed_scaling_factor": 1.5,
        "n_group": 4, "topk_group": 2, "moe_latent_size": 128, "moe_intermediate_size": 128,
        "layers_block_type": ["linear_attention", "moe", "full_attention", "moe", "linear_attention", "moe"],
    }, chatml=True),
    # an MTP head in a second shard (model.safetensors.index.json), NVIDIA's legacy config layout
    "nemotron3_mtp": Spec("nemotron_h", "llama-bpe", {
        **MOE_BASE, "n_routed_experts": 8, "num_experts_per_tok": 2, "routed_scaling_factor": 2.5,
        "num_nextn_predict_layers": 1,
        "layers_block_type": ["linear_attention", "full_attention", "moe", "linear_attention", "moe"],
    }, legacy_nemotron_config=True, mtp_head=True),
    # a dense MLP layer beside MoE layers: ONNX only (llama.cpp's nemotron_h_moe cannot hold both)
    "nemotron3_mixed": Spec("nemotron_h", "gpt-2", {
        **MOE_BASE, "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
        "layers_block_type": ["linear_attention", "mlp", "moe", "full_attention"],
    }),
    # the real Nemotron 3 Nano layout: 52 layers, 128 experts, top-6, bf16 weights with float32 routers
    "nemotron3_nano": Spec("nemotron_h", "gpt-2", NANO3_RELEASE_CONFIG, release_config=True, dtype="bfloat16",
                           chatml=True),
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
    # Qwen3 with ChatML turns and Qwen3's tool calls (the Hermes format): the server's tool tests
    "qwen3_tools": Spec("qwen3", "qwen2", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 2048, "tie_word_embeddings": True,
        "initializer_range": 0.05, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    }, chatml=True, template=HERMES_TOOLS),
    "qwen2": Spec("qwen2", "qwen2", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "initializer_range": 0.05,
    }),
}


# Nemotron 3's chat conventions, in a template of our own: ChatML turns; `enable_thinking` (default on) opens
# the answer with "<think>\n", off writes an empty "<think></think>"; `truncate_history_thinking` (default
# on) empties the thoughts of the assistant turns before the last user message
NEMOTRON3_TEMPLATE = """\
{%- set thinking = enable_thinking if enable_thinking is defined else true -%}
{%- set truncate = truncate_history_thinking if truncate_history_thinking is defined else true -%}
{%- set ns = namespace(last_user=-1) -%}
{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}
{%- for m in messages -%}
{%- if m['role'] == 'assistant' -%}
{%- set parts = m['content'].split('</think>') -%}
{%- set thought = parts[0].split('<think>')[-1] | trim if parts | length > 1 else '' -%}
{%- if truncate and loop.index0 < ns.last_user -%}{%- set thought = '' -%}{%- endif -%}
<|im_start|>assistant
<think>{{ thought }}</think>{{ parts[-1] | trim }}<|im_end|>
{% else -%}
<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{{ '<think>\n' if thinking else '<think></think>' }}
{%- endif -%}
"""
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")


def build_tokenizer(style: str, folder: Path, *, chatml: bool = False, template: str | None = None) -> Any:
    """A 512-token tokenizer of `style` (ChatML's two special tokens included when `chatml`, and `template`
    instead of NEMOTRON3_TEMPLATE)."""
    tok = train_tokenizer(512 - len(CHATML_TOKENS) * chatml, **TOKENIZER_STYLES[style])
    if chatml:
        from tokenizers import AddedToken

        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATML_TOKENS])
    save_tokenizer(tok, folder)
    if chatml:
        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text()) | {"eos_token": "<|im_end|>",
                                                 "chat_template": template or NEMOTRON3_TEMPLATE}
        path.write_text(json.dumps(config, indent=2))
    return tok


def build_checkpoint(name: str, folder: Path) -> Path:
    """Write checkpoint `name` of the ZOO to `folder` with transformers' save_pretrained."""
    import torch
    import transformers

    spec = ZOO[name]
    tok = build_tokenizer(spec.tokenizer, folder, chatml=spec.chatml, template=spec.template)
    config_class = {"nemotron_h": transformers.NemotronHConfig, "llama": transformers.LlamaConfig,
                    "mistral": transformers.MistralConfig, "qwen3": transformers.Qwen3Config,
                    "qwen2": transformers.Qwen2Config}[spec.kind]
    ids = {"vocab_size": tok.get_vocab_size(), "bos_token_id": tok.token_to_id("<s>"),
           "eos_token_id": tok.token_to_id("<|im_end|>" if spec.chatml else "<|end|>"), "pad_token_id": 0}
    config = config_class(**ids, **spec.config)
    torch.manual_seed(sum(map(ord, name)))
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, spec.dtype))
    _spread_routers(model)
    model.save_pretrained(folder)
    if spec.legacy_nemotron_config:
        _rewrite_as_legacy_nemotron(folder / "config.json")
    if spec.release_config:
        (folder / "config.json").write_text(json.dumps(spec.config | ids, indent=2))
    if spec.mtp_head:
        _add_mtp_shard(folder, config)
    return folder


def checkpoint_in(workdir: Path, name: str) -> Path:
    """Checkpoint `name` of the ZOO in `workdir / name`, built there unless it already is (benchmarks)."""
    folder = workdir / name
    return folder if (folder / "config.json").is_file() else build_checkpoint(name, folder)


def _spread_routers(model: Any) -> None:
    """Router weights large enough, and selection biases non-zero, that tokens go to different experts (an
    initialised router is all zeros: every token would take the same experts)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "NemotronHTopkRouter":
                module.weight.normal_(0.0, 0.1)
                module.e_score_correction_bias.normal_(0.0, 0.05)


def _add_mtp_shard(folder: Path, config: Any) -> None:
    """Move model.safetensors to the first of two shards and put a random MTP head (the layout of Nemotron 3
    Super's `mtp.layers.0` / `mtp.layers.1`) in the second, with the index that lists both."""
    from safetensors.numpy import save_file

    from localai.demo_model import random_moe_weights

    rng = np.random.default_rng(7)
    h = config.hidden_size
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim

    def normal(*shape: int, std: float = 0.05) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + normal(h, std=0.1)).astype(np.float32)

    head = {"mtp.layers.0.enorm.weight": norm(), "mtp.layers.0.hnorm.weight": norm(),
            "mtp.layers.0.eh_proj.weight": normal(h, 2 * h), "mtp.layers.0.norm.weight": norm(),
            "mtp.layers.0.mixer.q_proj.weight": normal(q, h), "mtp.layers.0.mixer.k_proj.weight": normal(kv, h),
            "mtp.layers.0.mixer.v_proj.weight": normal(kv, h), "mtp.layers.0.mixer.o_proj.weight": normal(h, q),
            "mtp.layers.1.norm.weight": norm(), "mtp.layers.1.final_layernorm.weight": norm()}
    head |= random_moe_weights(config.to_dict(), "mtp.layers.1.mixer", normal, rng)
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    (folder / "model.safetensors").rename(folder / first)
    save_file(head, str(folder / second))
    from safetensors import safe_open

    with safe_open(str(folder / first), "np") as f:
        weight_map = dict.fromkeys(f.keys(), first)
    weight_map |= dict.fromkeys(head, second)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _rewrite_as_legacy_nemotron(path: Path) -> None:
    config = json.loads(path.read_text())
    kinds = {"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}
    pattern = "".join(kinds[k] for k in config.pop("layers_block_type"))
    if "E" in pattern:  # releases spell the MTP layout as a pattern too
        config["mtp_hybrid_override_pattern"] = "".join(kinds[k] for k in config.pop("mtp_layers_block_type"))
    else:  # dense releases carry no MoE keys
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


def routing_margins(model: Any, tokens: list[int]) -> np.ndarray:
    """Per token, the smallest gap over all MoE layers between the last expert (or expert group) a router
    chose and the best one it did not: where it is small, rounding can flip the choice (float16 at gaps near
    1e-3, float32 alone near 1e-7)."""
    import torch

    gaps: list[np.ndarray] = []

    def gap(scores: Any, k: int) -> Any:
        ordered = scores.sort(dim=-1, descending=True).values
        return ordered[:, k - 1] - ordered[:, k] if k < scores.shape[-1] else torch.full_like(ordered[:, 0], np.inf)

    def record(router: Any, inputs: tuple[Any, ...], _output: Any) -> None:
        h = inputs[0].reshape(-1, router.hidden_dim).float()
        choice = torch.sigmoid(h @ router.weight.float().T) + router.e_score_correction_bias
        groups, per_group = router.num_group, choice.shape[-1] // router.num_group
        group_scores = choice.view(-1, groups, per_group).topk(2, dim=-1).values.sum(-1)
        kept = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(router.topk_group, dim=-1).indices, 1)
        masked = choice.masked_fill(~kept.bool().repeat_interleave(per_group, 1), -np.inf)
        gaps.append(torch.minimum(gap(masked, router.top_k), gap(group_scores, router.topk_group)).numpy())

    hooks = [m.register_forward_hook(record) for m in model.modules() if type(m).__name__ == "NemotronHTopkRouter"]
    try:
        reference_logits(model, tokens)
    finally:
        for hook in hooks:
            hook.remove()
    return np.min(gaps, axis=0)


def decisive_tokens(model: Any, n: int, vocab: int, seed: int, gap: float = 1e-6) -> list[int]:
    """`random_tokens(n, vocab, seed)`; for a MoE model, the first of the seeds seed, seed + 1000, ... whose
    routing (in transformers float32) has no gap below `gap` anywhere. A near tie flips on float32 rounding
    alone, and then the converted model computes another, equally valid, continuation."""
    if not any(type(m).__name__ == "NemotronHTopkRouter" for m in model.modules()):
        return random_tokens(n, vocab, seed)
    for attempt in range(50):
        tokens = random_tokens(n, vocab, seed + 1000 * attempt)
        if routing_margins(model, tokens).min() >= gap:
            return tokens
    raise AssertionError(f"no sequence of {n} tokens without a routing gap below {gap}")


REMOVE = object()  # rewrite_gguf: leave this key out


def rewrite_gguf(source: Path, target: Path, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    """A copy of the GGUF `source` with kvs changed (REMOVE: left out; a new key: added as a string, uint32 or
    float32) and the tensors in `drop` left out."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, reader.fields["general.architecture"].contents())
    for name, entry in reader.fields.items():
        value = changes.get(name, entry.contents())
        if name == "general.architecture" or name.startswith("GGUF.") or value is REMOVE:
            continue
        sub_type = entry.types[-1] if entry.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, entry.types[0], sub_type=sub_type)
    for name, value in changes.items():
        if name not in reader.fields:
            kind = {str: gguf.GGUFValueType.STRING, int: gguf.GGUFValueType.UINT32}.get(type(value))
            writer.add_key_value(name, value, kind or gguf.GGUFValueType.FLOAT32)
    tensors = [t for t in reader.tensors if t.name not in drop]
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return target
