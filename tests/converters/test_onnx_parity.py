"""ONNX packages run by ONNX Runtime against transformers in float32 (the reference implementation).

The Nemotron-H checkpoints use a Mamba2 chunk size of 16, so the lengths below fall on both sides of
chunk boundaries: the chunked scan must be exact for any length, with and without a past state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import localai
from converters.onnx_graph import Graph
from converters.onnx_quant import WeightFormat
from localai.errors import ConversionError
from localai.package import Package
from tests import zoo

MODELS = ["nemotron_h", "nemotron_h_legacy", "llama", "mistral", "qwen3", "qwen2", "nemotron3_moe", "nemotron3_latent",
          "nemotron3_mtp", "nemotron3_mixed", "nemotron3_nano"]
CHUNK = 16
LENGTHS = [1, 7, CHUNK - 1, CHUNK + 1, 3 * CHUNK]
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
# the portable flavour (TensorRT's input) has no `If`: Mamba2 takes the chunked scan for one token too; its
# fp16 computes matrix products in float16
VARIANTS = [("fp32", "ort"), ("fp16", "ort"), ("fp32", "portable"), ("fp16", "portable")]
# MoE models in fp16 flip near-tied expert choices: test_moe_fp16_matches_transformers_where_routing_is_clear;
# the 52-layer, 128-expert layout runs in the ort flavour only (the other MoE fixtures cover portable, whose
# every-expert graph costs it ~20 s a load)
PARAMS = [(name, quant, flavor) for name in MODELS for quant, flavor in VARIANTS
          if (quant == "fp32" or name not in [*zoo.MOE_MODELS, "nemotron3_mixed"])
          and (name, flavor) != ("nemotron3_nano", "portable")]


@pytest.mark.parametrize(("name", "quant", "flavor"), PARAMS)
def test_full_sequence_logits_match_transformers(name, quant, flavor, onnx_package, checkpoint, reference):
    model = localai.load(onnx_package(name, quant, flavor), n_ctx=256)
    worst = 0.0
    for n in LENGTHS:
        tokens = zoo.decisive_tokens(reference(checkpoint(name)), n, model.manifest.tokenizer["size"], seed=n)
        got = model.backend.logits(tokens)
        expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    model.close()
    assert worst <= TOLERANCE[quant]


@pytest.mark.parametrize(("name", "quant", "flavor"), PARAMS)
def test_incremental_logits_match_transformers(name, quant, flavor, onnx_package, checkpoint, reference):
    """Prefill, then pieces of every awkward length on top of the state, then one token at a time."""
    model = localai.load(onnx_package(name, quant, flavor), n_ctx=256)
    pieces = [7, CHUNK + 1, CHUNK - 1, 3 * CHUNK, 1, 1, 1]
    tokens = zoo.decisive_tokens(reference(checkpoint(name)), sum(pieces), model.manifest.tokenizer["size"], seed=5)
    expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
    backend, start, worst = model.backend, 0, 0.0
    backend.reset()
    for size in pieces:
        got = backend.eval(tokens[start : start + size])
        start += size
        worst = max(worst, float(np.abs(got - expected[start - 1]).max()))
    assert backend.n_past == len(tokens)
    model.close()
    assert worst <= TOLERANCE[quant]


NEAR_TIE = 1e-3  # a router gap float16 weights can close


@pytest.mark.parametrize("flavor", ["ort", "portable"])
@pytest.mark.parametrize("name", ["nemotron3_moe", "nemotron3_latent", "nemotron3_mtp", "nemotron3_mixed"])
def test_moe_fp16_matches_transformers_where_routing_is_clear(name, flavor, onnx_package, checkpoint, reference):
    """float16 weights move router scores enough to flip a choice whose gap is below NEAR_TIE; positions
    without such a gap in any layer must match within the fp16 tolerance."""
    model = localai.load(onnx_package(name, "fp16", flavor), n_ctx=256)
    tokens = zoo.random_tokens(80, model.manifest.tokenizer["size"], seed=1)
    expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
    got = model.backend.logits(tokens)
    model.close()
    clear = zoo.routing_margins(reference(checkpoint(name)), tokens) >= NEAR_TIE
    assert clear.mean() >= 0.9
    assert np.abs(got - expected)[clear].max() <= TOLERANCE["fp16"]


def _rounded_logits(package: Path, tokens: list[int]) -> np.ndarray:
    """Logits of a package's graph run by onnx's reference evaluator (numpy): it computes in the graph's
    types, rounding to float16, bfloat16 or float8 where the graph says so."""
    graph = onnx.load(str(package / "model.onnx"))
    specs = Package.open(package).manifest.graph["inputs"]
    feeds = {"input_ids": np.asarray([tokens], np.int64), "logits_to_keep": np.asarray(len(tokens), np.int64)}
    for spec in (s for s in specs if s["name"].startswith("past.")):
        feeds[spec["name"]] = np.zeros([d if isinstance(d, int) else int(d == "batch") for d in spec["shape"]],
                                       np.float32)
    return ReferenceEvaluator(graph).run(["logits"], feeds)[0][0]


@pytest.mark.parametrize("name", ["nemotron_h", "llama", "qwen3"])
def test_portable_fp16_computes_in_float16_within_tolerance(name, onnx_package, checkpoint, reference):
    """The portable fp16 graph's matrix products take float16 activations. ONNX Runtime's CPU provider drops
    a Cast to float16 and back (so the runs above compute in float32); the reference evaluator rounds as a
    float16 engine does, and must stay within the fp16 tolerance of transformers."""
    package = onnx_package(name, "fp16", "portable")
    tokens = zoo.random_tokens(48, 500, seed=48)
    rounded = _rounded_logits(package, tokens)
    model = localai.load(package, n_ctx=256)
    assert np.abs(rounded - model.backend.logits(tokens)).max() > 0  # float16 really rounds here
    model.close()
    assert np.abs(rounded - zoo.reference_logits(reference(checkpoint(name)), tokens)).max() <= TOLERANCE["fp16"]


# the GPU-only portable types (TensorRT bf16 and fp8 engines are built from them): regression bounds with
# head-room over what was measured (docs/onnx-conversion.md)
GPU_TYPE_KL_BOUND = {"bf16": 1e-4, "fp8": 5e-3, "nvfp4": 5e-2}


@pytest.mark.parametrize("quant", ["bf16", "fp8", "nvfp4"])
@pytest.mark.parametrize("name", ["nemotron_h", "llama", "qwen3"])
def test_portable_gpu_types_stay_within_their_kl_bounds(name, quant, onnx_package, checkpoint, reference):
    tokens = zoo.random_tokens(48, 500, seed=48)
    expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
    kl = zoo.mean_kl(expected, _rounded_logits(onnx_package(name, quant, "portable"), tokens))
    assert 0 < kl <= GPU_TYPE_KL_BOUND[quant]


def test_gpu_types_are_portable_only(small_checkpoint, cli):
    result = cli("convert", str(small_checkpoint), "--to", "onnx", "--quant", "fp8")
    assert result.code == 1 and "fp8 ONNX graphs exist in the portable flavour only" in result.err


def test_nvfp4_refuses_matrices_its_blocks_do_not_divide(tmp_path):
    with (tmp_path / "data").open("wb") as data:
        weights = WeightFormat("nvfp4", "portable")
        with pytest.raises(ConversionError, match="nvfp4 needs input dimensions divisible by 16; w has 24"):
            weights._nvfp4_matmul(Graph(data, "data"), "x", "w", np.ones((8, 24), np.float32))


@pytest.mark.parametrize("flavor", ["ort", "portable"])
def test_manifest_describes_every_state(flavor, onnx_package):
    manifest = localai.load(onnx_package("nemotron_h", "fp32", flavor)).manifest
    graph = manifest.graph
    inputs = {spec["name"]: spec for spec in graph["inputs"]}
    outputs = {spec["name"] for spec in graph["outputs"]}
    # zoo nemotron_h: M - * M - M; 8 Mamba heads of 32, state 32, 2 groups, kernel 4; 2 KV heads of 64
    conv_dim = 8 * 32 + 2 * 2 * 32
    for layer in (0, 3, 5):
        # ort: the fused conv works channels last, so its state is too
        conv_shape = {"ort": ["batch", 3, conv_dim], "portable": ["batch", conv_dim, 3]}[flavor]
        assert inputs[f"past.{layer}.conv"]["shape"] == conv_shape
        assert inputs[f"past.{layer}.ssm"]["shape"] == ["batch", 8, 32, 32]
        assert {f"present.{layer}.conv", f"present.{layer}.ssm"} <= outputs
        # the fused conv and scan may write their presents into the past's buffer; standard operators may not
        for kind in ("conv", "ssm"):
            assert inputs[f"past.{layer}.{kind}"].get("in_place", False) == (flavor == "ort")
    # ort: one K/V buffer for past and present, as long as the context, and the tokens in it as an input
    length = {"ort": "kv_capacity", "portable": "past_sequence"}[flavor]
    assert inputs["past.2.key"]["shape"] == inputs["past.2.value"]["shape"] == ["batch", 2, length, 64]
    assert ("past_length" in inputs) == (flavor == "ort")
    assert not any(name.startswith(("past.1.", "past.4.")) for name in inputs)  # MLP layers keep no state
    assert inputs["input_ids"]["dtype"] == "int64" and "logits" in outputs
    assert {a.format for a in manifest.artifacts} == {"onnx", "onnx-data", "tokenizer"}


def test_the_ort_flavour_uses_onnx_runtimes_fused_operators(onnx_package):
    """Attention, the causal conv and the SSM scan are one contrib operator each in the ort flavour, and
    none in the portable one (TensorRT builds from it)."""
    def nodes(flavor: str) -> list[onnx.NodeProto]:
        path = onnx_package("nemotron_h", "fp32", flavor) / "model.onnx"
        return list(onnx.load(path, load_external_data=False).graph.node)

    ort, portable = nodes("ort"), nodes("portable")
    ort_ops = [n.op_type for n in ort]
    # zoo nemotron_h: 1 attention and 3 Mamba2 layers; each of its 6 blocks but the first adds the last
    # one's output and normalises in one SkipSimplifiedLayerNormalization
    fused = ("GroupQueryAttention", "CausalConvWithState", "LinearAttention", "SkipSimplifiedLayerNormalization")
    assert [ort_ops.count(op) for op in fused] == [1, 3, 3, 5]
    # no copy of a cache (the head's one Concat builds a shape), no branch per sequence length
    assert [n.name for n in ort if n.op_type == "Concat" and not n.name.startswith("node.head/")] == []
    assert "If" not in ort_ops
    assert not set(fused) & {n.op_type for n in portable}
    assert len(ort) < len(portable)


# Regression bounds measured on these random checkpoints (docs/onnx-conversion.md), with head-room;
# GGUF's q8_0 and q4_k_m on the same checkpoints are the yardstick.
KL_BOUND = {"int8": 1e-3, "int4": 5e-2}


@pytest.mark.parametrize("flavor", ["ort", "portable"])
@pytest.mark.parametrize("name", ["nemotron_h", "llama", "nemotron3_latent"])
def test_quantized_kl_divergence_is_bounded(name, flavor, onnx_package, checkpoint, reference):
    tokens = zoo.random_tokens(80, 500, seed=2)
    expected = zoo.reference_logits(reference(checkpoint(name)), tokens)
    kl = {}
    for quant in ("fp16", "int8", "int4"):
        model = localai.load(onnx_package(name, quant, flavor), n_ctx=256)
        kl[quant] = zoo.mean_kl(expected, model.backend.logits(tokens))
        model.close()
    assert kl["int8"] <= KL_BOUND["int8"]
    assert kl["int4"] <= KL_BOUND["int4"]
    assert kl["fp16"] < kl["int8"] < kl["int4"], kl


@pytest.mark.parametrize("flavor", ["ort", "portable"])
@pytest.mark.parametrize("name", ["nemotron3_moe", "nemotron3_latent", "nemotron3_mtp"])
def test_moe_int4_is_close_to_llama_cpps_q4_k_m(name, flavor, onnx_package, package):
    """Random MoE fixtures quantize badly (4-bit noise flips expert choices; benchmarks.md): the yardstick is
    llama.cpp's q4_k_m of the same checkpoint (localai's GGUF equals llama.cpp's own converter + quantizer
    there, benchmarks/moe_quality.py), each against the fp32 package. Measured x0.82 to x1.20."""
    tokens = zoo.random_tokens(80, 500, seed=2)
    logits = {}
    for quant in ("fp32", "int4"):
        model = localai.load(onnx_package(name, quant, flavor), n_ctx=256)
        logits[quant] = model.backend.logits(tokens)
        model.close()
    model = localai.load(package(name, "q4_k_m"), n_ctx=256)
    q4_k_m = zoo.mean_kl(logits["fp32"], model.backend.logits(tokens))
    model.close()
    assert zoo.mean_kl(logits["fp32"], logits["int4"]) <= 1.5 * q4_k_m


def test_llama3_rope_scaling_on_qwen_is_gguf_only_refused(checkpoint, tmp_path):
    """llama.cpp's qwen graphs read no rope_freqs; the ONNX graph computes any rotary scaling."""
    import json
    import shutil

    from converters import convert
    from localai.errors import ConversionError

    folder = Path(shutil.copytree(checkpoint("qwen3"), tmp_path / "qwen3"))
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                                 "rope_theta": 1000000.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="RoPE scaling 'llama3' is not supported for qwen3 in GGUF"):
        convert(str(folder), output=tmp_path / "gguf")
    assert not (tmp_path / "gguf").exists()
    model = localai.load(convert(str(folder), to="onnx", output=tmp_path / "onnx").root)
    tokens = zoo.random_tokens(40, 400, seed=3)
    got = model.backend.logits(tokens)
    model.close()
    assert np.abs(got - zoo.reference_logits(zoo.reference_model(folder), tokens)).max() <= TOLERANCE["fp32"]
