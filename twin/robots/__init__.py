"""Robot arms, one module per model; each keeps its own numbers (reach, home, limits, tool offsets)."""

from __future__ import annotations

import math

from twin.robots import panda
from twin.robots.panda import Panda

_REACH = {"panda": (panda.SHOULDER_HEIGHT, panda.REACH)}
"""Per model: the shoulder's height above the base and the reach from it, metres."""


def can_reach(model: str, base: tuple[float, float, float], point: tuple[float, float, float]) -> bool:
    """Whether an arm of ``model`` on ``base`` can bring its tool, pointing down, to ``point``."""
    shoulder, reach = _REACH[model]
    return math.dist((base[0], base[1], base[2] + shoulder), point) <= reach


__all__ = ["Panda", "can_reach"]
