"""Write a GGUF file for llama.cpp, one tensor at a time (the `gguf` output format: `FORMAT`).

f32, f16, bf16 and q8_0 are encoded here with gguf-py. Every other llama.cpp type is produced by
llama.cpp's own quantizer (through llama-cpp-python, in a child process: converters/child.py) from a
lossless intermediate GGUF, which lives in the package's staging folder and is deleted afterwards.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from converters import child
from converters.architecture import Architecture
from converters.checkpoint import Checkpoint
from converters.formats import Job, Request, Written, installed_version, staged_artifact
from converters.tensors import PlannedTensor, StackedTensor, as_float16, shape_only
from converters.vocab import GGUFVocab
from localai.errors import ConversionError

CHILD = child.program(__name__)
Q = gguf.GGMLQuantizationType
F = gguf.LlamaFileType
# types written directly: tensor type for quantizable tensors, and the file type recorded in the header
DIRECT_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (Q.F32, F.ALL_F32),
    "f16": (Q.F16, F.MOSTLY_F16),
    "bf16": (Q.BF16, F.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, F.MOSTLY_Q8_0),
}
# llama.cpp refuses these without an importance matrix, or they are special-purpose formats
_NOT_OFFERED = {F.GUESSED, F.ALL_F32, F.MOSTLY_IQ1_S, F.MOSTLY_IQ1_M, F.MOSTLY_IQ2_XXS, F.MOSTLY_IQ2_XS,
                F.MOSTLY_IQ2_S, F.MOSTLY_IQ2_M, F.MOSTLY_IQ3_XXS, F.MOSTLY_Q2_K_S, F.MOSTLY_TQ1_0, F.MOSTLY_TQ2_0,
                F.MOSTLY_MXFP4_MOE, F.MOSTLY_NVFP4, F.MOSTLY_Q1_0}
LLAMA_QUANTIZED_TYPES: dict[str, gguf.LlamaFileType] = {
    ft.name.removeprefix("MOSTLY_").lower(): ft
    for ft in F
    if ft not in _NOT_OFFERED and ft.name.removeprefix("MOSTLY_").lower() not in DIRECT_TYPES
}
# Q8_0 blocks hold 32 values along the input dimension
_Q8_0_BLOCK = gguf.GGML_QUANT_SIZES[Q.Q8_0][0]


def output_types() -> list[str]:
    """Every `--quant` name this writer accepts."""
    return [*DIRECT_TYPES, *sorted(LLAMA_QUANTIZED_TYPES)]


@dataclass(frozen=True)
class Settings:
    quant: str
    threads: int | None  # llama.cpp's quantizer


class GGUFFormat:
    """The `gguf` output format (converters/formats.py)."""

    name = "gguf"
    keeps_mtp = True

    def check(self, request: Request) -> Settings:
        if request.engine_options:
            raise ConversionError("--compute-capability, --max-context and --max-prefill apply to --to tensorrt only")
        if request.flavor is not None or request.block_size is not None:
            raise ConversionError("--flavor and --block-size apply to --to onnx and tensorrt only")
        quant = (request.quant or "f16").lower()
        if quant not in DIRECT_TYPES and quant not in LLAMA_QUANTIZED_TYPES:
            raise ConversionError(f"unknown GGUF type {request.quant!r}; valid types: {', '.join(output_types())}")
        return Settings(quant, request.threads)

    def prepare(self, arch: Architecture, args: Any, settings: Settings) -> Settings:
        check_hparams(arch, args)
        return settings

    def label(self, settings: Settings) -> str:
        return settings.quant

    def write(self, job: Job, settings: Settings) -> Written:
        path, quant = job.staging / f"{job.package_name}.gguf", settings.quant

        def report(done: int, total: int) -> None:
            job.report("writing tensors", done, total)

        if quant in DIRECT_TYPES:
            write_gguf(path, job.arch, job.args, job.plan, job.ckpt, job.vocab, job.package_name, quant, report)
        else:
            intermediate = job.staging / ".unquantized.gguf"
            write_gguf(intermediate, job.arch, job.args, job.plan, job.ckpt, job.vocab, job.package_name,
                       lossless_type(job.ckpt, job.plan), report)
            job.report(f"quantizing to {quant} with llama.cpp", 0, 1)
            quantize_with_llama_cpp(intermediate, path, quant, settings.threads)
            intermediate.unlink()
        return Written([staged_artifact(path, "gguf", quant)], {},
                       {"gguf": installed_version("gguf"), "llama_cpp_python": installed_version("llama_cpp_python")})


FORMAT = GGUFFormat()


def lossless_type(ckpt: Checkpoint, plan: list[PlannedTensor]) -> str:
    """The direct type that holds the checkpoint's weights exactly: the intermediate for llama.cpp's quantizer.

    Only the tensors stored in the file's type count: a bf16 checkpoint's float32 router or norms stay float32
    in any GGUF, so they must not turn a 60 GB intermediate into a 120 GB one."""
    dtypes = {ckpt.tensors[source].dtype for tensor in plan if not tensor.keep_f32 for source in tensor.sources
              if len(ckpt.shape(source)) > 1}
    if dtypes <= {"BF16"}:
        return "bf16"
    if dtypes <= {"F16"}:
        return "f16"
    return "f32"


def write_gguf(
    path: Path,
    arch: Architecture,
    args: Any,
    plan: list[PlannedTensor],
    ckpt: Checkpoint,
    vocab: GGUFVocab,
    name: str,
    quant: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write `plan` as a GGUF file of direct type `quant` (f32, f16, bf16 or q8_0)."""
    tensor_type, file_type = DIRECT_TYPES[quant]
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf_arch(arch, args)])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(file_type)
    if quant == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    arch.write_hparams(args, writer)
    vocab.write(writer)

    types: list[gguf.GGMLQuantizationType] = []
    for tensor in plan:
        shape = (tensor.shape if isinstance(tensor, StackedTensor)
                 else tensor.build(lambda n: shape_only(ckpt.shape(n))).shape)
        qtype = _tensor_type(tensor, shape, tensor_type)
        types.append(qtype)
        byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
        nbytes = int(np.prod(byte_shape, dtype=np.int64))
        writer.add_tensor_info(tensor.name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)

    try:
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, (tensor, qtype) in enumerate(zip(plan, types, strict=True), start=1):
            if isinstance(tensor, StackedTensor):
                writer.write_tensor_data(_StreamedStack(tensor, qtype, ckpt))  # type: ignore[arg-type]
            else:
                data = tensor.build(ckpt.load)
                writer.write_tensor_data(_encode(tensor.name, data, qtype))
                del data
                for source in tensor.sources:
                    ckpt.release(source)
            if progress:
                progress(done, len(plan))
    finally:
        writer.close()


def check_hparams(arch: Architecture, args: Any) -> None:
    """Write the architecture's metadata into a writer that writes nothing, so that what GGUF cannot express
    is refused before a checkpoint is hashed or anything is staged."""
    arch.write_hparams(args, gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf_arch(arch, args)]))


def gguf_arch(arch: Architecture, args: Any) -> gguf.MODEL_ARCH:
    """The GGUF architecture: the module's, or the checkpoint's where one module writes several (Nemotron-H
    dense or MoE)."""
    return getattr(args, "gguf_arch", arch.GGUF_ARCH)


class _StreamedStack:
    """A stacked tensor as `GGUFWriter.write_tensor_data` takes an array (`nbytes`, `tofile`), encoded and
    written one part at a time; each part's pages are released after it is written. Every type here encodes
    rows independently, so the parts' bytes laid end to end are the stack's bytes."""

    def __init__(self, tensor: StackedTensor, qtype: gguf.GGMLQuantizationType, ckpt: Checkpoint) -> None:
        self.tensor, self.qtype, self.ckpt = tensor, qtype, ckpt
        byte_shape = gguf.quant_shape_to_byte_shape(tensor.shape, qtype)
        self.nbytes = int(np.prod(byte_shape, dtype=np.int64))

    def tofile(self, fout: Any) -> None:
        written = 0
        for part in self.tensor.parts:
            encoded = _encode(self.tensor.name, self.ckpt.load(part), self.qtype)
            encoded.tofile(fout)
            written += encoded.nbytes
            del encoded
            self.ckpt.release(part)
        if written != self.nbytes:
            raise ConversionError(f"{self.tensor.name}: wrote {written} bytes of {self.nbytes}")


def _tensor_type(tensor: PlannedTensor, shape: tuple[int, ...], wanted: gguf.GGMLQuantizationType,
                 ) -> gguf.GGMLQuantizationType:
    # llama.cpp reads 1-D tensors, norms, biases, SSM A/D and the SSM convolution in float32 only
    if (tensor.keep_f32 or len(shape) <= 1 or tensor.name.endswith("_norm.weight")
            or not tensor.name.endswith(".weight")):
        return Q.F32
    if wanted == Q.Q8_0 and shape[-1] % _Q8_0_BLOCK:
        return Q.F16
    return wanted


def _encode(name: str, data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == Q.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == Q.F16:
        return as_float16(name, data, "bf16 or f32")
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


def quantize_with_llama_cpp(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Quantize GGUF `src` into `dst` with llama.cpp's `llama_model_quantize`, in a child process
    (converters/child.py): so that Ctrl-C stops it, and a native abort is one error."""
    done = child.run(CHILD, {"src": str(src), "dst": str(dst), "quant": quant, "threads": threads})
    if done.error is not None:
        raise ConversionError(done.error)
    if done.returncode != 0:
        raise ConversionError(f"llama.cpp crashed quantizing to {quant} ({done.crash})")


def child_main(job_text: str) -> int:
    """The quantizer's process (converters/child.py)."""
    return child.main(_quantize, job_text)


def _quantize(job: dict[str, Any]) -> None:
    import llama_cpp

    from localai.backends import llama_log

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(LLAMA_QUANTIZED_TYPES[job["quant"]])
    params.nthread = job["threads"] or 0
    with llama_log.capture() as log:
        rc = llama_cpp.llama_model_quantize(job["src"].encode(), job["dst"].encode(), ctypes.byref(params))
    if rc != 0:
        raise ConversionError(f"llama.cpp could not quantize to {job['quant']}: {log.last_error() or 'unknown error'}")
