"""Networks shared by the agents, the observation normaliser, and the exportable policy."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(
    n_in: int,
    n_out: int,
    width: int,
    depth: int,
    act: type[nn.Module] = nn.ReLU,
    out_gain: float = 1.0,
    layer_norm: bool = False,
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, orthogonal initialisation (CleanRL's habit).

    ``layer_norm``: LayerNorm after each hidden layer's linear map (RLPD's critics: it keeps
    value estimates from extrapolating wildly beyond the data, demonstrations included)."""
    layers: list[nn.Module] = []
    n = n_in
    for _ in range(depth):
        lin = nn.Linear(n, width)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.LayerNorm(width), act()] if layer_norm else [lin, act()]
        n = width
    out = nn.Linear(n, n_out)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """``n`` networks of ``mlp``'s shape trained side by side, their weights stacked: each layer is
    one batched matrix product (``baddbmm``) for all of them, not ``n`` small ones.

    Input ``[B, n_in]`` (the same batch for every member) or ``[n, B, n_in]``; output
    ``[n, B, n_out]``. Each member is initialised as ``mlp`` initialises one (orthogonal, gain
    sqrt(2) in the hidden layers, ``out_gain`` at the output) and, with ``layer_norm``, has its
    own LayerNorm gain and bias after each hidden layer's linear map.
    """

    def __init__(
        self, n: int, n_in: int, n_out: int, width: int, depth: int, out_gain: float = 1.0, layer_norm: bool = False
    ) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"an ensemble needs at least one member, got {n}")
        self.n, self.width, self.layer_norm = n, width, layer_norm
        dims = [n_in, *([width] * depth), n_out]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            gain = out_gain if i == depth else math.sqrt(2)
            w = torch.empty(n, b, a)
            for k in range(n):
                nn.init.orthogonal_(w[k], gain)
            self.weights.append(nn.Parameter(w.transpose(1, 2).contiguous()))  # [n, in, out]
            self.biases.append(nn.Parameter(torch.zeros(n, 1, b)))
        self.ln_gains = nn.ParameterList(
            nn.Parameter(torch.ones(n, 1, width)) for _ in range(depth if layer_norm else 0)
        )
        self.ln_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(n, 1, width)) for _ in range(depth if layer_norm else 0)
        )

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Every member's output, or with ``members`` (indices) only theirs, ``[len(members), B, n_out]``."""
        pick = (lambda t: t) if members is None else (lambda t: t.index_select(0, members))
        n = self.n if members is None else members.shape[0]
        h = x.expand(n, *x.shape) if x.dim() == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(pick(b), h, pick(w))
            if i < last:
                if self.layer_norm:
                    h = F.layer_norm(h, (self.width,)) * pick(self.ln_gains[i]) + pick(self.ln_biases[i])
                h = torch.relu(h)
        return h

    @staticmethod
    def stack_state(members: list[dict[str, torch.Tensor]], layer_norm: bool) -> dict[str, torch.Tensor]:
        """The state of an ensemble from the states of separate ``mlp`` networks (one per member),
        as runs saved before the critics were an ensemble hold them."""
        linear = "weight"
        out: dict[str, torch.Tensor] = {}
        first = members[0]
        layers = sorted({int(k.split(".")[0]) for k in first}, key=int)
        lins = [i for i in layers if first[f"{i}.{linear}"].dim() == 2]
        norms = [i for i in layers if first[f"{i}.{linear}"].dim() == 1] if layer_norm else []
        for j, i in enumerate(lins):
            out[f"weights.{j}"] = torch.stack([m[f"{i}.weight"].t() for m in members])
            out[f"biases.{j}"] = torch.stack([m[f"{i}.bias"].unsqueeze(0) for m in members])
        for j, i in enumerate(norms):
            out[f"ln_gains.{j}"] = torch.stack([m[f"{i}.weight"].unsqueeze(0) for m in members])
            out[f"ln_biases.{j}"] = torch.stack([m[f"{i}.bias"].unsqueeze(0) for m in members])
        return out


class RunningNorm(nn.Module):
    """Running mean and variance of observations; ``forward`` standardises and clips to +-``clip``,
    dividing by at least ``min_std`` (a floor on the spread of features that hardly vary).

    Statistics update only through ``update()``, which training calls; evaluation and exported
    policies use them frozen. They are buffers, so they travel with the model's weights.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8, min_std: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(eps, dtype=torch.float64))
        self.clip, self.eps, self.min_var = clip, eps, min_std * min_std

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        b_mean, b_var, b_n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        mean, var, n = self.mean.double(), self.var.double(), self.count
        tot = n + b_n
        delta = b_mean - mean
        new_mean = mean + delta * b_n / tot
        m2 = var * n + b_var * b_n + delta.square() * n * b_n / tot
        self.mean.copy_(new_mean.float())
        self.var.copy_((m2 / tot).float())
        self.count.copy_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = self.var.clamp(min=self.min_var) if self.min_var > 0 else self.var
        return ((x - self.mean) / torch.sqrt(var + self.eps)).clamp(-self.clip, self.clip)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ActionScale(nn.Module):
    """Maps [-1, 1] to the env's action bounds."""

    def __init__(self, low, high) -> None:
        super().__init__()
        low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_range * u


class DeterministicPolicy(nn.Module):
    """The acting policy of any of the agents: normalise, run the actor, map to the action bounds.

    Input: float32 ``[batch, flatdim]`` flat observations. Output: float32 ``[batch, A]`` actions
    in the env's units. This is the module exported to ONNX.

    Args:
        norm: The observation normaliser (or Identity).
        actor: Network from normalised observations to pre-squash actions.
        scale: Bounds mapping.
        squash: ``"tanh"`` (SAC, BC) or ``"clip"`` (PPO's Gaussian mean, clipped to [-1, 1]).
    """

    def __init__(self, norm: nn.Module, actor: nn.Module, scale: ActionScale, squash: str) -> None:
        super().__init__()
        self.norm, self.actor, self.scale, self.squash = norm, actor, scale, squash

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        u = self.actor(self.norm(obs))
        u = torch.tanh(u) if self.squash == "tanh" else u.clamp(-1.0, 1.0)
        return self.scale(u)
