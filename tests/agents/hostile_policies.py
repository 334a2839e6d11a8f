"""ONNX policies that follow the policy contract and misbehave: slow calls, huge allocations.

The costly part hangs off the observation, so onnxruntime cannot fold it away when the session
is built; every call pays it. The action itself is a constant 0 plus 0 times the costly result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _model(path: Path, d_in: int, d_out: int, nodes: list, big: str, inits: list) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    inits = [
        *inits,
        numpy_helper.from_array(np.zeros((d_in, d_out), np.float32), "w"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([1], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Slice", ["obs", "start", "end", "axis1"], ["x"]),  # [batch, 1]
        *nodes,
        helper.make_node("ReduceSum", [big], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["s0"]),
        helper.make_node("MatMul", ["obs", "w"], ["h"]),
        helper.make_node("Add", ["h", "s0"], ["action"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", d_out])],
        inits,
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def slow_policy(path: Path, d_in: int, d_out: int, n: int = 2048, matmuls: int = 8) -> Path:
    """Each call multiplies ``n`` x ``n`` matrices ``matmuls`` times (2 n^3 flops each)."""
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([n, n], np.int64), "shape")
    nodes = [helper.make_node("Expand", ["x", "shape"], ["m0"])]  # batch 1 -> [n, n]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "m0"], [f"m{i + 1}"]))
    return _model(path, d_in, d_out, nodes, f"m{matmuls}", [shape])


def memory_policy(path: Path, d_in: int, d_out: int, gigabytes: float = 6.0) -> Path:
    """Each call materialises a float32 tensor of ``gigabytes`` GB."""
    from onnx import helper, numpy_helper

    cols = 1 << 15
    rows = int(gigabytes * 1e9 / 4 / cols)
    shape = numpy_helper.from_array(np.array([rows, cols], np.int64), "shape")
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["big0"]),
        helper.make_node("Add", ["big0", "big0"], ["big"]),  # touch every page
    ]
    return _model(path, d_in, d_out, nodes, "big", [shape])
