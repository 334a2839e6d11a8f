"""What things stand on: tables and robot pedestals."""

from __future__ import annotations

import numpy as np

from twin.layout import Table as TableConfig
from twin.world import World


def build_table(world: World, name: str, config: TableConfig) -> int:
    lx, ly, h = config.size
    x, y = config.position
    return world.create_box(name, (lx / 2, ly / 2, h / 2), (x, y, h / 2), rgba=config.color)


def build_pedestal(world: World, name: str, position: np.ndarray) -> int:
    """A column under a robot mounted above the floor."""
    h = float(position[2])
    return world.create_box(name, (0.12, 0.12, h / 2), (position[0], position[1], h / 2), rgba=(0.85, 0.85, 0.85, 1.0))
