"""Model package files for ONNX Runtime: `model.onnx`, its external weights `model.onnx.data`, and the
tokenizer files the runtime tokenizes with (the `onnx` output format: `FORMAT`).

The graph is built from the checkpoint's tensors one at a time (`onnx_layers`, assembled by the
architecture module's `build_onnx`), not traced through PyTorch, so memory stays at about one tensor
however large the model is.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from converters import onnx_quant
from converters.architecture import Architecture
from converters.checkpoint import Checkpoint
from converters.formats import Job, Request, Written, installed_version, staged_artifact
from converters.onnx_graph import Graph, save
from converters.onnx_layers import Decoder
from localai import __version__
from localai.errors import ConversionError
from localai.package import Artifact

MODEL_FILE, DATA_FILE = "model.onnx", "model.onnx.data"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def write_onnx(folder: Path, arch: Architecture, args: Any, ckpt: Checkpoint, weights: onnx_quant.WeightFormat,
               producer_version: str) -> dict[str, Any]:
    """Write model.onnx + model.onnx.data into `folder`; return the graph's description for the manifest."""
    with (folder / DATA_FILE).open("wb") as data:
        graph = Graph(data, DATA_FILE, opset=weights.opset)
        arch.build_onnx(args, Decoder(graph, ckpt, weights), set(ckpt.tensors))
    try:
        save(graph.model(producer_version), folder / MODEL_FILE)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    return {
        "opset": graph.opset,
        "flavor": weights.flavor,
        "block_size": weights.block_size if weights.quant in ("int8", "int4") else None,
        "inputs": [spec.to_dict() for spec in graph.inputs],
        "outputs": [spec.to_dict() for spec in graph.outputs],
    }


def copy_tokenizer(source: Path, folder: Path) -> list[Path]:
    """The tokenizer files the ONNX backend reads, copied from the checkpoint; returns the copies."""
    copies = [folder / name for name in TOKENIZER_FILES if (source / name).is_file()]
    for copy in copies:
        shutil.copyfile(source / copy.name, copy)
    return copies


class OnnxFormat:
    """The `onnx` output format (converters/formats.py); the weights' layout is `onnx_quant.WeightFormat`."""

    name = "onnx"
    keeps_mtp = False

    def check(self, request: Request) -> onnx_quant.WeightFormat:
        if request.engine_options:
            raise ConversionError("--compute-capability, --max-context and --max-prefill apply to --to tensorrt only")
        block = onnx_quant.DEFAULT_BLOCK if request.block_size is None else request.block_size
        quant, flavor = onnx_quant.check(request.quant or "fp32", request.flavor or "ort", block)
        return onnx_quant.WeightFormat(quant, flavor, block)

    def prepare(self, arch: Architecture, args: Any, settings: onnx_quant.WeightFormat) -> onnx_quant.WeightFormat:
        require_graph_builder(arch)
        return settings

    def label(self, settings: onnx_quant.WeightFormat) -> str:
        return f"onnx-{settings.quant}" + ("-portable" if settings.flavor == "portable" else "")

    def write(self, job: Job, settings: onnx_quant.WeightFormat) -> Written:
        graph = staged_graph(job, job.staging, settings)
        artifacts = [staged_artifact(job.staging / MODEL_FILE, "onnx", settings.quant),
                     staged_artifact(job.staging / DATA_FILE, "onnx-data", settings.quant)]
        runtime = next((v for v in map(installed_version, ("onnxruntime", "onnxruntime-gpu")) if v != "unknown"),
                       "unknown")
        return Written([*artifacts, *tokenizer_artifacts(job)], graph,
                       {"onnx": installed_version("onnx"), "onnxruntime": runtime})


def require_graph_builder(arch: Architecture) -> None:
    if not hasattr(arch, "build_onnx"):
        raise ConversionError(f"ONNX export is not available for {arch.__name__.rsplit('.', 1)[-1]} models")


def staged_graph(job: Job, folder: Path, weights: onnx_quant.WeightFormat) -> dict[str, Any]:
    """The graph of `job` written into `folder` (the staging folder, or TensorRT's scratch folder in it)."""
    job.report("building the ONNX graph", 0, 1)
    graph = write_onnx(folder, job.arch, job.args, job.ckpt, weights, __version__)
    job.report("building the ONNX graph", 1, 1)
    return graph


def tokenizer_artifacts(job: Job) -> list[Artifact]:
    """The tokenizer files the ONNX Runtime and TensorRT backends tokenize with, staged and listed."""
    return [staged_artifact(path, "tokenizer", "") for path in copy_tokenizer(job.source, job.staging)]


FORMAT = OnnxFormat()
