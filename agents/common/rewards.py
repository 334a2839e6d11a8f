"""Rewards of relabelled goals (HER): on the device where the task declares its reward, else the env's own.

A goal task may declare ``compute_reward`` in a form evaluated with tensor operations (see
``envs.core.Task.goal_reward_spec``). The declaration is checked against the env's own
``compute_reward`` on random goals before it is used. Envs without one (third-party goal envs
such as panda-gym's) keep working: their ``compute_reward`` runs on the host for every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class RewardSpecError(ValueError):
    """A declared goal reward that is malformed or disagrees with the env's ``compute_reward``."""


def device_reward(spec: dict[str, Any]) -> RewardFn:
    """The tensor form of a ``goal_distance`` declaration."""
    if not isinstance(spec, dict) or spec.get("type") != "goal_distance":
        raise RewardSpecError(f"unsupported goal reward declaration {spec!r}: expected type 'goal_distance'")
    kind = spec.get("reward_type")
    if kind not in ("sparse", "dense"):
        raise RewardSpecError(f"goal reward declaration: reward_type must be sparse or dense, got {kind!r}")
    threshold = float(spec.get("threshold", 0.0))

    if kind == "sparse":

        def sparse(achieved: torch.Tensor, desired: torch.Tensor) -> torch.Tensor:
            d = torch.linalg.vector_norm(achieved - desired, dim=-1)
            return -(d > threshold).to(torch.float32)

        return sparse

    def dense(achieved: torch.Tensor, desired: torch.Tensor) -> torch.Tensor:
        return -torch.linalg.vector_norm(achieved - desired, dim=-1).to(torch.float32)

    return dense


def host_reward(env: gym.Env, device: torch.device) -> RewardFn:
    """The env's own ``compute_reward``, called on the host for each batch."""
    fn = env.unwrapped.compute_reward

    def reward(achieved: torch.Tensor, desired: torch.Tensor) -> torch.Tensor:
        r = fn(achieved.cpu().numpy(), desired.cpu().numpy(), {})
        return torch.as_tensor(np.asarray(r, dtype=np.float32), device=device)

    return reward


def check_against_env(fn: RewardFn, env: gym.Env, obs_space: gym.spaces.Dict, samples: int = 512) -> None:
    """Raise RewardSpecError unless ``fn`` gives the env's ``compute_reward`` on random goal pairs."""
    box = obs_space["achieved_goal"]
    rng = np.random.default_rng(0)
    low = np.where(np.isfinite(box.low), box.low, -1.0)
    high = np.where(np.isfinite(box.high), box.high, 1.0)
    scale = rng.uniform(0.01, 1.0, size=(samples, 1))  # near and far pairs
    a = rng.uniform(low, high, size=(samples, *box.shape)).astype(np.float32)
    d = (a + scale * rng.normal(size=a.shape) * 0.1).astype(np.float32)
    want = np.asarray(env.unwrapped.compute_reward(a, d, {}), dtype=np.float32).reshape(-1)
    got = fn(torch.from_numpy(a), torch.from_numpy(d)).cpu().numpy().reshape(-1)
    bad = np.flatnonzero(~np.isclose(got, want, atol=1e-5))
    if len(bad):
        k = int(bad[0])
        raise RewardSpecError(
            f"{env.spec.id if env.spec else type(env.unwrapped).__name__}: its goal_reward_spec() gives {got[k]} "
            f"where its compute_reward gives {want[k]} (achieved {a[k].tolist()}, desired {d[k].tolist()}; "
            f"{len(bad)} of {samples} random goal pairs differ)"
        )


def goal_reward(env: gym.Env, obs_space: gym.spaces.Dict, device: torch.device) -> tuple[RewardFn, bool]:
    """The reward function HER uses for ``env`` and whether it runs on the device."""
    declare = getattr(env.unwrapped, "goal_reward_spec", None)
    spec = declare() if callable(declare) else None
    if spec is None:
        return host_reward(env, device), False
    fn = device_reward(spec)
    check_against_env(fn, env, obs_space)
    return fn, True
