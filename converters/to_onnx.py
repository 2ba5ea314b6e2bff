"""Model package files for ONNX Runtime: `model.onnx`, its external weights `model.onnx.data`, and the
tokenizer files the runtime tokenizes with.

The graph is built from the checkpoint's tensors one at a time (`onnx_layers`, assembled by the
architecture module's `build_onnx`), not traced through PyTorch, so memory stays at about one tensor
however large the model is.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from converters import onnx_quant
from converters.checkpoint import Checkpoint
from converters.onnx_graph import Graph, save
from converters.onnx_layers import Decoder
from localai.errors import ConversionError

MODEL_FILE, DATA_FILE = "model.onnx", "model.onnx.data"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def write_onnx(folder: Path, arch: ModuleType, args: Any, ckpt: Checkpoint, weights: onnx_quant.WeightFormat,
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
