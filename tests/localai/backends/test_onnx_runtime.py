"""The ONNX Runtime backend: tokenization as llama.cpp does it, devices, states and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import localai
from localai.backends.onnx_runtime import providers_for, tensorrt_rtx_plugin
from localai.errors import BackendError
from localai.machine import nvidia_gpus
from tests import zoo

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def both(package, onnx_package):
    """The zoo Nemotron-H as GGUF (llama.cpp) and as ONNX (onnxruntime), both float32."""
    gguf, onnx = localai.load(package("nemotron_h", "f32"), n_ctx=256), localai.load(onnx_package("nemotron_h", "fp32"),
                                                                                      n_ctx=256)
    yield gguf.backend, onnx.backend
    gguf.close()
    onnx.close()


@pytest.mark.parametrize("special", [True, False])
@pytest.mark.parametrize("add_bos", [True, False])
def test_tokenization_matches_llama_cpp(both, special, add_bos):
    gguf, onnx = both
    text = zoo.MIXED_TEXT + " <|end|><think>x</think><|user|>"
    assert onnx.tokenize(text, add_bos=add_bos, special=special) == gguf.tokenize(text, add_bos=add_bos,
                                                                                 special=special)


def test_every_token_has_the_same_bytes_and_end_marking_as_in_llama_cpp(both):
    gguf, onnx = both
    assert onnx.n_vocab == gguf.n_vocab
    for token in range(onnx.n_vocab):
        assert onnx.token_bytes(token) == gguf.token_bytes(token), token
        assert onnx.is_end_of_generation(token) == gguf.is_end_of_generation(token), token


def test_eval_continues_the_state_and_reset_forgets_it(both):
    _, onnx = both
    tokens = zoo.random_tokens(20, 400, seed=9)
    onnx.reset()
    onnx.eval(tokens[:12])
    continued = onnx.eval(tokens[12:])
    assert onnx.n_past == 20
    onnx.reset()
    assert onnx.n_past == 0
    np.testing.assert_allclose(onnx.eval(tokens), continued, atol=1e-5)


def test_one_token_calls_and_longer_ones_mix_in_any_order(both):
    """A one-token call runs on buffers bound once (the token, logits_to_keep, the logits); longer calls and
    full logits bind fresh ones in between, and what a call returned is never overwritten by the next."""
    _, onnx = both
    tokens = zoo.random_tokens(7, 400, seed=4)
    onnx.reset()
    first, prefix, single = onnx.eval(tokens[:1]), onnx.eval(tokens[1:4]), onnx.eval(tokens[4:5])
    rows = onnx.logits(tokens[:6])
    last = onnx.eval(tokens[6:])
    reference = onnx.logits(tokens)
    for got, want in ((first, reference[0]), (prefix, reference[3]), (single, reference[4]), (rows, reference[:6]),
                      (last, reference[6])):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_context_limit_and_bad_ids_are_backend_errors(onnx_package):
    model = localai.load(onnx_package("llama", "fp32"), n_ctx=16)
    with pytest.raises(BackendError, match="context full: 10 \\+ 7 tokens exceed the context size 16"):
        model.backend.eval(list(range(10)))
        model.backend.eval(list(range(7)))
    with pytest.raises(BackendError, match="outside the vocabulary"):
        model.backend.eval([model.backend.n_vocab])
    model.close()
    model.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        model.backend.eval([1])


def test_devices_resolve_to_installed_providers():
    available = ort.get_available_providers()
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("auto")[-1] == "CPUExecutionProvider" and set(providers_for("auto")) <= set(available)
    with pytest.raises(BackendError, match="unknown device 'npu'"):
        providers_for("npu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on an onnxruntime without CUDA")
def test_a_missing_gpu_provider_is_one_clear_error(onnx_package):
    with pytest.raises(BackendError, match="this onnxruntime has no cuda support \\(install onnxruntime-gpu\\)"):
        localai.load(onnx_package("llama", "fp32"), device="cuda")


@pytest.mark.parametrize("quant", ["bf16", "nvfp4"])
def test_gpu_only_graphs_are_refused_on_the_cpu_in_one_line(quant, onnx_package):
    with pytest.raises(BackendError, match=f"^this {quant} graph needs a GPU runtime .*--device cuda or tensorrt"):
        localai.load(onnx_package("llama", quant, "portable"), device="cpu")


def test_tensorrt_without_a_plugin_or_provider_names_both(onnx_package, monkeypatch):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("checks the message on an onnxruntime without TensorRT")
    monkeypatch.setattr("localai.backends.onnx_runtime.tensorrt_rtx_plugin", lambda: None)
    with pytest.raises(BackendError, match=r"no tensorrt support \(install onnxruntime-ep-nv-tensorrt-rtx for RTX "
                                           r"GPUs, or onnxruntime-gpu\)"):
        localai.load(onnx_package("llama", "fp32"), device="tensorrt")


def test_a_plugin_onnxruntime_cannot_load_is_one_error(onnx_package, monkeypatch, tmp_path):
    """onnxruntime's own registration, given a file that is no execution provider library (as the real plugin
    is, without a CUDA driver: it cannot find libcuda.so.1)."""
    library = tmp_path / "libonnxruntime_providers_nv_tensorrt_rtx.so"
    library.write_bytes(b"not a library")
    monkeypatch.setattr("localai.backends.onnx_runtime.tensorrt_rtx_plugin",
                        lambda: ("NvTensorRTRTXExecutionProvider", str(library)))
    with pytest.raises(BackendError, match=r"^onnxruntime cannot load its TensorRT for RTX plugin: Failed to load "
                                           r"library .*libonnxruntime_providers_nv_tensorrt_rtx\.so"):
        localai.load(onnx_package("llama", "fp32"), device="tensorrt")


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_rtx_plugin() is None or not nvidia_gpus(),
                    reason="needs onnxruntime-ep-nv-tensorrt-rtx and an NVIDIA GPU")
def test_tensorrt_rtx_plugin_logits_match_cpu(onnx_package):
    tokens = zoo.random_tokens(40, 400, seed=4)
    cpu = localai.load(onnx_package("nemotron_h", "fp32", "portable"), device="cpu")
    gpu = localai.load(onnx_package("nemotron_h", "fp32", "portable"), device="tensorrt")
    assert gpu.backend.device == "tensorrt"
    np.testing.assert_allclose(gpu.backend.logits(tokens), cpu.backend.logits(tokens), atol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA device")
def test_cuda_logits_match_cpu(onnx_package):
    tokens = zoo.random_tokens(40, 400, seed=4)
    cpu = localai.load(onnx_package("nemotron_h", "fp32"), device="cpu")
    gpu = localai.load(onnx_package("nemotron_h", "fp32"), device="cuda")
    assert gpu.backend.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(gpu.backend.logits(tokens), cpu.backend.logits(tokens), atol=1e-3)
    gpu.backend.reset()
    steps = [gpu.backend.eval(tokens[:30])] + [gpu.backend.eval([t]) for t in tokens[30:]]
    np.testing.assert_allclose(np.stack(steps), cpu.backend.logits(tokens)[29:], atol=1e-3)


def test_a_truncated_weight_file_is_refused_before_loading(onnx_package, tmp_path):
    import shutil

    from localai.errors import PackageError

    copy = Path(shutil.copytree(onnx_package("llama", "fp32"), tmp_path / "copy"))
    data = copy / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(PackageError, match=r"model\.onnx\.data has \d+ bytes, the manifest says"):
        localai.load(copy)
