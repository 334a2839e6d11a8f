"""Parts: a pool of bodies built once, and the seeded arrival schedule of an episode."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from twin.layout import Feeder as FeederConfig
from twin.layout import Part as PartConfig
from twin.world import World

PartState = Literal["parked", "queued", "on_conveyor", "held", "loose", "placed", "missed", "lost"]
TERMINAL: frozenset[str] = frozenset({"placed", "missed", "lost"})
PARKING = np.array([20.0, 20.0, -1.0])  # off-stage, below the floor, for parts not in play


def park(world: World, part: Part) -> None:
    """Take a part out of play: it collides with nothing, so it leaves no contact history behind."""
    world.p.setCollisionFilterGroupMask(part.id, -1, 0, 0)


def unpark(world: World, part: Part) -> None:
    world.p.setCollisionFilterGroupMask(part.id, -1, 1, -1)


@dataclass
class Part:
    """One part body and where it is in its life cycle."""

    name: str
    id: int
    spec: PartConfig
    park: np.ndarray
    state: PartState = "parked"
    arrival_time: float = math.inf
    arrival_pose: tuple[np.ndarray, np.ndarray] | None = None
    conveyor: str = ""
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    drop_logged: bool = False
    world: World | None = field(default=None, repr=False, compare=False)
    _vel: np.ndarray = field(default_factory=lambda: np.zeros(3), repr=False, compare=False)
    _vel_step: int = field(default=-1, repr=False, compare=False)

    @property
    def vel(self) -> np.ndarray:
        """Linear velocity (world frame), read from the physics at most once per step, when asked for."""
        w = self.world
        if w is not None and self._vel_step != w.steps and self.in_play:
            self._vel = np.array(w.p.getBaseVelocity(self.id)[0])
            self._vel_step = w.steps
        return self._vel

    @vel.setter
    def vel(self, value: np.ndarray) -> None:
        self._vel = np.asarray(value, dtype=float)
        self._vel_step = self.world.steps if self.world is not None else -1

    @property
    def in_play(self) -> bool:
        return self.state in ("on_conveyor", "held", "loose")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def build_pool(world: World, specs: list[PartConfig], per_type: int) -> list[Part]:
    """Create ``per_type`` bodies of each part spec, parked off-stage."""
    pool = []
    for ti, spec in enumerate(specs):
        for k in range(per_type):
            name = f"part-{spec.name}-{k}"
            spot = PARKING + np.array([0.3 * k, 0.3 * ti, 0.0])
            if spec.shape == "box":
                half = [s / 2 for s in spec.size]
                body = world.create_box(name, half, spot, mass=spec.mass, rgba=spec.color, friction=spec.friction)
            else:
                body = world.create_cylinder(
                    name,
                    spec.size[0] / 2,
                    spec.size[1],
                    spot,
                    mass=spec.mass,
                    rgba=spec.color,
                    friction=spec.friction,
                )
            world.p.changeDynamics(body, -1, spinningFriction=0.001, rollingFriction=0.0001)
            pool.append(Part(name=name, id=body, spec=spec, park=spot, world=world))
            park(world, pool[-1])
    return pool


@dataclass(frozen=True)
class Arrival:
    t: float
    part_type: str
    lateral: float
    yaw: float
    """Radians."""


def schedule(feeder: FeederConfig, rng: np.random.Generator) -> list[Arrival]:
    """Seeded arrival times, part types, lateral offsets and yaws for one episode."""
    n = feeder.parts_per_episode
    names = sorted(feeder.mix)
    weights = np.array([feeder.mix[k] for k in names], dtype=float)
    first = rng.uniform(*feeder.first_arrival)
    gaps = rng.uniform(*feeder.interval, size=n - 1)
    times = np.concatenate([[first], first + np.cumsum(gaps)])
    kinds = rng.choice(len(names), size=n, p=weights / weights.sum())
    lateral = rng.uniform(-feeder.lateral_jitter, feeder.lateral_jitter, size=n)
    yaw = np.radians(rng.uniform(-feeder.yaw_jitter, feeder.yaw_jitter, size=n))
    return [
        Arrival(float(t), names[k], float(la), float(y)) for t, k, la, y in zip(times, kinds, lateral, yaw, strict=True)
    ]
