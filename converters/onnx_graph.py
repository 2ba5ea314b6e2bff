"""A small ONNX graph builder whose weights go straight to an external data file.

The exporter emits nodes one by one (`g.op("MatMul", x, w)`) and hands each weight to `g.weight()` as
soon as it is read from the checkpoint: its bytes are appended to `<model>.onnx.data` at once and the
graph keeps only a reference (offset and length), so memory never holds more than one tensor of the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 21  # blockwise DequantizeLinear with int4 weights needs 21
OPSET_23 = 23  # float4 (e2m1) weights and RMSNormalization need 23
MS_DOMAIN = "com.microsoft"
# tensors this large are page-aligned in the data file so ONNX Runtime can map them instead of copying
_PAGE, _PAGE_ALIGN_FROM, _EMBED_BELOW = 4096, 1 << 20, 1024


@dataclass(frozen=True)
class ValueSpec:
    """A graph input or output: name, element type and shape (ints, or names of symbolic dimensions).
    `in_place` marks a state input whose present output the graph may write into the same buffer."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    in_place: bool = False

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        return spec | ({"in_place": True} if self.in_place else {})


@dataclass
class Graph:
    """Nodes, inputs, outputs and initializers of one ONNX graph under construction."""

    data_file: IO[bytes]
    data_name: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inputs: list[ValueSpec] = field(default_factory=list)
    outputs: list[ValueSpec] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    uses_ms_domain: bool = False
    opset: int = OPSET
    _counter: int = 0
    _constants: dict[tuple[Any, ...], str] = field(default_factory=dict)
    _scope: str = ""

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Name the nodes made inside `node.<name>/...` (nested: `node.moe/mlp/...`), so that a profile can
        say which part of the model (attention, mamba2, mlp, moe, head) each operator's time belongs to."""
        outer, self._scope = self._scope, f"{self._scope}{name}/"
        try:
            yield
        finally:
            self._scope = outer

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, domain: str = "",
           **attrs: Any) -> Any:
        """Append a node; returns its output name (or a list of names when `outputs` > 1)."""
        base = name or self.fresh(op_type.lower())
        names = [base] if outputs == 1 else [f"{base}.{i}" for i in range(outputs)]
        node_name = f"node.{self._scope}{base}"
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=node_name, domain=domain, **attrs))
        if domain == MS_DOMAIN:
            self.uses_ms_domain = True
        return names[0] if outputs == 1 else names

    def input(self, name: str, dtype: str, shape: tuple[int | str, ...], *, in_place: bool = False) -> str:
        self.inputs.append(ValueSpec(name, dtype, shape, in_place))
        return name

    def output(self, value: str, name: str, dtype: str, shape: tuple[int | str, ...]) -> None:
        """Expose `value` as graph output `name`."""
        self.op("Identity", value, name=name)
        self.outputs.append(ValueSpec(name, dtype, shape))

    def const(self, value: Any, dtype: type = np.int64) -> str:
        """A small constant (shapes, axes, scalars), shared between the nodes that use the same value."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.fresh("const")
            self.initializers.append(onnx.numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def weight(self, name: str, array: np.ndarray, onnx_type: int | None = None) -> str:
        """Store `array` as initializer `name`, appending its bytes to the external data file.

        `onnx_type` overrides the element type for packed data (e.g. INT4 held two to a byte in uint8)."""
        array = np.ascontiguousarray(array)
        data_type = onnx_type if onnx_type is not None else helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor = TensorProto(name=name, data_type=data_type, dims=array.shape if onnx_type is None else ())
        raw = array.tobytes()
        if len(raw) < _EMBED_BELOW:
            tensor.raw_data = raw
        else:
            align = _PAGE if len(raw) >= _PAGE_ALIGN_FROM else 64
            offset = -self.data_file.tell() % align
            self.data_file.write(b"\0" * offset)
            start = self.data_file.tell()
            self.data_file.write(raw)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", self.data_name), ("offset", str(start)), ("length", str(len(raw)))):
                tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return name

    def packed_weight(self, name: str, packed: np.ndarray, onnx_type: int, dims: tuple[int, ...]) -> str:
        """Store sub-byte data (`packed`: its bytes) as an initializer of `onnx_type` and logical `dims`."""
        self.weight(name, packed, onnx_type)
        self.initializers[-1].dims.extend(dims)
        return name

    def model(self, producer_version: str) -> onnx.ModelProto:
        def value_info(spec: ValueSpec) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(spec.name, TYPES[spec.dtype], list(spec.shape))

        graph = helper.make_graph(self.nodes, "decoder", [value_info(s) for s in self.inputs],
                                  [value_info(s) for s in self.outputs], self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        if self.uses_ms_domain:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        return helper.make_model(graph, opset_imports=opsets, producer_name="localai",
                                 producer_version=producer_version, ir_version=10)


TYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write the graph (weights are already in the data file) and check it with `onnx.checker`."""
    path.write_bytes(model.SerializeToString())
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid graph"
        raise ValueError(f"the exported graph fails onnx.checker: {first}") from exc
