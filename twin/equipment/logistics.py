"""A logistics floor's equipment: walls, racks, roller stations that hand totes over, and people."""

from __future__ import annotations

import math

import numpy as np

from twin.layout import Person as PersonConfig
from twin.layout import Rack as RackConfig
from twin.layout import Station as StationConfig
from twin.layout import Wall as WallConfig
from twin.world import World

WALL_RGBA = (0.78, 0.79, 0.8, 1.0)
RACK_RGBA = (0.15, 0.3, 0.6, 1.0)  # upright-frame blue
SHELF_RGBA = (0.95, 0.55, 0.1, 1.0)  # beam orange
ROLLER_RGBA = (0.55, 0.57, 0.6, 1.0)
FRAME_RGBA = (0.2, 0.45, 0.25, 1.0)
PERSON_RGBA = (0.95, 0.85, 0.1, 1.0)  # hi-vis vest
BED = 0.04  # roller bed thickness, metres
GUIDE = 0.04  # side guides' height above the rollers, metres
_ZERO3 = (0.0, 0.0, 0.0)


def build_wall(world: World, name: str, config: WallConfig) -> int:
    (x, y), (hx, hy), yaw = config.footprint()
    orn = world.p.getQuaternionFromEuler([0, 0, math.radians(yaw)])
    return world.create_box(name, (hx, hy, config.height / 2), (x, y, config.height / 2), orn, rgba=WALL_RGBA)


def build_rack(world: World, name: str, config: RackConfig) -> int:
    """A solid rack (its collision is its whole block) drawn with orange shelf beams."""
    (x, y), (hx, hy), yaw = config.footprint()
    h = config.size[2]
    orn = world.p.getQuaternionFromEuler([0, 0, math.radians(yaw)])
    body = world.create_box(name, (hx, hy, h / 2), (x, y, h / 2), orn, rgba=RACK_RGBA)
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    for k, z in enumerate(np.arange(0.5, h, 0.6)):
        for side in (-1, 1):
            bx, by = x - s * side * (hy + 0.005), y + c * side * (hy + 0.005)
            world.create_box(
                f"{name}-beam-{k}-{side}", (hx, 0.005, 0.04), (bx, by, z), orn, rgba=SHELF_RGBA, collision=False
            )
    return body


class ToteStation:
    """A roller-conveyor station (see the layout's ``Station``).

    The roller bed is a static body given a surface velocity while it runs, as a conveyor's belt
    is: the contact solver then carries a tote on it by friction. Side guides keep the tote on the
    bed; a stop at the far end holds it there.
    """

    def __init__(self, world: World, name: str, config: StationConfig) -> None:
        self.world, self.name, self.config = world, name, config
        yaw = math.radians(config.yaw)
        self.axis = (math.cos(yaw), math.sin(yaw))
        self.orn = world.p.getQuaternionFromEuler([0, 0, yaw])
        x, y = config.position
        hl, hw = config.length / 2, config.width / 2
        self.center = [x, y, config.height - BED / 2]
        self.id = world.create_box(
            name, (hl, hw + 0.03, BED / 2), self.center, self.orn, rgba=ROLLER_RGBA, friction=0.8
        )
        frame = [
            ((hl, 0.015, GUIDE / 2 + 0.02), (0.0, s * (hw + 0.015), config.height + GUIDE / 2 - 0.02)) for s in (-1, 1)
        ]
        frame.append(((0.015, hw + 0.03, GUIDE), (-hl - 0.015, 0.0, config.height + GUIDE - 0.01)))  # far-end stop
        frame += [
            ((0.03, 0.03, (config.height - BED) / 2), (sx * (hl - 0.05), sy * (hw - 0.02), (config.height - BED) / 2))
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        self.frame = world.create_compound(f"{name}-frame", frame, (x, y, 0.0), rgba=FRAME_RGBA)
        world.p.resetBasePositionAndOrientation(self.frame, [x, y, 0.0], self.orn)
        self.speed = 0.0
        self.jammed = False
        """A jam: the rollers stand still whatever they are told while this is on."""
        self._home = list(self.center)

    def run(self, speed: float) -> None:
        """Run the rollers at ``speed`` m/s towards the dock end (negative: away from it); 0 stops them."""
        self.speed = speed

    def pre_step(self, dt: float) -> None:
        speed = 0.0 if self.jammed else self.speed
        v = [speed * self.axis[0], speed * self.axis[1], 0.0]
        home = [
            self.center[0] - v[0] * dt / 2,
            self.center[1] - v[1] * dt / 2,
            self.center[2],
        ]  # creeps through the centre
        self.world.p.resetBasePositionAndOrientation(self.id, home, self.orn)
        self.world.p.resetBaseVelocity(self.id, v, _ZERO3)

    def along(self, xy) -> tuple[float, float]:
        """A floor point in the station's frame: metres along the rollers from the bed's centre
        (positive towards the dock end) and across them."""
        dx, dy = xy[0] - self.config.position[0], xy[1] - self.config.position[1]
        return dx * self.axis[0] + dy * self.axis[1], -dx * self.axis[1] + dy * self.axis[0]

    def on_bed(self, xyz, half_length: float) -> bool:
        """Whether a tote centred at ``xyz`` lies wholly on the rollers."""
        a, c = self.along(xyz)
        return (
            abs(a) <= self.config.length / 2 - half_length + 0.06
            and abs(c) <= self.config.width / 2
            and abs(xyz[2] - self.config.height) < 0.2
        )

    def slot(self, half_length: float, half_height: float) -> tuple[list[float], list[float]]:
        """Where a tote arriving at the station is put: against the far-end stop."""
        c = self.config
        a = -c.length / 2 + half_length + 0.01
        xyz = [c.position[0] + a * self.axis[0], c.position[1] + a * self.axis[1], c.height + half_height + 0.002]
        return xyz, list(self.orn)


class Walker:
    """A person walking back and forth along a path at a seeded pace, a kinematic cylinder that
    does not give way (collisions with it are the AGV's)."""

    def __init__(self, world: World, name: str, config: PersonConfig) -> None:
        self.world, self.name, self.config = world, name, config
        self.points = np.asarray(config.path, dtype=np.float64)
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.total = float(self.cum[-1])
        p = world.p
        col = p.createCollisionShape(p.GEOM_CYLINDER, radius=config.radius, height=config.height)
        vis = p.createVisualShapeArray(
            [p.GEOM_CYLINDER, p.GEOM_SPHERE],
            radii=[config.radius, config.radius * 0.6],
            lengths=[config.height - 0.3, 0.0],
            rgbaColors=[list(PERSON_RGBA), [0.85, 0.65, 0.5, 1.0]],
            visualFramePositions=[[0, 0, -0.15], [0, 0, config.height / 2 - 0.12]],
        )
        self.id = p.createMultiBody(0.0, col, vis, [*self.points[0], config.height / 2])
        world._register(name, self.id)
        self.s, self.direction, self.speed, self.wait = 0.0, 1, 1.0, 0.0
        self.xy = tuple(self.points[0])
        self.velocity = (0.0, 0.0)

    def reset(self, rng: np.random.Generator) -> None:
        c = self.config
        self.speed = float(rng.uniform(*c.speed))
        self.s = float(rng.uniform(0.0, self.total))
        self.direction = 1 if rng.random() < 0.5 else -1
        self.wait = 0.0
        self.velocity = (0.0, 0.0)  # as a tracker sees a person on its first frame
        self._place()

    def step(self, dt: float, rng: np.random.Generator) -> None:
        if self.wait > 0:
            self.wait -= dt
            self.velocity = (0.0, 0.0)
            return
        s = self.s + self.direction * self.speed * dt
        if s >= self.total or s <= 0.0:
            s = min(max(s, 0.0), self.total)
            self.direction = -self.direction
            self.wait = float(rng.uniform(*self.config.pause))
        before = self.xy
        self.s = s
        self._place()
        self.velocity = ((self.xy[0] - before[0]) / dt, (self.xy[1] - before[1]) / dt)

    def position_at(self, s: float) -> tuple[float, float]:
        k = int(np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.points) - 2))
        t = (s - self.cum[k]) / max(self.cum[k + 1] - self.cum[k], 1e-9)
        a, b = self.points[k], self.points[k + 1]
        return float(a[0] + t * (b[0] - a[0])), float(a[1] + t * (b[1] - a[1]))

    def _place(self) -> None:
        self.xy = self.position_at(self.s)
        self.world.p.resetBasePositionAndOrientation(self.id, [*self.xy, self.config.height / 2], [0, 0, 0, 1])
