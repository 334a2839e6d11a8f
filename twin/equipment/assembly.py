"""Assembly: a peg-in-hole station, a block with a chamfered square hole and the peg to insert.

The hole is real collision geometry (four walls, the rim widened in three steps for the
chamfer), so an insertion succeeds or jams through contact alone. The station measures the
contact force between peg and block every step (``jammed`` events above the jam force) and logs
an ``inserted`` event when the peg's tip first reaches the required depth.
"""

from __future__ import annotations

import math

import numpy as np

from twin.events import EventLog
from twin.layout import Insertion as InsertionConfig
from twin.layout import Part as PartConfig
from twin.parts import Part
from twin.world import World

BLOCK_RGBA = (0.55, 0.58, 0.62, 1.0)  # machined aluminium
PEG_RGBA = (0.85, 0.55, 0.12, 1.0)  # brass
CHAMFER_STEPS = 3


def peg_spec(index: int, config: InsertionConfig) -> PartConfig:
    """The peg of insertion ``index`` as a part of the cell."""
    w = config.peg_width
    return PartConfig(
        name=f"peg_{index}",
        shape="box",
        size=(w, w, config.peg_length),
        mass=config.peg_mass,
        color=PEG_RGBA,
        friction=0.6,
    )


def _walls(block: tuple[float, float, float], opening: float, z0: float, z1: float) -> list:
    """Four boxes (half extents, centre) around a square ``opening`` between heights z0 and z1."""
    lx, ly = block[0] / 2, block[1] / 2
    o, dz, zc = opening / 2, (z1 - z0) / 2, (z0 + z1) / 2
    return [
        (((lx - o) / 2, ly, dz), ((lx + o) / 2, 0.0, zc)),
        (((lx - o) / 2, ly, dz), (-(lx + o) / 2, 0.0, zc)),
        ((o, (ly - o) / 2, dz), (0.0, (ly + o) / 2, zc)),
        ((o, (ly - o) / 2, dz), (0.0, -(ly + o) / 2, zc)),
    ]


class PegHole:
    """One peg-in-hole station, built once; ``reset`` moves the block by its seeded jitter."""

    def __init__(self, world: World, name: str, config: InsertionConfig, peg: Part) -> None:
        self.world, self.name, self.config, self.peg = world, name, config, peg
        h, c, hole = config.block[2], config.chamfer, config.hole_width
        steps = CHAMFER_STEPS if c > 0 else 0
        boxes = _walls(config.block, hole, 0.0, h - c)
        for k in range(steps):
            z0 = h - c + k * c / steps
            boxes += _walls(config.block, hole + 2 * c * (k + 1) / steps, z0, z0 + c / steps)
        self.base = np.array(config.position, dtype=float)
        self.body = world.create_compound(name, boxes, self.base, rgba=BLOCK_RGBA, friction=0.3)
        self.top_z = float(self.base[2] + h)
        self.hole_xy = (float(self.base[0]), float(self.base[1]))
        self.peak_force = 0.0
        self._jammed = False
        self.inserted_at = math.inf
        self._pose_cache: tuple | None = None
        self._force_cache: tuple | None = None
        bx, by, bz = config.block
        w, length = config.peg_width, config.peg_length
        self._reach = 0.5 * (math.sqrt(bx * bx + by * by + bz * bz) + math.sqrt(2 * w * w + length * length)) + 0.01
        """Distance between the peg's and the block's centres beyond which they cannot touch."""

    def reset(self, rng: np.random.Generator) -> None:
        j = self.config.jitter
        dx, dy = rng.uniform(-j, j, size=2)
        x, y, z = self.base
        self.hole_xy = (float(x + dx), float(y + dy))
        self.world.p.resetBasePositionAndOrientation(self.body, [*self.hole_xy, z], [0, 0, 0, 1])
        self.peak_force, self._jammed, self.inserted_at = 0.0, False, math.inf
        self._pose_cache = self._force_cache = None

    @property
    def hole_top(self) -> tuple[float, float, float]:
        """Centre of the hole's mouth, world frame."""
        return (*self.hole_xy, self.top_z)

    def _pose(self) -> tuple[tuple[float, float, float], tuple[float, ...]]:
        """The peg's position and rotation matrix, read from the physics at most once per step."""
        c = self._pose_cache
        if c is None or c[0] != self.world.steps:
            p = self.world.p
            pos, orn = p.getBasePositionAndOrientation(self.peg.id)
            c = self._pose_cache = (self.world.steps, pos, p.getMatrixFromQuaternion(orn))
        return c[1], c[2]

    def peg_tip(self) -> tuple[float, float, float]:
        """The peg's lower face centre, world frame (the end that goes in)."""
        pos, m = self._pose()
        half = self.config.peg_length / 2
        return (pos[0] - m[2] * half, pos[1] - m[5] * half, pos[2] - m[8] * half)

    def tilt(self) -> float:
        """Angle (radians) between the peg's axis and the vertical."""
        return math.acos(max(-1.0, min(1.0, self._pose()[1][8])))

    def depth(self) -> float:
        """How far (metres) the peg's tip is below the block's top face inside the hole (0 outside it)."""
        x, y, z = self.peg_tip()
        mouth = self.config.hole_width / 2 + self.config.chamfer
        if abs(x - self.hole_xy[0]) > mouth or abs(y - self.hole_xy[1]) > mouth:
            return 0.0
        return max(0.0, self.top_z - z)

    def contact_force(self) -> float:
        """Newtons of normal force between peg and block now (read once per step)."""
        c = self._force_cache
        if c is None or c[0] != self.world.steps:
            pos, _ = self._pose()
            centre = (*self.hole_xy, self.top_z - self.config.block[2] / 2)
            if math.dist(pos, centre) > self._reach:  # bounding spheres apart: no contact to read
                force = 0.0
            else:
                force = sum(q[9] for q in self.world.p.getContactPoints(self.peg.id, self.body))
            c = self._force_cache = (self.world.steps, force)
        return c[1]

    def over(self, pos) -> bool:
        """Whether ``pos`` lies over the hole's mouth (at any height)."""
        mouth = self.config.hole_width / 2 + self.config.chamfer
        return abs(pos[0] - self.hole_xy[0]) <= mouth and abs(pos[1] - self.hole_xy[1]) <= mouth

    def holds(self, pos) -> bool:
        """Whether a part centred at ``pos`` stands in the hole."""
        mouth = self.config.hole_width / 2
        return abs(pos[0] - self.hole_xy[0]) <= mouth and abs(pos[1] - self.hole_xy[1]) <= mouth and pos[2] < self.top_z

    def update(self, t: float, log: EventLog) -> None:
        """Peak force, jams (rising edges above the jam force) and the first insertion to depth."""
        if self.peg.state not in ("held", "loose", "stored", "placed"):
            return
        force = self.contact_force()
        self.peak_force = max(self.peak_force, force)
        jam = force > self.config.jam_force
        if jam and not self._jammed:
            over = force > self.config.force_limit
            log.add(t, "jammed", self.peg.name, detail="over the force limit" if over else "", station=self.name)
        self._jammed = jam
        if self.inserted_at == math.inf and self.depth() >= self.config.depth:
            self.inserted_at = t
            log.add(t, "inserted", self.peg.name, station=self.name)
