"""Bins: an open box parts are dropped into, and what lies in it."""

from __future__ import annotations

import numpy as np

from twin.layout import Bin as BinConfig
from twin.world import World


class Bin:
    """An open box parts are placed into."""

    def __init__(self, world: World, name: str, config: BinConfig) -> None:
        self.name = name
        self.config = config
        lx, ly, h = config.size
        w = config.wall
        hx, hy = lx / 2, ly / 2
        boxes = [
            ((hx + w, hy + w, w / 2), (0, 0, -w / 2)),
            ((w / 2, hy + w, h / 2), (hx + w / 2, 0, h / 2)),
            ((w / 2, hy + w, h / 2), (-hx - w / 2, 0, h / 2)),
            ((hx, w / 2, h / 2), (0, hy + w / 2, h / 2)),
            ((hx, w / 2, h / 2), (0, -hy - w / 2, h / 2)),
        ]
        self.id = world.create_compound(name, boxes, config.position, rgba=config.color)
        self.center = np.asarray(config.position, dtype=float)
        self.half = (hx, hy)
        """Half extents of the opening (x, y), metres."""
        self.height = h
        self._center_list = self.center.tolist()

    def contains(self, pos, margin: float = 0.0) -> bool:
        """Whether ``pos`` lies inside the bin's inner volume (below the rim)."""
        cx, cy, cz = self._center_list
        hx, hy = self.half
        return (
            abs(pos[0] - cx) <= hx - margin and abs(pos[1] - cy) <= hy - margin and -0.01 <= pos[2] - cz <= self.height
        )

    def above(self, pos) -> bool:
        """Whether ``pos`` is over the bin opening (at any height)."""
        cx, cy, _ = self._center_list
        hx, hy = self.half
        return abs(pos[0] - cx) <= hx and abs(pos[1] - cy) <= hy
