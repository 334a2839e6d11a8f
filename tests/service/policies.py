"""ONNX policies for the service's tests and load run, built with onnx's helpers (no torch).

``reach_policy``: a proportional controller for FactoryReach-v0 (its observation ends with the
goal minus the tool's position), which reaches most goals; ``constant_policy``: a zero action;
the hostile ones come from ``tests/agents/hostile_policies``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REACH_OBS, REACH_ACT = 12, 3


def linear_policy(path: Path, w: np.ndarray, b: np.ndarray | None = None, clip: bool = True) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d_in, d_out = w.shape
    b = np.zeros(d_out, np.float32) if b is None else b
    inits = [numpy_helper.from_array(w.astype(np.float32), "w"), numpy_helper.from_array(b.astype(np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["obs", "w"], ["h"])]
    if clip:
        inits += [
            numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
            numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
        ]
        nodes += [helper.make_node("Add", ["h", "b"], ["z"]), helper.make_node("Clip", ["z", "lo", "hi"], ["action"])]
    else:
        nodes += [helper.make_node("Add", ["h", "b"], ["action"])]
    graph = helper.make_graph(
        nodes,
        "policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", d_out])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def reach_policy(path: Path, gain: float = 10.0) -> Path:
    w = np.zeros((REACH_OBS, REACH_ACT), np.float32)
    w[9:12, :] = gain * np.eye(3)
    return linear_policy(path, w)


def constant_policy(path: Path, value: float = 0.0, d_in: int = REACH_OBS, d_out: int = REACH_ACT) -> Path:
    return linear_policy(path, np.zeros((d_in, d_out), np.float32), np.full(d_out, value, np.float32))


def nan_policy(path: Path) -> Path:
    """Every action is NaN: each episode fails with the policy's fault."""
    return linear_policy(
        path, np.zeros((REACH_OBS, REACH_ACT), np.float32), np.full(REACH_ACT, np.nan, np.float32), clip=False
    )
