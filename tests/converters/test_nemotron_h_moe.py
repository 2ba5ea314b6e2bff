"""Nemotron 3 (MoE hybrids): configs, refusals, the GGUF plan and the MTP head."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

import localai
from converters import convert, nemotron_h
from converters.checkpoint import Checkpoint
from localai.errors import ConversionError
from tests import zoo


def _config(name: str, checkpoint) -> dict:
    return json.loads((checkpoint(name) / "config.json").read_text())


def test_both_config_layouts_parse(checkpoint):
    listed = nemotron_h.ModelArgs.from_config(_config("nemotron3_latent", checkpoint))
    assert listed.layers == "ME*EME" and listed.gguf_arch == gguf.MODEL_ARCH.NEMOTRON_H_MOE
    assert listed.moe is not None and listed.moe.latent_size == 128 and listed.moe.limits_groups
    legacy = _config("nemotron3_mtp", checkpoint)
    assert "hybrid_override_pattern" in legacy and "layers_block_type" not in legacy
    args = nemotron_h.ModelArgs.from_config(legacy)
    assert args.layers == "M*EME" and args.mtp_layers == 1 and args.with_mtp
    assert args.moe is not None and (args.moe.experts, args.moe.top_k, args.moe.scaling) == (8, 2, 2.5)


def test_the_release_fixture_has_nemotron3_nanos_key_set_and_layers(checkpoint):
    """The fixture mirrors NVIDIA's published config.json (kept in the steering repo's shared/reference, not
    here), sizes scaled down."""
    config = _config("nemotron3_nano", checkpoint)
    real = Path(__file__).resolve().parents[3] / "shared" / "reference" / "nemotron3-nano-30b-a3b.config.json"
    if real.is_file():
        published = json.loads(real.read_text())
        assert set(config) == set(published)
        assert config["hybrid_override_pattern"] == published["hybrid_override_pattern"]
    args = nemotron_h.ModelArgs.from_config(config)
    assert len(args.layers) == 52 and args.layers.count("E") == 23
    assert args.moe is not None and (args.moe.experts, args.moe.top_k) == (128, 6)
    with Checkpoint(checkpoint("nemotron3_nano")) as ckpt:  # bf16 weights, float32 routers
        assert ckpt.tensors["backbone.layers.1.mixer.experts.0.up_proj.weight"].dtype == "BF16"
        assert ckpt.tensors["backbone.layers.1.mixer.gate.weight"].dtype == "F32"


MOE_CONFIG = {"model_type": "nemotron_h", "vocab_size": 512, "hidden_size": 64, "hybrid_override_pattern": "ME*E",
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "mamba_num_heads": 2,
              "mamba_head_dim": 32, "ssm_state_size": 16, "n_groups": 1, "n_routed_experts": 8,
              "num_experts_per_tok": 2, "moe_intermediate_size": 32, "moe_shared_expert_intermediate_size": 64,
              "n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.5}


@pytest.mark.parametrize(("change", "message"), [
    ({"n_group": 3}, "n_routed_experts=8 is not divisible by n_group=3"),
    ({"n_group": 2, "topk_group": 3}, "topk_group=3 is more than n_group=2"),
    ({"n_group": 4, "topk_group": 1, "num_experts_per_tok": 3}, "num_experts_per_tok=3 is more than the 2 experts"),
    ({"num_experts_per_tok": 9}, "num_experts_per_tok=9 is more than the 8 experts"),
    ({"n_group": 8, "topk_group": 4}, "holds 1 expert"),
    ({"n_routed_experts": 2048}, "more than the 1024 experts localai converts"),
    ({"routed_scaling_factor": -1.0}, "routed_scaling_factor=-1.0 must be a positive number"),
    ({"mlp_bias": True}, "mlp_bias with MoE layers"),
    ({"moe_latent_size": 0}, "'moe_latent_size' must be positive"),
    ({"norm_topk_prob": "false"}, "'norm_topk_prob' has an invalid value 'false'"),
    ({"hybrid_override_pattern": "ME" * 300}, "declares 600 layers; localai converts at most 512"),
    ({"moe_intermediate_size": None}, "lacks 'moe_intermediate_size'"),
])
def test_moe_configs_this_converter_cannot_reproduce_are_refused(change, message):
    with pytest.raises(ConversionError, match=message):
        nemotron_h.ModelArgs.from_config(MOE_CONFIG | change)


def test_topk_group_defaults_to_one_group_as_in_transformers():
    moe = nemotron_h.ModelArgs.from_config({k: v for k, v in MOE_CONFIG.items() if k != "topk_group"}
                                           | {"n_group": 4}).moe
    assert moe is not None and (moe.n_group, moe.topk_group, moe.limits_groups) == (4, 1, True)


@pytest.mark.parametrize(("change", "message"), [
    ({"num_nextn_predict_layers": 2}, r"declares 2 MTP layers; llama\.cpp reads one \(convert with --no-mtp"),
    ({"num_nextn_predict_layers": 1, "mtp_hybrid_override_pattern": "*-"}, r"MTP layer layout '\*-' is not"),
    ({"num_nextn_predict_layers": 1}, "declares an MTP head but the checkpoint has no mtp.* tensors .* --no-mtp"),
])
def test_an_mtp_head_llama_cpp_cannot_read_is_refused_unless_left_out(change, message):
    args = nemotron_h.ModelArgs.from_config(MOE_CONFIG | change)
    with pytest.raises(ConversionError, match=message):
        nemotron_h.tensor_plan(args, {"backbone.embeddings.weight"})
    left_out = dataclasses.replace(args, keep_mtp=False)
    assert not any(".nextn." in t.name for t in nemotron_h.tensor_plan(left_out, {"backbone.embeddings.weight"}))


def test_plan_stacks_each_layers_experts_and_keeps_the_router_in_float32():
    args = nemotron_h.ModelArgs.from_config(MOE_CONFIG)
    plan = {t.name: t for t in nemotron_h.tensor_plan(args, set())}
    up, down = plan["blk.1.ffn_up_exps.weight"], plan["blk.3.ffn_down_exps.weight"]
    assert up.shape == (8, 32, 64) and down.shape == (8, 64, 32)
    assert up.parts[5] == "backbone.layers.1.mixer.experts.5.up_proj.weight"
    assert plan["blk.1.ffn_gate_inp.weight"].keep_f32
    assert plan["blk.1.exp_probs_b.bias"].sources == {"backbone.layers.1.mixer.gate.e_score_correction_bias": (8,)}
    assert {"blk.1.ffn_up_shexp.weight", "blk.1.ffn_down_shexp.weight"} <= plan.keys()
    assert not any(".nextn." in name for name in plan)


def _damaged(checkpoint, name: str, tmp_path: Path, edit) -> Path:
    folder = Path(shutil.copytree(checkpoint(name), tmp_path / name))
    edit(folder)
    return folder


def _drop_tensor(folder: Path, tensor: str) -> None:
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    del weights[tensor]
    save_file(weights, str(folder / "model.safetensors"))


def _reshape_tensor(folder: Path, tensor: str) -> None:
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    weights[tensor] = weights[tensor][:-1]
    save_file(weights, str(folder / "model.safetensors"))


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: _drop_tensor(f, "backbone.layers.4.mixer.experts.7.down_proj.weight"),
     "checkpoint lacks tensor 'backbone.layers.4.mixer.experts.7.down_proj.weight'"),
    (lambda f: _reshape_tensor(f, "backbone.layers.1.mixer.experts.3.up_proj.weight"),
     r"tensor 'backbone.layers.1.mixer.experts.3.up_proj.weight' has shape \[255, 256\]"),
    (lambda f: _edit_config(f, n_routed_experts=6),
     r"tensor 'backbone.layers.1.mixer.gate.weight' has shape \[8, 256\] but config.json implies \[6, 256\]"),
    (lambda f: _edit_config(f, num_experts_per_tok=9), "num_experts_per_tok=9 is more than the 8 experts"),
])
def test_broken_moe_checkpoints_are_refused_and_nothing_is_written(edit, message, checkpoint, tmp_path):
    folder = _damaged(checkpoint, "nemotron3_moe", tmp_path, edit)
    with pytest.raises(ConversionError, match=message):
        convert(str(folder), quant="f32", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".partial-") for p in tmp_path.iterdir())


def test_a_dense_mlp_beside_moe_layers_is_onnx_only(checkpoint, onnx_package, tmp_path):
    """llama.cpp's nemotron_h_moe reads every feed-forward layer as MoE; the ONNX graph has both."""
    with pytest.raises(ConversionError, match="a dense MLP layer \\('-'\\) beside MoE layers \\('E'\\) cannot be "
                                              "written as GGUF"):
        convert(str(checkpoint("nemotron3_mixed")), quant="f16", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    model = localai.load(onnx_package("nemotron3_mixed", "fp32"), n_ctx=128)
    tokens = zoo.random_tokens(24, 500, seed=3)
    expected = zoo.reference_logits(zoo.reference_model(checkpoint("nemotron3_mixed")), tokens)
    assert np.abs(model.backend.logits(tokens) - expected).max() <= 1e-4
    model.close()


def test_more_than_one_mtp_layer_is_refused_unless_left_out(checkpoint, tmp_path):
    folder = _damaged(checkpoint, "nemotron3_mtp", tmp_path, lambda f: _edit_config(f, num_nextn_predict_layers=2))
    with pytest.raises(ConversionError, match=r"declares 2 MTP layers; llama\.cpp reads one"):
        convert(str(folder), quant="f32", output=tmp_path / "out")
    package = convert(str(folder), quant="f32", output=tmp_path / "no-mtp", mtp=False)
    assert "mtp_layers" not in package.manifest.parameters


def _gguf_tensors(package: Path) -> dict[str, gguf.ReaderTensor]:
    artifact = next(package.glob("*.gguf"))
    return {t.name: t for t in gguf.GGUFReader(artifact).tensors}


def test_mtp_head_is_llama_cpps_extra_block_and_leaves_the_main_logits_unchanged(package, checkpoint, tmp_path):
    with_head = package("nemotron3_mtp", "f32")
    tensors = _gguf_tensors(with_head)
    n = 5  # the trunk's layers; the head is block 5
    head = {"nextn.eh_proj", "nextn.enorm", "nextn.shared_head_norm", "attn_q", "post_attention_norm", "ffn_up_exps"}
    assert {f"blk.{n}.{name}.weight" for name in head} <= tensors.keys()
    reader = gguf.GGUFReader(next(with_head.glob("*.gguf")))
    assert reader.fields["nemotron_h_moe.nextn_predict_layers"].contents() == 1
    assert reader.fields["nemotron_h_moe.block_count"].contents() == n + 1
    assert _llama_cpp_mtp_layers(next(with_head.glob("*.gguf"))) == (n, 1)  # llama.cpp loads the head itself

    without = convert(str(checkpoint("nemotron3_mtp")), quant="f32", output=tmp_path / "no-mtp", mtp=False).root
    assert not any(".nextn." in name or name.startswith(f"blk.{n}.") for name in _gguf_tensors(without))
    tokens = zoo.random_tokens(40, 500, seed=4)
    logits = []
    for folder in (with_head, without):
        model = localai.load(folder, n_ctx=128)
        logits.append(model.backend.logits(tokens))
        model.close()
    np.testing.assert_array_equal(logits[0], logits[1])


def _llama_cpp_mtp_layers(path: Path) -> tuple[int, int]:
    """(trunk layers, MTP layers) of a GGUF loaded by llama.cpp with its MTP tensors (llama-cpp-python's
    `Llama` skips them: they are read, shape-checked and loaded only with `load_mtp`)."""
    import llama_cpp

    from localai.backends import llama_log

    params = llama_cpp.llama_model_default_params()
    params.load_mtp = True
    with llama_log.capture() as log:
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model, log.last_error()
    try:
        return llama_cpp.llama_model_n_layer(model), llama_cpp.llama_model_n_layer_nextn(model)
    finally:
        llama_cpp.llama_model_free(model)


def test_onnx_leaves_the_mtp_head_out_with_a_notice(cli, checkpoint, tmp_path):
    result = cli("convert", str(checkpoint("nemotron3_mtp")), "--to", "onnx", "-o", str(tmp_path / "onnx"))
    assert result.code == 0, result.err
    assert result.err.strip().splitlines() == ["note: the checkpoint's MTP head is left out: onnx packages run the "
                                               "main model only"]
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert "mtp_layers" not in manifest["parameters"]


def test_info_shows_experts_and_active_parameters(cli, package):
    folder = package("nemotron3_mtp", "f32")
    manifest = json.loads((folder / "manifest.json").read_text())
    counts = manifest["parameters"]
    # by hand: 8 experts of (256x256 up + 256x256 down) in each of the 3 MoE layers (2 trunk + MTP head)
    expert = 2 * 256 * 256
    assert counts["total"] - counts["active"] == 3 * (8 - 2) * expert
    assert counts["experts"] == {"routed": 8, "per_token": 2, "shared": 1} and counts["mtp_layers"] == 1
    result = cli("info", str(folder))
    assert result.code == 0
    line = next(line for line in result.out.splitlines() if line.startswith("parameters"))
    assert "8 routed experts (2 per token) + 1 shared; MTP head" in line
    assert f"{counts['total'] / 1e6:.1f}M total, {counts['active'] / 1e6:.1f}M active per token" in line


def test_hub_configs_with_a_bare_infinity_parse(tmp_path):
    """Hub configs write `"time_step_limit": [0.0, Infinity]` (transformers 5.x saves {"__float__": "Infinity"});
    transformers takes the limits from time_step_min, and so does the converter."""
    from converters.checkpoint import read_json

    text = json.dumps(MOE_CONFIG | {"time_step_min": 0.002})[:-1] + ', "time_step_limit": [0.0, Infinity]}'
    (tmp_path / "config.json").write_text(text)
    args = nemotron_h.ModelArgs.from_config(read_json(tmp_path / "config.json", "config.json"))
    assert args.time_step_min == 0.002 and args.moe is not None
