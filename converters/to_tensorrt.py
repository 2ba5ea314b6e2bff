"""TensorRT engines, built from the `portable` ONNX graph by TensorRT for RTX (or TensorRT): the `tensorrt`
output format (`FORMAT`).

TensorRT for RTX builds ahead of time for named compute capabilities with no GPU in the machine, so this
whole module runs on a CPU-only box. The network is strongly typed: it computes in the types the ONNX
graph has (the portable fp16 graph stores fp16 weights and runs its matrix products in fp16; int4
dequantizes blockwise int4 weights). Two optimization profiles cover the two ways the chat engine calls a model:

- `prefill`: 1..max_prefill new tokens on top of 0..max_context - 1 past tokens;
- `decode`: 1 new token (the fp16 range allows 2: see DECODE_MAX_TOKENS) on top of 0..max_context - 1 past
  tokens.

The build runs in a child process (`child_main`, converters/child.py): TensorRT aborts the whole
process on some graphs it cannot compile (TensorRT for RTX 1.7 segfaults on `If`), and that must be a
clear error here rather than a crash of `localai convert`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters import child, onnx_quant, to_onnx
from converters.formats import Job, Request, Written, installed_version, staged_artifact
from localai import tensorrt_lib
from localai.errors import ConversionError

ENGINE_FILE = "model.engine"
CHILD = child.program(__name__)
QUANTS = ("fp16", "bf16", "int4", "fp8", "nvfp4")

MIN_CAPABILITY = {"bf16": 80, "fp8": 89, "nvfp4": 120}  # Ampere, Ada, Blackwell
DEFAULT_CAPABILITIES = (86, 89, 120)  # RTX 30, 40 and 50 series
# The decode profile's token range ends here, per precision: engine sizes measured with TensorRT for RTX 1.7 on
# a 250M Nemotron-H. With a static token dimension (1..1) the fp16 engine keeps every weight twice (923 MB,
# against 600 MB for 1..2; bf16 likewise on a one-MatMul graph), while the dequantizing types are smaller
# static (int4 284 MB against 325 MB, fp8 349 against 388 MB, nvfp4 280 against 319 MB).
DECODE_MAX_TOKENS = {"fp16": 2, "bf16": 2, "int4": 1, "fp8": 1, "nvfp4": 1}
DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT64": "int64", "INT32": "int32",
          "INT8": "int8", "BOOL": "bool"}  # TensorRT's names -> the manifest's (ONNX-style) names


@dataclass(frozen=True)
class EngineSettings:
    """What to build: precision, target GPUs and the shapes the profiles cover."""

    quant: str
    capabilities: tuple[int, ...]
    max_context: int
    max_prefill: int


def check(quant: str | None, capabilities: list[int] | None, max_context: int | None, max_prefill: int | None,
          context_length: int) -> EngineSettings:
    """The settings, after refusing what the named targets cannot run or this version cannot build."""
    if tensorrt_lib.installed() is None:
        raise ConversionError(f"TensorRT is not installed: {tensorrt_lib.INSTALL_HINT}")
    quant = (quant or "fp16").lower()
    if quant not in QUANTS:
        raise ConversionError(f"unknown TensorRT precision {quant!r}; choose from {', '.join(QUANTS)}")
    targets = tuple(sorted(set(capabilities or DEFAULT_CAPABILITIES)))
    unknown = [c for c in targets if c not in tensorrt_lib.RTX_CAPABILITIES]
    if unknown:
        raise ConversionError(f"unknown compute capability {_cc(unknown[0])}; TensorRT for RTX targets "
                              f"{', '.join(_cc(c) for c in tensorrt_lib.RTX_CAPABILITIES)}")
    need = MIN_CAPABILITY.get(quant)
    too_old = [c for c in targets if need is not None and c < need]
    if need is not None and too_old:
        raise ConversionError(f"{quant} needs compute capability {_cc(need)} or newer; "
                              f"{', '.join(_cc(c) for c in too_old)} cannot run it (choose targets with "
                              "--compute-capability)")
    context = max_context or min(4096, context_length)
    prefill = max_prefill or min(1024, context)
    if context < 2 or not 1 <= prefill <= context:
        raise ConversionError(f"need 2 <= --max-context and 1 <= --max-prefill <= --max-context "
                              f"(got {context} and {prefill})")
    return EngineSettings(quant, targets, context, prefill)


@dataclass(frozen=True)
class Build:
    """An engine to build, and the block size of its portable graph's int4 weights."""

    engine: EngineSettings
    block_size: int


class TensorRTFormat:
    """The `tensorrt` output format (converters/formats.py): the portable ONNX graph in a scratch folder of the
    staging folder, then the engine built from it in a child process."""

    name = "tensorrt"
    keeps_mtp = False

    def check(self, request: Request) -> Request:
        if request.flavor not in (None, "portable"):
            raise ConversionError("TensorRT engines are built from the portable ONNX flavour only")
        block = onnx_quant.DEFAULT_BLOCK if request.block_size is None else request.block_size
        return dataclasses.replace(request, quant=(request.quant or "fp16").lower(), flavor="portable",
                                   block_size=block)

    def prepare(self, arch: Any, args: Any, settings: Request) -> Build:
        to_onnx.require_graph_builder(arch)
        engine = check(settings.quant, settings.compute_capabilities, settings.max_context, settings.max_prefill,
                       args.context_length)
        return Build(engine, int(settings.block_size or onnx_quant.DEFAULT_BLOCK))

    def label(self, settings: Build) -> str:
        return f"trt-{settings.engine.quant}"

    def write(self, job: Job, settings: Build) -> Written:
        scratch = job.staging / ".onnx"
        scratch.mkdir()
        weights = onnx_quant.WeightFormat(settings.engine.quant, "portable", settings.block_size)
        graph = to_onnx.staged_graph(job, scratch, weights)
        job.report("building the TensorRT engine", 0, 1)
        graph["tensorrt"] = build_engine(scratch / to_onnx.MODEL_FILE, job.staging / ENGINE_FILE, settings.engine,
                                         graph["inputs"])
        job.report("building the TensorRT engine", 1, 1)
        shutil.rmtree(scratch)
        artifacts = [staged_artifact(job.staging / ENGINE_FILE, "tensorrt", settings.engine.quant),
                     *to_onnx.tokenizer_artifacts(job)]
        tensorrt = graph["tensorrt"]
        return Written(artifacts, graph, {"onnx": installed_version("onnx"), tensorrt["library"]: tensorrt["version"]})


FORMAT = TensorRTFormat()


def _cc(capability: int) -> str:
    return f"{capability // 10}.{capability % 10}"


def build_engine(onnx_path: Path, engine_path: Path, settings: EngineSettings,
                 graph_inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the engine of `onnx_path` into `engine_path` in a child process; return its description for the
    manifest (library, version, targets, profiles, I/O tensors)."""
    done = child.run(CHILD, {"onnx": str(onnx_path), "engine": str(engine_path), "settings": settings.__dict__,
                             "inputs": graph_inputs})
    if done.result is not None:
        return dict(done.result)
    if done.error is not None:
        raise ConversionError(done.error)
    raise ConversionError(f"TensorRT crashed building the engine ({done.crash}); the graph holds something "
                          "this TensorRT cannot compile")


# --- the child process -------------------------------------------------------------------------------


def _profile_shapes(spec: dict[str, Any], settings: EngineSettings, prefill: bool) -> tuple[list[int], ...]:
    """(min, opt, max) of one input under the prefill or decode profile; batch is 1."""
    # the backend sends decode 1 token; the range may allow more (DECODE_MAX_TOKENS)
    new = (1, min(64, settings.max_prefill), settings.max_prefill) if prefill else (
        1, 1, DECODE_MAX_TOKENS[settings.quant])
    past = (0, settings.max_context // 2, settings.max_context - 1)
    shapes: tuple[list[int], ...] = ([], [], [])
    for dim in spec["shape"]:
        values = {"batch": (1, 1, 1), "sequence": new, "past_sequence": past}.get(dim, (dim, dim, dim))
        for shape, value in zip(shapes, values, strict=True):
            shape.append(int(value))
    return shapes


def _build(job: dict[str, Any]) -> dict[str, Any]:
    trt = tensorrt_lib.load()
    settings = EngineSettings(**{**job["settings"], "capabilities": tuple(job["settings"]["capabilities"])})
    logger = tensorrt_lib.error_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(job["onnx"]):
        error = parser.get_error(0)
        raise ConversionError(f"TensorRT cannot parse the ONNX graph: node {error.node_name() or '?'} "
                              f"({error.node_operator() or '?'}): {error.desc()}")
    config = builder.create_builder_config()
    if tensorrt_lib.targets_other_gpus(trt):
        config.num_compute_capabilities = len(settings.capabilities)
        for i, capability in enumerate(settings.capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{capability}"), i)
    specs = {spec["name"]: spec for spec in job["inputs"]}
    profiles: list[dict[str, Any]] = []
    for name, prefill in (("prefill", True), ("decode", False)):
        profile = builder.create_optimization_profile()
        ranges: dict[str, list[list[int]]] = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if tensor.is_shape_tensor:  # logits_to_keep: a value, not a shape
                keep = [1, 1, settings.max_prefill if prefill else DECODE_MAX_TOKENS[settings.quant]]
                profile.set_shape_input(tensor.name, [keep[0]], [keep[1]], [keep[2]])
                ranges[tensor.name] = [[v] for v in keep]
                continue
            shapes = _profile_shapes(specs[tensor.name], settings, prefill)
            profile.set_shape(tensor.name, *shapes)
            ranges[tensor.name] = [list(s) for s in shapes]
        config.add_optimization_profile(profile)
        profiles.append({"name": name, "shapes": ranges})
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(f"TensorRT could not build the engine: {logger.last_error or 'no reason given'}")
    Path(job["engine"]).write_bytes(serialized)
    io = []
    for tensors, mode in ((network.get_input, "input"), (network.get_output, "output")):
        count = network.num_inputs if mode == "input" else network.num_outputs
        for i in range(count):
            tensor = tensors(i)
            io.append({"name": tensor.name, "mode": mode, "dtype": DTYPES.get(tensor.dtype.name, tensor.dtype.name),
                       "shape": list(tensor.shape)})
    return {"library": trt.__name__, "version": trt.__version__,
            "compute_capabilities": [_cc(c) for c in settings.capabilities] if tensorrt_lib.targets_other_gpus(trt)
            else ["this machine's GPU"],
            "precision": settings.quant, "max_context": settings.max_context, "max_prefill": settings.max_prefill,
            "profiles": profiles, "io": io, "build_seconds": round(time.perf_counter() - started, 2)}


def child_main(job_text: str) -> int:
    """The build process (converters/child.py): the engine's description, or the error."""
    return child.main(_build, job_text)
