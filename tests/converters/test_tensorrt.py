"""TensorRT engines: built here on the CPU by TensorRT for RTX; running them needs an NVIDIA GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

import localai
from converters import convert, to_tensorrt
from localai.errors import ConversionError
from tests import zoo

pytest.importorskip("tensorrt_rtx", reason="the dev extra installs tensorrt-rtx")

MAX_CONTEXT, MAX_PREFILL = 256, 64


def _has_nvidia_gpu() -> bool:
    from localai.profiling import nvidia_gpus

    return bool(nvidia_gpus())


GPU = pytest.mark.skipif(not _has_nvidia_gpu(), reason="running a TensorRT engine needs an NVIDIA GPU")


@pytest.fixture(scope="session")
def engine_package(tmp_path_factory, checkpoint):
    """engine_package(name, quant) -> that checkpoint built into a TensorRT engine for compute capability 8.9."""
    built = {}

    def get(name: str, quant: str):
        if (name, quant) not in built:
            out = tmp_path_factory.mktemp(f"trt-{name}-{quant}") / "package"
            built[(name, quant)] = convert(str(checkpoint(name)), to="tensorrt", quant=quant, output=out,
                                           compute_capabilities=[89], max_context=MAX_CONTEXT,
                                           max_prefill=MAX_PREFILL).root
        return built[(name, quant)]

    return get


@pytest.mark.parametrize("quant", ["fp16", "int4"])
@pytest.mark.parametrize("name", ["nemotron_h", "nemotron_h_legacy", "llama", "qwen3"])
def test_engines_build_on_the_cpu_and_the_manifest_describes_them(name, quant, engine_package, cli):
    root = engine_package(name, quant)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["artifacts"][0]["format"] == "tensorrt"
    assert cli("verify", str(root)).code == 0  # the engine and tokenizer files match their hashes
    engine = manifest["graph"]["tensorrt"]
    assert engine["library"] == "tensorrt_rtx" and engine["compute_capabilities"] == ["8.9"]
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
    assert decode["shapes"]["input_ids"] == [[1, 1]] * 3 and decode["shapes"]["logits_to_keep"] == [[1]] * 3
    states = [n for n in prefill["shapes"] if n.startswith("past.")]
    assert states and all(prefill["shapes"][n][0][0] == 1 for n in states)
    for n in (n for n in states if n.endswith((".key", ".value"))):
        assert [shape[2] for shape in decode["shapes"][n]] == [0, MAX_CONTEXT // 2, MAX_CONTEXT - 1]


@pytest.mark.parametrize(("args", "message"), [
    (("--quant", "fp8", "--compute-capability", "86,89"), "fp8 needs compute capability 8.9 or newer; 8.6 cannot"),
    (("--quant", "nvfp4", "--compute-capability", "8.9"), "nvfp4 needs compute capability 12.0"),
    (("--quant", "bf16", "--compute-capability", "75"), "bf16 needs compute capability 8.0"),
    (("--quant", "fp8", "--compute-capability", "120"), "TensorRT fp8 is not available yet"),
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


def test_a_graph_the_parser_rejects_is_a_build_time_error(onnx_package, tmp_path):
    """The `ort` flavour's MatMulNBits is an ONNX Runtime operator that TensorRT's parser does not know."""
    package = onnx_package("llama", "int4", "ort")
    inputs = json.loads((package / "manifest.json").read_text())["graph"]["inputs"]
    settings = to_tensorrt.EngineSettings("int4", (89,), MAX_CONTEXT, MAX_PREFILL)
    with pytest.raises(ConversionError, match=r"TensorRT cannot parse the ONNX graph: .*MatMulNBits"):
        to_tensorrt.build_engine(package / "model.onnx", tmp_path / "model.engine", settings, inputs)
    assert not (tmp_path / "model.engine").exists()


@pytest.mark.parametrize("name", ["nemotron_h", "small"])
def test_a_graph_the_builder_cannot_compile_is_a_build_time_error(name, onnx_package, small_checkpoint, tmp_path):
    """TensorRT for RTX 1.7 cannot compile the `ort` flavour's Mamba2 `If`: on one graph it reports an internal
    error, on another it segfaults. Either way the conversion gets one clear error, not a dead process."""
    if name == "small":
        package = convert(str(small_checkpoint), to="onnx", quant="fp16", output=tmp_path / "small").root
    else:
        package = onnx_package(name, "fp32", "ort")
    inputs = json.loads((package / "manifest.json").read_text())["graph"]["inputs"]
    settings = to_tensorrt.EngineSettings("fp16", (89,), MAX_CONTEXT, MAX_PREFILL)
    with pytest.raises(ConversionError, match=r"TensorRT (could not build|crashed building) the engine"):
        to_tensorrt.build_engine(package / "model.onnx", tmp_path / "model.engine", settings, inputs)


@pytest.mark.skipif(_has_nvidia_gpu(), reason="checks the message on a machine without an NVIDIA driver")
def test_loading_an_engine_without_a_gpu_says_what_is_missing(engine_package, cli):
    result = cli("run", str(engine_package("llama", "fp16")), "--prompt", "hi")
    assert result.code == 1 and result.err.strip() == ("error: no NVIDIA driver found (NVML is unavailable): "
                                                       "TensorRT engines need an NVIDIA GPU")


def test_a_gpu_the_engine_was_not_built_for_is_named(engine_package, monkeypatch):
    """The GPU is what cannot exist here: NVML's answer is replaced, the rest is the real code."""
    monkeypatch.setattr("localai.profiling.nvidia_gpus", lambda: [("NVIDIA GeForce RTX 3080", 86)])
    with pytest.raises(localai.errors.BackendError, match=r"RTX 3080, compute capability 8\.6\) is not among the "
                                                          r"engine's targets \(8\.9\).*--compute-capability 86"):
        localai.load(engine_package("llama", "fp16"))


# --- GPU only: run by scripts/gpu_check.sh on a machine with an NVIDIA GPU ------------------------------


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_engine_logits_match_onnx_fp32(name, engine_package, onnx_package):
    tokens = zoo.random_tokens(40, 500, seed=3)
    expected = localai.load(onnx_package(name, "fp32"), n_ctx=MAX_CONTEXT).backend.logits(tokens)
    fp16 = localai.load(engine_package(name, "fp16"), n_ctx=MAX_CONTEXT, device="tensorrt")
    assert np.abs(fp16.backend.logits(tokens) - expected).max() <= 2e-2
    int4 = localai.load(engine_package(name, "int4"), n_ctx=MAX_CONTEXT, device="tensorrt")
    assert zoo.mean_kl(expected, int4.backend.logits(tokens)) <= 5e-2


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_engine_greedy_output_equals_onnx_fp32(name, engine_package, onnx_package, cli):
    runs = [json.loads(cli("run", str(p), "--prompt", "rivers and apples", "--raw", "--temperature", "0",
                           "--max-tokens", "32", "--json").out)["tokens"]
            for p in (onnx_package(name, "fp32"), engine_package(name, "fp16"))]
    assert runs[0] == runs[1] and len(runs[0]) == 32


@pytest.mark.gpu
@GPU
def test_bench_rows_for_an_engine(engine_package, cli):
    result = cli("bench", str(engine_package("nemotron_h", "fp16")), "-p", "32", "-n", "16", "-r", "1",
                 "--format", "json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)["results"]
    assert [r["backend"] for r in rows] == ["tensorrt", "tensorrt"] and all(r["gpu_mb"] > 0 for r in rows)
