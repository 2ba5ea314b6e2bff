"""TensorRT engines: built here on the CPU by TensorRT for RTX; running them needs an NVIDIA GPU."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from converters import to_tensorrt
from localai.errors import ConversionError
from tests import zoo

pytest.importorskip("tensorrt_rtx", reason="the dev extra installs tensorrt-rtx")

MAX_CONTEXT, MAX_PREFILL = zoo.ENGINE_MAX_CONTEXT, zoo.ENGINE_MAX_PREFILL


@pytest.mark.parametrize("quant", ["fp16", "int4"])
@pytest.mark.parametrize("name", ["nemotron_h", "nemotron_h_legacy", "llama", "qwen3", "nemotron3_latent"])
def test_engines_build_on_the_cpu_and_the_manifest_describes_them(name, quant, engine_package, cli):
    root = engine_package(name, quant)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["artifacts"][0]["format"] == "tensorrt"
    assert cli("verify", str(root)).code == 0  # the engine and tokenizer files match their hashes
    engine = manifest["graph"]["tensorrt"]
    assert engine["library"] == "tensorrt_rtx"
    assert engine["compute_capabilities"] == ["12.0" if quant == "nvfp4" else "8.9"]
    assert engine["precision"] == quant and (engine["max_context"], engine["max_prefill"]) == (MAX_CONTEXT,
                                                                                              MAX_PREFILL)
    # the network TensorRT compiled has exactly the I/O of the portable ONNX graph, in the same types
    onnx_io = {s["name"]: s for s in manifest["graph"]["inputs"] + manifest["graph"]["outputs"]}
    assert {t["name"] for t in engine["io"]} == set(onnx_io)
    for tensor in engine["io"]:
        assert tensor["dtype"] == onnx_io[tensor["name"]]["dtype"]
        assert len(tensor["shape"]) == len(onnx_io[tensor["name"]]["shape"])
    prefill, decode = engine["profiles"]
    assert prefill["shapes"]["input_ids"] == [[1, 1], [1, MAX_PREFILL], [1, MAX_PREFILL]]
    most = {"fp16": 2, "int4": 1}[quant]  # see to_tensorrt.DECODE_MAX_TOKENS
    assert decode["shapes"]["input_ids"] == [[1, 1], [1, 1], [1, most]]
    assert decode["shapes"]["logits_to_keep"] == [[1], [1], [most]]
    states = [n for n in prefill["shapes"] if n.startswith("past.")]
    assert states and all(prefill["shapes"][n][0][0] == 1 for n in states)
    for n in (n for n in states if n.endswith((".key", ".value"))):
        assert [shape[2] for shape in decode["shapes"][n]] == [0, MAX_CONTEXT // 2, MAX_CONTEXT - 1]


@pytest.mark.parametrize(("args", "message"), [
    (("--quant", "fp8", "--compute-capability", "86,89"), "fp8 needs compute capability 8.9 or newer; 8.6 cannot"),
    (("--quant", "nvfp4", "--compute-capability", "8.9"), "nvfp4 needs compute capability 12.0"),
    (("--quant", "bf16", "--compute-capability", "75"), "bf16 needs compute capability 8.0"),
    (("--quant", "q4_k_m",), "unknown TensorRT precision"),
    (("--compute-capability", "70"), "unknown compute capability 7.0"),
    (("--max-context", "128", "--max-prefill", "256"), "--max-prefill <= --max-context"),
    (("--flavor", "ort",), "portable ONNX flavour only"),
])
def test_refusals_are_one_line_and_leave_nothing(args, message, cli, small_checkpoint, isolated_store):
    result = cli("convert", str(small_checkpoint), "--to", "tensorrt", *args)
    assert result.code == 1 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (isolated_store / "models").exists() or not any((isolated_store / "models").iterdir())


def test_engine_options_belong_to_tensorrt(cli, small_checkpoint):
    result = cli("convert", str(small_checkpoint), "--max-context", "512")
    assert result.code == 1 and "apply to --to tensorrt only" in result.err


def test_without_tensorrt_installed(cli, small_checkpoint, monkeypatch):
    monkeypatch.setattr("localai.tensorrt_lib.MODULES", ("no_such_tensorrt",))
    result = cli("convert", str(small_checkpoint), "--to", "tensorrt")
    assert result.code == 1 and "TensorRT is not installed" in result.err


def _build_refused(package, tmp_path, quant: str, error: str) -> None:
    """Building `package`'s graph raises one ConversionError matching `error` and leaves no engine file."""
    inputs = json.loads((package / "manifest.json").read_text())["graph"]["inputs"]
    settings = to_tensorrt.EngineSettings(quant, (89,), MAX_CONTEXT, MAX_PREFILL)
    with pytest.raises(ConversionError, match=error):
        to_tensorrt.build_engine(package / "model.onnx", tmp_path / "model.engine", settings, inputs)
    assert not (tmp_path / "model.engine").exists()


def test_a_graph_the_parser_rejects_is_a_build_time_error(onnx_package, tmp_path):
    """The `ort` flavour's MatMulNBits is an ONNX Runtime operator that TensorRT's parser does not know."""
    _build_refused(onnx_package("llama", "int4", "ort"), tmp_path, "int4",
                   r"TensorRT cannot parse the ONNX graph: .*MatMulNBits")


def test_the_ort_flavours_fused_operators_are_a_build_time_error(onnx_package, tmp_path):
    """ONNX Runtime's contrib operators (here the Mamba2 causal conv) are unknown to TensorRT's parser: the
    engine is built from the portable flavour, and an ort graph handed to the builder is one clear error."""
    _build_refused(onnx_package("nemotron_h", "fp32", "ort"), tmp_path, "fp16",
                   r"TensorRT cannot parse the ONNX graph: .*CausalConvWithState")


def test_a_builder_that_dies_is_one_clear_error(onnx_package, tmp_path, monkeypatch):
    """TensorRT for RTX 1.7 segfaulted building some graphs (the ort flavour's former Mamba2 `If`). No graph
    localai writes does that now, so the build child's program is replaced by one that dies the same way:
    what is checked is that the conversion gets one clear error, not a dead process."""
    monkeypatch.setattr(to_tensorrt, "CHILD", "import os, signal, sys\nprint('building', file=sys.stderr)\n"
                                              "os.kill(os.getpid(), signal.SIGSEGV)\n")
    _build_refused(onnx_package("nemotron_h", "fp32", "portable"), tmp_path, "fp16",
                   r"TensorRT crashed building the engine \(signal 11: building\)")


def test_an_engine_holds_each_float16_weight_once(tmp_path):
    """Engine size regressions measured with TensorRT for RTX 1.7: a float16 weight cast to float32 in the graph
    becomes a float32 constant (2x), and a profile with a static token dimension gets its own copy of every
    weight (2x). One float16 MatMul with a 16 MB weight, under localai's two profiles."""
    k, n = 1024, 8192
    weight = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float16), "w")
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("MatMul", ["x16", "w"], ["y16"]),
             helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", n])
    graph = helper.make_graph(nodes, "one-matmul", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), tmp_path / "m.onnx")
    settings = to_tensorrt.EngineSettings("fp16", (89,), MAX_CONTEXT, MAX_PREFILL)
    to_tensorrt.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", settings,
                             [{"name": "x", "shape": ["batch", "sequence", k]}])
    assert (tmp_path / "m.engine").stat().st_size < 1.25 * k * n * 2


def test_the_portable_fp16_graph_casts_no_weight(onnx_package):
    graph = onnx.load(str(onnx_package("nemotron_h", "fp16", "portable") / "model.onnx"), load_external_data=False)
    weights = {w.name for w in graph.graph.initializer}
    casts = [node for node in graph.graph.node if node.op_type == "Cast"]
    assert casts and not any(node.input[0] in weights for node in casts)
