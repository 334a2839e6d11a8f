"""Inspection: a camera arch over a belt and a sensor that reads each passing part's defect flag.

The sensor reads once, when a part's centre crosses the inspection line, and is wrong at the
layout's false-positive and false-negative rates (seeded per episode). Each reading is an
``inspected`` event; the ground truth is on the part's ``arrived`` event, so quality KPIs come
from the log alone (``twin.events.compute_quality``).
"""

from __future__ import annotations

import numpy as np

from twin.equipment.conveyor import Conveyor
from twin.events import EventLog
from twin.layout import Inspection as InspectionConfig
from twin.parts import Part
from twin.world import World

ARCH_RGBA = (0.2, 0.22, 0.25, 1.0)
ARCH_CLEARANCE = 0.22  # metres between the belt surface and the arch's beam


class InspectionStation:
    """One inspection line over a belt, built once; ``reset`` draws this episode's sensor noise."""

    def __init__(self, world: World, name: str, config: InspectionConfig, conveyor: Conveyor) -> None:
        self.name, self.config, self.conveyor = name, config, conveyor
        along = config.offset
        self.line = conveyor.start() + conveyor.direction * along
        """Centre of the inspection line on the belt surface, world frame."""
        half_w = conveyor.config.width / 2 + 0.04
        h = conveyor.surface_z + ARCH_CLEARANCE
        post, beam = (0.015, 0.015, h / 2), (0.015, half_w + 0.015, 0.015)
        # in the arch's own frame (x along the belt, y across it), turned with the belt below
        boxes = [(post, (0.0, -half_w, h / 2)), (post, (0.0, half_w, h / 2)), (beam, (0.0, 0.0, h))]
        base = [float(self.line[0]), float(self.line[1]), 0.0]
        self.body = world.create_compound(name, boxes, base, rgba=ARCH_RGBA)
        yaw = float(np.arctan2(conveyor.direction[1], conveyor.direction[0]))
        world.p.resetBasePositionAndOrientation(self.body, base, world.p.getQuaternionFromEuler([0, 0, yaw]))
        self._rng = np.random.default_rng(0)
        self.error: float | None = None
        """A sensor fault: while set, each reading is wrong with this chance instead of the layout's rates."""

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = np.random.default_rng(rng.integers(2**63))

    def update(self, t: float, parts: list[Part], log: EventLog) -> None:
        """Read every part on the belt whose centre crossed the line since the last step."""
        d, lx, ly = self.conveyor.direction, self.line[0], self.line[1]
        for part in parts:
            if part.reading is not None or part.conveyor != self.conveyor.name or part.state != "on_conveyor":
                continue
            x, y, _ = part.xyz
            if (x - lx) * d[0] + (y - ly) * d[1] < 0.0:
                continue
            flawed = part.defect is not None
            rate = self.config.false_negative if flawed else self.config.false_positive
            wrong = self._rng.uniform() < (rate if self.error is None else self.error)
            part.reading = "reject" if flawed != wrong else "pass"
            log.add(t, "inspected", part.name, detail=part.reading, station=self.name)
