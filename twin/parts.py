"""Parts: a pool of bodies built once, and the seeded arrival schedule of an episode."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pybullet as pb

from twin.layout import Defect as DefectConfig
from twin.layout import Feeder as FeederConfig
from twin.layout import Part as PartConfig
from twin.world import Mark, World

PartState = Literal[
    "parked", "queued", "stored", "on_conveyor", "held", "loose", "on_station", "placed", "missed", "lost"
]
"""``stored``: waiting in an input tray's slot; ``on_station``: at rest on a machine's fixture."""
TERMINAL: frozenset[str] = frozenset({"placed", "missed", "lost"})
IN_PLAY: frozenset[str] = frozenset({"stored", "on_conveyor", "held", "loose", "on_station"})
PARKING = np.array([20.0, 20.0, -1.0])  # off-stage, below the floor, for parts not in play


def park(world: World, part: Part) -> None:
    """Take a part out of play: it collides with nothing and sleeps at its parking spot.

    Without collisions it leaves no contact history behind; asleep, gravity does not carry it
    ever further down while it waits.
    """
    p = world.p
    p.setCollisionFilterGroupMask(part.id, -1, 0, 0)
    p.resetBasePositionAndOrientation(part.id, part.park.tolist(), (0.0, 0.0, 0.0, 1.0))
    p.resetBaseVelocity(part.id, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    p.changeDynamics(part.id, -1, activationState=pb.ACTIVATION_STATE_ENABLE_SLEEPING)
    p.changeDynamics(part.id, -1, activationState=pb.ACTIVATION_STATE_SLEEP)


def unpark(world: World, part: Part) -> None:
    """Bring a part into play: awake, colliding, and kept awake like every other body."""
    p = world.p
    p.changeDynamics(part.id, -1, activationState=pb.ACTIVATION_STATE_WAKE_UP)
    p.changeDynamics(part.id, -1, activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING)
    p.setCollisionFilterGroupMask(part.id, -1, 1, -1)


def _frozen(values: tuple[float, ...]) -> np.ndarray:
    a = np.array(values)
    a.flags.writeable = False  # a copy of the tracked state: writing to it would change nothing
    return a


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
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Position as Python floats, updated every control step while the part is in play."""
    drop_logged: bool = False
    location: str = ""
    """The tray or bin a placed part lies in, or the tray a stored part waits in."""
    defect: str | None = None
    """The defect type this body carries (fixed when it is built), or None for a good part."""
    rest_z: float = 0.0
    """Height of a stored part's centre where it waits (its tray's floor or its stand), metres."""
    reading: str | None = None
    """The inspection sensor's verdict this episode (``pass`` or ``reject``), once inspected."""
    scale: float = 1.0
    """Its size as a multiple of the part type's (fixed when it is built): size randomisation or
    an out-of-spec part."""
    dynamics_changed: bool = False
    """Whether this episode changed its mass or friction (reset puts them back)."""
    out_of_spec: bool = False
    """Whether this episode's part arrives out of specification (a fault)."""
    world: World | None = field(default=None, repr=False, compare=False)
    _pos: tuple[tuple[float, ...], np.ndarray] | None = field(default=None, repr=False, compare=False)
    _vel: tuple[tuple[float, ...], np.ndarray] | None = field(default=None, repr=False, compare=False)
    _vel_t: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False, compare=False)
    _vel_step: int = field(default=-1, repr=False, compare=False)

    @property
    def pos(self) -> np.ndarray:
        """Position (world frame) as a read-only array, made from ``xyz`` when first asked for."""
        if self._pos is None or self._pos[0] is not self.xyz:
            self._pos = (self.xyz, _frozen(self.xyz))
        return self._pos[1]

    @pos.setter
    def pos(self, value) -> None:
        self.xyz = tuple(float(v) for v in value)

    @property
    def vel_xyz(self) -> tuple[float, float, float]:
        """Linear velocity (world frame) as Python floats, read from the physics at most once per step."""
        w = self.world
        if w is not None and self._vel_step != w.steps and self.state in IN_PLAY:
            self._vel_t = w.p.getBaseVelocity(self.id)[0]
            self._vel_step = w.steps
        return self._vel_t

    @property
    def vel(self) -> np.ndarray:
        """Linear velocity (world frame) as a read-only array, read from the physics at most once per step."""
        xyz = self.vel_xyz
        if self._vel is None or self._vel[0] is not xyz:
            self._vel = (xyz, _frozen(xyz))
        return self._vel[1]

    @vel.setter
    def vel(self, value: np.ndarray) -> None:
        self._vel_t = tuple(float(v) for v in value)
        self._vel_step = self.world.steps if self.world is not None else -1

    @property
    def in_play(self) -> bool:
        return self.state in IN_PLAY

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def defective_spec(spec: PartConfig, defect: DefectConfig) -> PartConfig:
    """The part as a body with ``defect`` is built: scaled for ``size``, recoloured for ``color``."""
    if defect.kind == "size":
        s = defect.scale
        return spec.model_copy(update={"size": tuple(v * s for v in spec.size), "mass": spec.mass * s**3})
    if defect.kind == "color":
        return spec.model_copy(update={"color": defect.color})
    return spec


def scaled_spec(spec: PartConfig, scale: float) -> PartConfig:
    """The part ``scale`` times its size (and mass, at the same density)."""
    if scale == 1.0:
        return spec
    return spec.model_copy(update={"size": tuple(v * scale for v in spec.size), "mass": spec.mass * scale**3})


def build_pool(
    world: World,
    counts: list[tuple[PartConfig, int]],
    defects: list[tuple[PartConfig, DefectConfig, int]] = (),
    scaled: list[tuple[PartConfig, DefectConfig | None, int, float]] = (),
) -> list[Part]:
    """Create ``count`` bodies of each part spec, then of each (spec, defect) variant, then of each
    (spec, defect, count, scale) row of ``scaled`` bodies, parked off-stage."""
    pool = []
    rows = [(spec, None, count, 1.0) for spec, count in counts] + [(*d, 1.0) for d in defects] + list(scaled)
    for ti, (spec, defect, count, scale) in enumerate(rows):
        body_spec = defective_spec(spec, defect) if defect is not None else spec
        body_spec = scaled_spec(body_spec, scale)
        mark = None
        if defect is not None and defect.kind == "mark":
            mark = Mark(
                defect.mark_size * min(body_spec.size[:2]), tuple(defect.color), all_faces=defect.faces == "all"
            )
        for k in range(count):
            stem = f"part-{spec.name}" if defect is None else f"part-{spec.name}-{defect.name}"
            name = f"{stem}-{k}" if scale == 1.0 else f"{stem}-x{scale:.3g}-{k}"
            spot = PARKING + np.array([0.3 * k, 0.3 * ti, 0.0])
            if spec.shape == "box":
                half = [s / 2 for s in body_spec.size]
                body = world.create_box(
                    name, half, spot, mass=body_spec.mass, rgba=body_spec.color, friction=spec.friction, mark=mark
                )
            else:
                body = world.create_cylinder(
                    name,
                    body_spec.size[0] / 2,
                    body_spec.size[1],
                    spot,
                    mass=body_spec.mass,
                    rgba=body_spec.color,
                    friction=spec.friction,
                    mark=mark,
                )
            world.p.changeDynamics(body, -1, spinningFriction=0.001, rollingFriction=0.0001)
            part = Part(name=name, id=body, spec=body_spec, park=spot, world=world)
            part.defect = defect.name if defect is not None else None
            part.scale = scale
            pool.append(part)
            park(world, part)
    return pool


@dataclass(frozen=True)
class Arrival:
    t: float
    part_type: str
    lateral: float
    yaw: float
    """Radians."""
    defect: str | None = None


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
    defects: list[str | None] = [None] * n
    if feeder.defect_rate > 0:  # drawn after the rest, so a feeder without defects draws what it always did
        types = sorted(feeder.defects)
        w = np.array([feeder.defects[k] for k in types], dtype=float)
        flawed = rng.uniform(size=n) < feeder.defect_rate
        which = rng.choice(len(types), size=n, p=w / w.sum())
        defects = [types[j] if f else None for f, j in zip(flawed, which, strict=True)]
    return [
        Arrival(float(t), names[k], float(la), float(y), d)
        for t, k, la, y, d in zip(times, kinds, lateral, yaw, defects, strict=True)
    ]
