"""Trays: a shallow box with a grid of slots, filled with raw parts at reset or filled by the robot."""

from __future__ import annotations

import math

import numpy as np

from twin.equipment.bins import Bin
from twin.layout import Bin as BinConfig
from twin.layout import Tray as TrayConfig
from twin.world import World


class Tray(Bin):
    """A tray: a low-walled bin whose slots say where parts sit at reset and where to set them down."""

    def __init__(self, world: World, name: str, config: TrayConfig) -> None:
        walls = BinConfig(position=config.position, size=config.size, wall=config.wall, color=config.color)
        super().__init__(world, name, walls)
        self.config = config
        self.slots = [np.array([x, y, config.position[2]]) for x, y in config.slots()]
        """Slot centres on the tray floor, world frame, row by row."""

    @property
    def count(self) -> int:
        """Parts put in the tray at reset."""
        if self.config.fill is None:
            return 0
        return self.config.count if self.config.count is not None else len(self.slots)

    def draw_poses(self, rng: np.random.Generator, half_height: float) -> list[tuple[list[float], float]]:
        """Seeded (position, yaw in radians) of the parts put in the tray at reset."""
        cfg = self.config
        n = self.count
        dxy = rng.uniform(-cfg.jitter, cfg.jitter, size=(n, 2))
        yaw = np.radians(rng.uniform(-cfg.yaw_jitter, cfg.yaw_jitter, size=n))
        return [
            ([float(s[0] + d[0]), float(s[1] + d[1]), float(s[2] + half_height + 0.001)], float(y))
            for s, d, y in zip(self.slots, dxy, yaw, strict=False)
        ]

    def free_slot(self, occupied: list[tuple[float, float, float]]) -> np.ndarray:
        """The first slot no part in ``occupied`` sits in (the first slot when all are taken)."""
        pitch = min(self.config.size[0] / self.config.grid[0], self.config.size[1] / self.config.grid[1])
        for s in self.slots:
            if all(math.hypot(s[0] - q[0], s[1] - q[1]) > pitch / 2 for q in occupied):
                return s
        return self.slots[0]
