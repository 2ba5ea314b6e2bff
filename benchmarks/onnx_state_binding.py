"""Benchmark: ONNX Runtime's fused Mamba2 operators with their states bound three ways, one decode step.

    .venv/bin/python benchmarks/onnx_state_binding.py [-r 50] [--threads 2]

A graph of 11 `LinearAttention` nodes ("gated" rule), or of 11 `CausalConvWithState` nodes, with the
shapes of the ~250M hybrid of benchmarks/convert_gguf.py (32 heads of 64, state 128, 8 groups; conv
channels 4096, kernel 4), run for one token through I/O binding, its states bound as localai could:
"fresh" (ONNX Runtime allocates each present, which becomes the next past: what localai did before),
"in place" (one buffer bound as past and present: what it does now) and "ping-pong" (two buffers per
state, swapped after every call). Also checks that in place gives bit-identical outputs and states.
Medians of -r calls after a warm-up, workers not spinning, as localai's default on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

LAYERS, HEADS, HEAD_DIM, STATE, GROUPS, CHANNELS, KERNEL = 11, 32, 64, 128, 8, 4096, 4
MODES = ("fresh", "in place", "ping-pong")


def graph(op: str) -> tuple[bytes, dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
    """The serialized model, its non-state inputs and its state shapes (state `s<i>` -> output `o<i>`)."""
    rng = np.random.default_rng(0)
    if op == "LinearAttention":
        shapes = {"q": (1, 1, GROUPS * STATE), "k": (1, 1, GROUPS * STATE), "v": (1, 1, HEADS * HEAD_DIM),
                  "d": (1, 1, HEADS)}
        state, attrs = (1, HEADS, STATE, HEAD_DIM), {"q_num_heads": GROUPS, "kv_num_heads": HEADS,
                                                      "update_rule": "gated", "scale": 1.0}
    else:
        shapes = {"x": (1, CHANNELS, 1), "w": (CHANNELS, 1, KERNEL), "b": (CHANNELS,)}
        state, attrs = (1, CHANNELS, KERNEL - 1), {"activation": "silu"}
    feeds = {f"{name}{i}": rng.standard_normal(shape, np.float32)
             for i in range(LAYERS) for name, shape in shapes.items()}
    if op == "LinearAttention":
        feeds |= {f"d{i}": -np.abs(feeds[f"d{i}"]) for i in range(LAYERS)}  # decays exp(d) below 1
    inputs, nodes, outputs = [], [], []
    for i in range(LAYERS):
        names = [f"{name}{i}" for name in shapes]
        ordered = [*names[:3], f"s{i}", *names[3:]] if op == "LinearAttention" else [*names, f"s{i}"]
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, feeds[n].shape) for n in names]
        inputs.append(helper.make_tensor_value_info(f"s{i}", TensorProto.FLOAT, state))
        nodes.append(helper.make_node(op, ordered, [f"y{i}", f"o{i}"], domain="com.microsoft", **attrs))
        outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in (f"y{i}", f"o{i}")]
    model = helper.make_model(helper.make_graph(nodes, op, inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString(), feeds, {f"s{i}": state for i in range(LAYERS)}


class Stepper:
    """One-token calls of the graph with its states bound as `mode` says."""

    def __init__(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray],
                 states: dict[str, np.ndarray], mode: str) -> None:
        self.session, self.mode = session, mode
        self.binding = session.io_binding()
        for name, value in feeds.items():
            self.binding.bind_cpu_input(name, value)
        self.states = {name: ort.OrtValue.ortvalue_from_numpy(value.copy()) for name, value in states.items()}
        self.spare = {name: ort.OrtValue.ortvalue_from_numpy(np.zeros_like(value)) for name, value in states.items()}

    def step(self) -> list[np.ndarray]:
        for i, name in enumerate(self.states):
            self.binding.bind_ortvalue_input(name, self.states[name])
            self.binding.bind_output(f"y{i}", "cpu")
            if self.mode == "fresh":
                self.binding.bind_output(f"o{i}", "cpu")
            else:
                self.binding.bind_ortvalue_output(f"o{i}", self.states[name] if self.mode == "in place" else
                                                  self.spare[name])
        self.session.run_with_iobinding(self.binding)
        outputs = self.binding.get_outputs()
        for i, name in enumerate(list(self.states)):
            if self.mode == "fresh":
                self.states[name] = outputs[2 * i + 1]
            elif self.mode == "ping-pong":
                self.states[name], self.spare[name] = self.spare[name], self.states[name]
        return [outputs[2 * i].numpy() for i in range(LAYERS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    print(f"{LAYERS} nodes, one token, {args.threads} threads, medians of {args.r} calls\n")
    print("| operator | states | ms per call | x fresh | outputs and states as fresh |")
    print("|---|---|---:|---:|---|")
    for op in ("LinearAttention", "CausalConvWithState"):
        model, feeds, shapes = graph(op)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        start = {name: np.random.default_rng(1).standard_normal(shape, np.float32) for name, shape in shapes.items()}
        steppers = {mode: Stepper(session, feeds, start, mode) for mode in MODES}
        reference = [steppers["fresh"].step() for _ in range(3)]  # also the warm-up
        exact = {mode: all(np.array_equal(a, b) for ref in reference for a, b in zip(ref, s.step(), strict=True))
                 for mode, s in steppers.items() if mode != "fresh"}
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(args.r):
            for mode in MODES[:: 1 if i % 2 == 0 else -1]:
                started = time.perf_counter()
                steppers[mode].step()
                times[mode].append((time.perf_counter() - started) * 1e3)
        fresh = statistics.median(times["fresh"])
        for mode in MODES:
            ms = statistics.median(times[mode])
            same = "yes" if exact.get(mode, True) else "NO"
            print(f"| {op} | {mode} | {ms:.2f} | x{fresh / ms:.2f} | {same if mode != 'fresh' else '-'} |")


if __name__ == "__main__":
    main()
