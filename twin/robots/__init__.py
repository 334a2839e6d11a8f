"""Robots, one module per model with all of its numbers.

Arms (``panda``, ``iiwa``: an ``ArmSpec`` each, one ``Arm`` class drives them all), the AGV
(``agv``) and the wafer-handling robot (``wafer_robot``), each with its URDF generator and driver.
"""

from __future__ import annotations

import math

from twin.layout import Robot as RobotConfig
from twin.robots import iiwa, panda
from twin.robots.arm import Arm, ArmSpec
from twin.world import World

MODELS: dict[str, ArmSpec] = {s.model: s for s in (panda.SPEC, iiwa.SPEC)}
"""Arm models by the layout's ``model`` name."""


def build_arm(world: World, name: str, config: RobotConfig) -> Arm:
    """The layout's robot entry, built in ``world``."""
    return Arm(world, name, config, MODELS[config.model])


def can_reach(model: str, base: tuple[float, float, float], point: tuple[float, float, float]) -> bool:
    """Whether an arm of ``model`` on ``base`` can bring its tool, pointing down, to ``point``."""
    spec = MODELS[model]
    dx, dy = point[0] - base[0], point[1] - base[1]
    out = math.hypot(dx, dy)
    pull = min(spec.wrist_out, out) / out if out > 0 else 0.0  # wrist centre: back towards the base ...
    wrist = (point[0] - dx * pull, point[1] - dy * pull, point[2] + spec.wrist_drop)  # ... and up
    return spec.min_reach <= math.dist((base[0], base[1], base[2] + spec.shoulder_height), wrist) <= spec.reach


def reach_coverage(
    model: str, base: tuple[float, float, float], low: tuple[float, ...], high: tuple[float, ...], n: int = 11
) -> float:
    """Share of the box ``low``-``high`` (by volume) that ``can_reach`` accepts: the centres of an
    ``n``^3 grid of equal cells."""
    axes = [[lo + (hi - lo) * (i + 0.5) / n for i in range(n)] for lo, hi in zip(low, high, strict=True)]
    hits = sum(can_reach(model, base, (x, y, z)) for x in axes[0] for y in axes[1] for z in axes[2])
    return hits / n**3


__all__ = ["MODELS", "Arm", "ArmSpec", "build_arm", "can_reach", "reach_coverage"]
