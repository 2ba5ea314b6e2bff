"""The converter's two registries: every architecture module and every output format has the seam's interface,
so that a new one is a module plus one registry line (docs/architecture.md)."""

from __future__ import annotations

import importlib
import types

import pytest

from converters import ARCHITECTURES, architecture_for
from converters.architecture import Architecture
from converters.formats import OUTPUT_FORMATS, OutputFormat, Request, output_format
from localai.errors import ConversionError


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_registered_architecture_has_the_interface(model_type):
    module = importlib.import_module(f"converters.{ARCHITECTURES[model_type]}")
    assert isinstance(module, Architecture), model_type
    assert callable(module.ModelArgs.from_config)
    assert architecture_for({"model_type": model_type}) is module


def test_a_module_without_the_interface_is_not_an_architecture():
    stub = types.ModuleType("stub")
    stub.GGUF_ARCH, stub.IGNORED_TENSORS = None, ()
    assert not isinstance(stub, Architecture)


@pytest.mark.parametrize("name", OUTPUT_FORMATS)
def test_every_registered_output_format_has_the_interface(name):
    fmt = output_format(name)
    assert isinstance(fmt, OutputFormat) and fmt.name == name
    assert importlib.import_module(f"converters.{OUTPUT_FORMATS[name]}").FORMAT is fmt


@pytest.mark.parametrize(("name", "request_", "fragment"), [
    ("gguf", Request(quant="q9_z"), "unknown GGUF type"),
    ("gguf", Request(flavor="ort"), "--flavor and --block-size apply to --to onnx"),
    ("gguf", Request(max_context=64), "apply to --to tensorrt only"),
    ("onnx", Request(quant="int3"), "unknown ONNX quantization"),
    ("onnx", Request(block_size=24), "power of two"),
    ("tensorrt", Request(flavor="ort"), "portable ONNX flavour only"),
])
def test_each_format_checks_its_own_options(name, request_, fragment):
    with pytest.raises(ConversionError, match=fragment):
        output_format(name).check(request_)


def test_an_unknown_format_names_the_registered_ones():
    with pytest.raises(ConversionError, match="available: gguf, onnx, tensorrt"):
        output_format("safetensors")
