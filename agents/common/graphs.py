"""CUDA graphs for the learner: a step captured once and replayed with one launch.

A small network's forward, backward and optimiser steps are a few hundred kernels of a few
microseconds each; launched one by one from Python the GPU mostly waits for the CPU. Captured
as a graph, the whole step is one launch. A captured step reads and writes fixed tensors: its
inputs are copied into them (or sampled on the device inside the graph) and its outputs are
overwritten by the next replay. Where capture fails the step runs eagerly, with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

_SAID: set[str] = set()


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group of ``opt`` to learning rate ``lr``: a tensor rate (the one a
    captured graph reads) refilled in place, a float one replaced."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def capture(
    fn: Callable[[], Any], device: torch.device, warmup: int = 3, note: Callable[[str], None] | None = None
) -> tuple[torch.cuda.CUDAGraph | None, Any, Any]:
    """Run ``fn`` ``warmup`` (>= 1) times on a side stream, then capture one call of it.

    The warm-up calls are real calls (for an update: real updates, which also create the
    optimisers' state); capturing runs nothing. Returns ``(graph, outputs, last warm-up
    output)``: replaying the graph recomputes ``outputs`` in place (they hold nothing before the
    first replay). If capture fails, ``graph`` is None.
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    out = None
    with torch.cuda.stream(side):
        for _ in range(warmup):
            out = fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            captured = fn()
    except Exception as exc:  # an op that cannot be captured: stay eager, and say so
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        message = (
            f"WARNING: CUDA graph capture of {getattr(fn, '__qualname__', 'a step')} failed ({text}); this run "
            f"does that step eagerly, one kernel launch at a time (slower). Set --set cuda_graph=false to "
            f"silence this, or report it."
        )
        if message not in _SAID:  # once per step and cause, loudly: on the console and in the log
            _SAID.add(message)
            logging.getLogger("agents").warning(message)
            if note is not None:
                note(message)
        torch.cuda.synchronize(device)
        return None, None, out
    return graph, captured, out


class BatchedAct:
    """Acting for the envs that are ready: ``fn(x [B, D]) -> tuple of [B, ...] tensors``.

    Eagerly, ``fn`` runs on the ready envs' rows only. With ``graph`` (CUDA), ``fn`` is captured
    once over all ``n`` envs' rows and replayed; the rows of the ready envs are written in and
    their outputs gathered: one launch whatever the batch, at the cost of computing stale rows.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        n: int,
        obs_dim: int,
        device: torch.device,
        graph: bool,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.fn = fn
        self.graph = None
        if graph and device.type == "cuda":
            self.static = torch.zeros((n, obs_dim), device=device)

            def step() -> tuple[torch.Tensor, ...]:
                with torch.no_grad():
                    return fn(self.static)

            self.graph, self.out, _ = capture(step, device, note=note)

    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs for observations ``x`` of the envs ``rows`` (a device index tensor)."""
        if self.graph is None:
            with torch.no_grad():
                return self.fn(x)
        self.static[rows] = x
        self.graph.replay()
        return tuple(o[rows] for o in self.out)
