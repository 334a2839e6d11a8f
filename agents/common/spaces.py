"""Observation handling shared by the agents: which spaces they accept and how they flatten them.

Agents see every observation as one float32 vector, the observation flattened with
``gymnasium.spaces.flatten``: a Box is reshaped, a Dict of Boxes is concatenated in the space's
key order (Gymnasium sorts Dict keys, so a goal dict flattens as achieved_goal, desired_goal,
observation). This is the ``obs`` input of exported ONNX policies too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

GOAL_KEYS = ("achieved_goal", "desired_goal", "observation")


class UnsupportedSpaceError(ValueError):
    """An env whose spaces the agents cannot handle (with the reason)."""


def check_spaces(obs_space: spaces.Space, act_space: spaces.Space) -> None:
    """Raise UnsupportedSpaceError unless observations are a Box or a Dict of Boxes and actions a bounded Box."""
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise UnsupportedSpaceError(f"actions must be a 1-D Box, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UnsupportedSpaceError(f"the action Box must be bounded, got low={act_space.low} high={act_space.high}")
    if isinstance(obs_space, spaces.Box):
        if obs_space.dtype == np.uint8 or len(obs_space.shape) > 1:
            raise UnsupportedSpaceError(
                f"image observations are not supported by these agents (got {obs_space}); use obs_mode='state'"
            )
        return
    if isinstance(obs_space, spaces.Dict):
        for key, sub in obs_space.spaces.items():
            if not isinstance(sub, spaces.Box) or sub.dtype == np.uint8 or len(sub.shape) != 1:
                raise UnsupportedSpaceError(f"observation[{key!r}] must be a 1-D float Box, got {sub}")
        return
    raise UnsupportedSpaceError(f"observations must be a Box or a Dict of Boxes, got {type(obs_space).__name__}")


def is_goal_space(obs_space: spaces.Space) -> bool:
    return isinstance(obs_space, spaces.Dict) and set(GOAL_KEYS) <= set(obs_space.spaces)


def flatdim(obs_space: spaces.Space) -> int:
    return int(spaces.flatdim(obs_space))


def flatten_batch(obs_space: spaces.Space, obs: Any) -> np.ndarray:
    """Flatten a batch of observations (leading batch axis) to float32 ``[batch, flatdim]``."""
    if isinstance(obs_space, spaces.Dict):
        n = len(next(iter(obs.values())))
        return np.concatenate([np.asarray(obs[k], dtype=np.float32).reshape(n, -1) for k in obs_space.spaces], axis=1)
    obs = np.asarray(obs, dtype=np.float32)
    return obs.reshape(obs.shape[0], -1)


def flatten_one(obs_space: spaces.Space, obs: Any) -> np.ndarray:
    """Flatten a single observation (no batch axis) to float32 ``[flatdim]``."""
    if isinstance(obs, dict):
        return flatten_batch(obs_space, {k: np.asarray(v)[None] for k, v in obs.items()})[0]
    return flatten_batch(obs_space, np.asarray(obs)[None])[0]


def goal_slices(obs_space: spaces.Dict) -> dict[str, slice]:
    """Where each key of a Dict observation lies in the flat vector."""
    out, start = {}, 0
    for key, sub in obs_space.spaces.items():
        n = int(np.prod(sub.shape))
        out[key] = slice(start, start + n)
        start += n
    return out


def describe(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of a space, stored with checkpoints and demos and compared on load."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: describe(v) for k, v in space.spaces.items()}}
    return {"type": type(space).__name__}
