"""Observation handling shared by the agents: which spaces they accept and how they flatten them.

Agents see every observation as one float32 vector, the observation flattened with
``gymnasium.spaces.flatten``: a Box is reshaped, a Dict of Boxes is concatenated in the space's
key order (Gymnasium sorts Dict keys, so a goal dict flattens as achieved_goal, desired_goal,
observation). This is the ``obs`` input of exported ONNX policies too. Images (uint8 Boxes of
shape (H, W, 3), alone or in a Dict) flatten the same way, channels last, 0 to 255;
``ImageLayout`` says where they lie in the vector (``agents.common.vision`` reads them out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

GOAL_KEYS = ("achieved_goal", "desired_goal", "observation")


class UnsupportedSpaceError(ValueError):
    """An env whose spaces the agents cannot handle (with the reason)."""


def check_spaces(obs_space: spaces.Space, act_space: spaces.Space) -> None:
    """Raise UnsupportedSpaceError unless observations are a Box or a Dict of Boxes (1-D float
    vectors, or uint8 RGB images) and actions a bounded 1-D Box."""
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise UnsupportedSpaceError(f"actions must be a 1-D Box, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UnsupportedSpaceError(f"the action Box must be bounded, got low={act_space.low} high={act_space.high}")
    if isinstance(obs_space, spaces.Box):
        if obs_space.dtype == np.uint8 or len(obs_space.shape) > 1:
            if obs_space.dtype != np.uint8:
                raise UnsupportedSpaceError(f"observations must be a 1-D Box or uint8 images, got {obs_space}")
            check_image_space("obs", obs_space)
        return
    if isinstance(obs_space, spaces.Dict):
        for key, sub in obs_space.spaces.items():
            if isinstance(sub, spaces.Box) and sub.dtype == np.uint8 and len(sub.shape) > 1:
                check_image_space(key, sub)
            elif not isinstance(sub, spaces.Box) or sub.dtype == np.uint8 or len(sub.shape) != 1:
                raise UnsupportedSpaceError(
                    f"observation[{key!r}] must be a 1-D float Box or a uint8 image (H, W, 3), got {sub}"
                )
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


# -- images -----------------------------------------------------------------------------------

IMAGE_SIDES = (32, 256)
"""The image sides (pixels) the encoder takes, as the envs render them."""


@dataclass(frozen=True)
class Camera:
    key: str
    start: int
    height: int
    width: int
    channels: int = 3
    """3 per frame: RGB, or the last frames' RGB stacked, oldest first (the env's ``frames``)."""

    @property
    def size(self) -> int:
        return self.height * self.width * self.channels


@dataclass(frozen=True)
class ImageLayout:
    """Where the cameras' pixels lie in a flat observation of ``dim`` numbers."""

    cameras: tuple[Camera, ...]
    dim: int

    @property
    def pixel_mask(self) -> np.ndarray:
        mask = np.zeros(self.dim, dtype=bool)
        for c in self.cameras:
            mask[c.start : c.start + c.size] = True
        return mask

    @property
    def vector_dim(self) -> int:
        return self.dim - sum(c.size for c in self.cameras)

    def describe(self) -> list[dict[str, Any]]:
        """The ONNX ``obs`` contract: each camera's slice of the flat input."""
        return [
            {
                "camera": c.key,
                "offset": c.start,
                "shape": [c.height, c.width, c.channels],
                "order": "HWC, RGB" if c.channels == 3 else f"HWC, RGB of {c.channels // 3} frames, oldest first",
                "range": [0, 255],
            }
            for c in self.cameras
        ]


def _is_image(desc: dict[str, Any]) -> bool:
    return desc.get("type") == "Box" and desc.get("dtype") == "uint8" and len(desc.get("shape") or ()) == 3


def image_layout(space: spaces.Space | dict[str, Any]) -> ImageLayout | None:
    """The layout of a Dict space's (or its JSON description's) images; None without images."""
    desc = describe(space) if isinstance(space, spaces.Space) else space
    if _is_image(desc):  # an env whose whole observation is one image
        shape = desc["shape"]
        return ImageLayout((Camera("obs", 0, int(shape[0]), int(shape[1]), int(shape[2])),), int(np.prod(shape)))
    if desc.get("type") != "Dict":
        return None
    cams, start = [], 0
    for key, sub in desc["spaces"].items():
        shape = list(sub.get("shape") or [])
        if _is_image(sub):
            cams.append(Camera(key, start, int(shape[0]), int(shape[1]), int(shape[2])))
        start += int(np.prod(shape)) if shape else 0
    return ImageLayout(tuple(cams), start) if cams else None


def image_keys(space: spaces.Space) -> list[str]:
    """The observation keys that hold images."""
    layout = image_layout(space)
    return [c.key for c in layout.cameras] if layout is not None else []


def check_image_space(key: str, space: spaces.Box) -> None:
    """Raise ValueError unless ``space`` is an image the encoder takes (naming the observation key)."""
    shape = space.shape
    if len(shape) != 3 or shape[2] % 3 or not 3 <= shape[2] <= 24:
        raise UnsupportedSpaceError(
            f"observation[{key!r}]: images must be (height, width, 3) RGB, channels last (or 1 to 8 such frames "
            f"stacked), got shape {shape}"
        )
    lo, hi = IMAGE_SIDES
    if not (lo <= shape[0] <= hi and lo <= shape[1] <= hi):
        raise UnsupportedSpaceError(
            f"observation[{key!r}]: images must be {lo} to {hi} pixels a side, got {shape[0]}x{shape[1]}"
        )
