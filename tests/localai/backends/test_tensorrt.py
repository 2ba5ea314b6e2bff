"""The TensorRT backend. Engines are built here for real (TensorRT for RTX builds on the CPU); running them
needs an NVIDIA GPU, so most tests here stand in for the GPU (fake_gpu.py: host memory, and the portable
ONNX graph the engine was compiled from behind TensorRT's execution API) and check the backend's own
code: buffers, profiles, shapes, states, snapshots, chat. The tests marked `gpu` run the real engines
(scripts/gpu_check.sh)."""

from __future__ import annotations

import gc
import inspect
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import localai
from converters import to_tensorrt
from localai import tensorrt_lib
from localai.backends import tensorrt
from localai.backends.cuda_device import CudaDevice
from localai.bench import BenchSettings, measure
from localai.errors import BackendError
from localai.machine import nvidia_gpus
from tests import zoo
from tests.localai.backends.fake_gpu import FakeContext, FakeEngine, FakeRuntimeConfig, HostMemory

trt = pytest.importorskip("tensorrt_rtx", reason="the dev extra installs tensorrt-rtx")

HAS_GPU = bool(nvidia_gpus())
LOCAL_CAPABILITY = nvidia_gpus()[0][1] if HAS_GPU else None  # type: ignore[index]
GPU = pytest.mark.skipif(
    LOCAL_CAPABILITY not in tensorrt_lib.RTX_CAPABILITIES,
    reason="running a TensorRT engine needs an NVIDIA GPU" if not HAS_GPU else
    f"TensorRT for RTX cannot target this GPU (compute capability {LOCAL_CAPABILITY}; it targets RTX-class "
    f"GPUs: {', '.join(map(str, tensorrt_lib.RTX_CAPABILITIES))})")
STAND_IN_GPU = ("NVIDIA GeForce RTX 4090 (stand-in)", 89)
REAL_DESERIALIZE = tensorrt.deserialize
TOLERANCE = 1e-4  # the same graph on the same runtime, in other chunks: float32 rounding only


@dataclass
class FakeGpu:
    """What the stand-in GPU saw: one HostMemory and one FakeEngine per load."""

    onnx: dict[Path, Path]  # engine package -> the portable fp32 ONNX package of the same checkpoint
    memories: list[HostMemory] = field(default_factory=list)
    engines: list[FakeEngine] = field(default_factory=list)
    packages: dict[Path, Path] = field(default_factory=dict)

    def open_gpu(self) -> HostMemory:
        self.memories.append(HostMemory())
        return self.memories[-1]

    def deserialize(self, trt_module: Any, logger: Any, data: bytes) -> tuple[object, FakeEngine]:
        engine_root = next(root for root in self.onnx if (root / "model.engine").read_bytes() == data)
        profiles = json.loads((engine_root / "manifest.json").read_text())["graph"]["tensorrt"]["profiles"]
        self.engines.append(FakeEngine(trt_module, self.onnx[engine_root] / "model.onnx", profiles,
                                       self.memories[-1]))
        return object(), self.engines[-1]


@pytest.fixture
def fake_gpu(monkeypatch, engine_package, onnx_package):
    """fake_gpu(name, quant="fp16") -> (engine package, portable fp32 ONNX package) of that checkpoint, with
    the GPU stood in for; `.state` is what the stand-in saw."""
    state = FakeGpu({})
    monkeypatch.setattr("localai.machine.nvidia_gpus", lambda: [STAND_IN_GPU])
    monkeypatch.setattr(tensorrt, "open_gpu", state.open_gpu)
    monkeypatch.setattr(tensorrt, "deserialize", state.deserialize)

    def get(name: str, quant: str = "fp16") -> tuple[Path, Path]:
        engine, onnx = engine_package(name, quant), onnx_package(name, "fp32", "portable")
        state.onnx[engine] = onnx
        return engine, onnx

    get.state = state  # type: ignore[attr-defined]
    return get


@pytest.mark.parametrize("name", ["nemotron_h", "llama", "nemotron3_latent"])
def test_logits_match_the_graph_full_and_incremental(name, fake_gpu):
    engine, onnx = fake_gpu(name)
    tokens = zoo.random_tokens(150, 500, seed=4)  # three prefill batches of at most 64
    expected = localai.load(onnx, n_ctx=256).backend.logits(tokens)
    backend = localai.load(engine, n_ctx=256).backend
    assert backend.name == "tensorrt" and backend.device == "tensorrt"
    assert np.abs(backend.logits(tokens) - expected).max() <= TOLERANCE
    launches = fake_gpu.state.engines[-1].launches
    assert launches == [(tensorrt.PREFILL, 64), (tensorrt.PREFILL, 64), (tensorrt.PREFILL, 22)]

    backend.reset()
    incremental = [backend.eval(tokens[:70])] + [backend.eval([t]) for t in tokens[70:90]]
    assert backend.n_past == 90
    assert np.abs(np.stack(incremental) - expected[69:90]).max() <= TOLERANCE
    # one new token runs on the decode profile's context
    assert launches[3:] == [(tensorrt.PREFILL, 64), (tensorrt.PREFILL, 6)] + [(tensorrt.DECODE, 1)] * 20


def test_snapshots_restore_exactly_and_match_the_onnx_states(fake_gpu):
    engine, onnx = fake_gpu("nemotron_h")
    backend, reference = localai.load(engine, n_ctx=256).backend, localai.load(onnx, n_ctx=256).backend
    prompt, detour, turn = (zoo.random_tokens(n, 400, seed=s) for n, s in ((30, 1), (25, 2), (12, 3)))
    backend.eval(prompt)
    reference.eval(prompt)
    snapshot = backend.save_state()
    assert (snapshot.n_past, snapshot.nbytes) == (30, reference.save_state().nbytes)
    backend.eval(detour)
    backend.load_state(snapshot)
    continued = [backend.eval(turn[:5])] + [backend.eval([t]) for t in turn[5:]]
    assert np.abs(np.stack(continued) - reference.logits(prompt + turn)[34:]).max() <= TOLERANCE
    with pytest.raises(BackendError, match="not taken by this TensorRT model"):
        backend.load_state(reference.save_state())


def test_greedy_chat_equals_onnx_and_reuses_turn_state(fake_gpu, cli):
    engine, onnx = fake_gpu("nemotron_h")
    runs = [json.loads(cli("run", str(p), "--ctx", "256", "--prompt", "rivers and apples", "--temperature", "0",
                           "--max-tokens", "32", "--json").out) for p in (onnx, engine)]
    assert runs[0]["tokens"] == runs[1]["tokens"] and len(runs[1]["tokens"]) > 0

    # a second turn starts from the first turn's state (kept in host memory): only its new tokens are processed
    processed = []
    for snapshots in (0, 2):
        model = localai.load(engine, n_ctx=256, turn_snapshots=snapshots)
        launches = fake_gpu.state.engines[-1].launches
        messages = [{"role": "user", "content": "rivers"}]
        first = model.chat(messages, max_tokens=8, temperature=0)
        before = len(launches)
        messages += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "apples"}]
        processed.append((model.chat(messages, max_tokens=8, temperature=0).content,
                          sum(n for _, n in launches[before:])))
        model.close()
    assert processed[1][0] == processed[0][0] and processed[1][1] < processed[0][1]


def test_bench_measures_an_engine(fake_gpu):
    engine, _ = fake_gpu("llama")
    rows = measure(str(engine), BenchSettings(n_prompt=32, n_gen=8, repetitions=1, n_ctx=256))
    assert [(r.backend, r.device, r.quant, r.test) for r in rows] == [("tensorrt", "tensorrt", "fp16", "pp32"),
                                                                       ("tensorrt", "tensorrt", "fp16", "tg8")]


def test_contexts_share_scratch_memory_and_run_dynamic_shape_kernels(fake_gpu):
    engine, _ = fake_gpu("llama")
    backend = localai.load(engine, n_ctx=256).backend
    backend.eval([1, 2, 3])
    backend.eval([4])
    (config,) = fake_gpu.state.engines[-1].configs
    assert config.allocation == trt.ExecutionContextAllocationStrategy.USER_MANAGED
    assert config.dynamic_shapes_kernel_specialization_strategy == trt.DynamicShapesKernelSpecializationStrategy.NONE
    prefill, decode = backend._contexts
    assert prefill.scratch == decode.scratch and prefill.scratch[0] in fake_gpu.state.memories[-1].blocks


@pytest.mark.parametrize(("change", "message"), [
    ({"version": "1.6.0.1"}, r"the engine was built by tensorrt_rtx 1\.6\.0\.1, this is 1\.7\.\d+\.\d+: convert again"),
    ({"library": "tensorrt"}, r"the engine was built by tensorrt, which is not installed"),
])
def test_an_engine_from_another_tensorrt_is_refused(change, message, fake_gpu, tmp_path):
    engine, _ = fake_gpu("llama")
    copy = shutil.copytree(engine, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["graph"]["tensorrt"].update(change)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendError, match=message):
        localai.load(copy, n_ctx=256)


def test_a_gpu_tensorrt_for_rtx_cannot_target_is_named(engine_package, monkeypatch):
    monkeypatch.setattr("localai.machine.nvidia_gpus", lambda: [("NVIDIA H200", 90)])
    with pytest.raises(BackendError, match=r"TensorRT for RTX engines cannot run on this GPU \(NVIDIA H200, compute "
                                           r"capability 9\.0\): TensorRT for RTX targets RTX-class GPUs \(7\.5, "):
        localai.load(engine_package("llama", "fp16"))


def test_close_releases_every_buffer_and_later_calls_fail(fake_gpu):
    engine, _ = fake_gpu("llama")
    model = localai.load(engine, n_ctx=256)
    memory = fake_gpu.state.memories[-1]
    assert len(memory.blocks) > 2 * 2  # two buffers per state, the ids, the logits, the contexts' scratch
    model.close()
    model.close()
    assert memory.blocks == {} and memory.closed
    with pytest.raises(BackendError, match="closed"):
        model.backend.eval([1])


def test_a_backend_never_closed_frees_its_gpu_memory_when_collected(fake_gpu):
    engine, _ = fake_gpu("llama")
    backend = localai.load(engine, n_ctx=256).backend
    memory = fake_gpu.state.memories[-1]
    assert memory.blocks
    del backend
    gc.collect()
    assert memory.blocks == {} and memory.closed


def test_an_engine_tensorrt_cannot_load_is_one_error_and_frees_the_gpu(fake_gpu, monkeypatch):
    """The real TensorRT runtime, on this machine without a CUDA driver: it cannot deserialize."""
    engine, _ = fake_gpu("llama")
    monkeypatch.setattr(tensorrt, "deserialize", REAL_DESERIALIZE)
    if HAS_GPU:
        pytest.skip("checks the message of a machine without a CUDA driver")
    with pytest.raises(BackendError, match=r"TensorRT cannot load model\.engine: .*cudaError 35"):
        localai.load(engine, n_ctx=256)
    assert fake_gpu.state.memories[-1].blocks == {} and fake_gpu.state.memories[-1].closed


def test_context_limits(fake_gpu):
    engine, _ = fake_gpu("llama")
    with pytest.raises(BackendError, match=r"serves at most 256 tokens of context \(asked for 512\)"):
        localai.load(engine, n_ctx=512)
    assert localai.load(engine).backend.n_ctx == zoo.ENGINE_MAX_CONTEXT  # the default fits the engine
    backend = localai.load(engine, n_ctx=40).backend
    backend.eval(zoo.random_tokens(30, 400))
    with pytest.raises(BackendError, match="context full: 30 \\+ 11 tokens exceed the context size 40"):
        backend.eval(zoo.random_tokens(11, 400))


def _methods(cls: type) -> list[str]:
    return [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]


def test_the_stand_ins_imitate_real_interfaces():
    """The backend runs against the fakes here: every method they offer exists on the TensorRT class they
    stand in for, and HostMemory offers every method of CudaDevice, with the same parameters."""
    for fake, real in ((FakeEngine, trt.ICudaEngine), (FakeContext, trt.IExecutionContext),
                       (FakeRuntimeConfig, trt.IRuntimeConfig)):
        assert all(hasattr(real, method) for method in _methods(fake)), (fake, real)
    for method in _methods(CudaDevice):
        assert inspect.signature(getattr(HostMemory, method)) == inspect.signature(getattr(CudaDevice, method))


@pytest.mark.skipif(HAS_GPU, reason="checks the message of a machine without a CUDA driver")
def test_cuda_without_a_driver_is_one_error():
    with pytest.raises(BackendError, match="CUDA cudaGetDeviceCount failed: cudaErrorInsufficientDriver"):
        CudaDevice()


@pytest.mark.skipif(HAS_GPU, reason="checks the message on a machine without an NVIDIA driver")
def test_loading_an_engine_without_a_gpu_says_what_is_missing(engine_package, cli):
    result = cli("run", str(engine_package("llama", "fp16")), "--prompt", "hi")
    assert result.code == 1 and result.err.strip() == ("error: no NVIDIA driver found (NVML is unavailable): "
                                                       "TensorRT engines need an NVIDIA GPU")


def test_a_gpu_the_engine_was_not_built_for_is_named(engine_package, monkeypatch):
    monkeypatch.setattr("localai.machine.nvidia_gpus", lambda: [("NVIDIA GeForce RTX 3080", 86)])
    with pytest.raises(BackendError, match=r"RTX 3080, compute capability 8\.6\) is not among the "
                                           r"engine's targets \(8\.9\).*--compute-capability 86"):
        localai.load(engine_package("llama", "fp16"))


# --- GPU only: run by scripts/gpu_check.sh on a machine with an NVIDIA GPU ------------------------------


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_engine_logits_match_onnx_fp32(name, engine_package, onnx_package):
    tokens = zoo.random_tokens(40, 500, seed=3)
    expected = localai.load(onnx_package(name, "fp32"), n_ctx=256).backend.logits(tokens)
    fp16 = localai.load(engine_package(name, "fp16", LOCAL_CAPABILITY), n_ctx=256, device="tensorrt")
    assert np.abs(fp16.backend.logits(tokens) - expected).max() <= 2e-2
    fp16.backend.reset()
    incremental = [fp16.backend.eval(tokens[:20])] + [fp16.backend.eval([t]) for t in tokens[20:]]
    assert np.abs(np.stack(incremental) - expected[19:]).max() <= 2e-2
    int4 = localai.load(engine_package(name, "int4", LOCAL_CAPABILITY), n_ctx=256, device="tensorrt")
    assert zoo.mean_kl(expected, int4.backend.logits(tokens)) <= 5e-2


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize(("quant", "bound"), [("bf16", 1e-4), ("fp8", 5e-3), ("nvfp4", 5e-2)])
@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_gpu_type_engines_stay_within_their_kl_bounds(name, quant, bound, engine_package, onnx_package):
    """The bounds of the graphs these engines are built from (tests/converters/test_onnx_parity.py)."""
    if to_tensorrt.MIN_CAPABILITY[quant] > LOCAL_CAPABILITY:
        pytest.skip(f"{quant} needs compute capability {to_tensorrt.MIN_CAPABILITY[quant]} or newer")
    tokens = zoo.random_tokens(40, 500, seed=3)
    expected = localai.load(onnx_package(name, "fp32"), n_ctx=256).backend.logits(tokens)
    engine = localai.load(engine_package(name, quant, LOCAL_CAPABILITY), n_ctx=256, device="tensorrt")
    assert zoo.mean_kl(expected, engine.backend.logits(tokens)) <= bound


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("name", ["nemotron_h", "llama"])
def test_engine_greedy_output_equals_onnx_fp32(name, engine_package, onnx_package, cli):
    runs = [json.loads(cli("run", str(p), "--prompt", "rivers and apples", "--raw", "--temperature", "0",
                           "--max-tokens", "32", "--json").out)["tokens"]
            for p in (onnx_package(name, "fp32"), engine_package(name, "fp16", LOCAL_CAPABILITY))]
    assert runs[0] == runs[1] and len(runs[0]) == 32


@pytest.mark.gpu
@GPU
def test_bench_rows_for_an_engine(engine_package, cli):
    engine = engine_package("nemotron_h", "fp16", LOCAL_CAPABILITY)
    result = cli("bench", str(engine), "-p", "32", "-n", "16", "-r", "1", "--format", "json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)["results"]
    assert [r["backend"] for r in rows] == ["tensorrt", "tensorrt"] and all(r["gpu_mb"] > 0 for r in rows)
