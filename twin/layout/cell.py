"""The sections of a robot cell: arms, conveyors, parts, feeders, bins, trays, machines, stations,
fixtures and cameras."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from twin.layout.base import (
    Degrees,
    Force,
    Friction,
    Length,
    Pose,
    Radians,
    Rgba,
    Seconds,
    Vec2,
    Vec3,
    _Model,
)


class Robot(_Model):
    model: Literal["panda", "iiwa"] = "panda"
    """Robot model, from pybullet_data: ``panda`` (Franka Emika Panda) or ``iiwa`` (KUKA LBR iiwa 14)."""
    base: Pose
    tool: Literal["parallel_gripper", "suction"] = "parallel_gripper"
    """End-of-arm tool: a friction parallel-jaw gripper or a suction cup."""
    home: tuple[Radians, Radians, Radians, Radians, Radians, Radians, Radians] | None = None
    """Home joint angles in radians for the seven arm joints, within the model's limits; by default
    the model's own home (the tool pointing down in front of the base)."""
    suction_force: Force = 40.0
    """Newtons the suction seal holds before the part tears off (suction tool only)."""
    grip_force: Force = 100.0
    """Newtons per finger (parallel gripper only)."""
    coupled_fingers: bool = False
    """Couple the two fingers so they move as one (as the real hand's single drive does), which
    keeps a grasped part centred between them; off by default, as in the v1 cells."""
    speed_override: Annotated[float, Field(ge=0.05, le=1.0, allow_inf_nan=False)] = 1.0
    """The controller's speed override, as set on a teach pendant: every tool move a task commands
    runs at this share of its programmed speed (1 is full speed; a plant that runs its robot at
    70% has 0.7). ``twin calibrate`` fits it by search over twin runs."""


class BeamBreak(_Model):
    offset: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.12
    """Distance in metres from the downstream end of the belt to the light beam."""
    height: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.015
    """Height of the beam above the belt surface, metres."""


class Conveyor(_Model):
    position: Vec2
    """Centre of the belt, metres (x, y)."""
    yaw: Degrees = 0.0
    """Degrees; parts travel along the belt's +x axis rotated by yaw."""
    length: Length = 1.6
    """Metres; the belt must lie on the floor."""
    width: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 0.3
    height: Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)] = 0.75
    """Height of the belt surface above the floor, metres."""
    speed: Annotated[float, Field(ge=0, le=2.0)] = 0.1
    """Belt speed, m/s."""
    end_stop: bool = True
    """A stop at the downstream end that parts pile against; without it parts fall off."""
    beam_break: BeamBreak | None = BeamBreak()
    friction: Friction = 0.8


class Part(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    shape: Literal["box", "cylinder"]
    size: Annotated[tuple[Annotated[float, Field(ge=0.001, le=2, allow_inf_nan=False)], ...], Field(max_length=3)]
    """box: [x, y, z]; cylinder: [diameter, height]. Metres, each from 0.001 to 2."""
    mass: Annotated[float, Field(ge=0.001, le=1000, allow_inf_nan=False)] = 0.1
    """Kilograms, from 0.001 to 1000."""
    color: Rgba = (0.8, 0.3, 0.2, 1.0)
    friction: Friction = 1.0

    @model_validator(mode="after")
    def _size_matches_shape(self) -> Part:
        want = {"box": 3, "cylinder": 2}[self.shape]
        if len(self.size) != want:
            raise ValueError(f"size for shape {self.shape!r} needs {want} numbers, got {len(self.size)}")
        return self

    @property
    def half_height(self) -> float:
        return self.size[-1] / 2


class Defect(_Model):
    """A defect type in the catalogue (``[[defects]]``), visible on the part: a dark ``mark`` on
    its top face (or every face), a ``size`` off by ``scale``, or a wrong ``color``."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    kind: Literal["mark", "size", "color"]
    color: Rgba = (0.08, 0.08, 0.08, 1.0)
    """The mark's colour (``mark``) or the part's wrong colour (``color``)."""
    mark_size: Annotated[float, Field(ge=0.2, le=1)] = 0.6
    """Side of the square mark as a share of the top face (``mark``)."""
    faces: Literal["top", "all"] = "top"
    """Where a ``mark`` shows: on the top face only, or on the top and every side (a stain that
    a camera beside a gripped part can see)."""
    scale: Annotated[float, Field(ge=0.5, le=1.5)] = 0.85
    """Factor on every dimension of the part (``size``); 1 is not a defect."""

    @model_validator(mode="after")
    def _a_real_defect(self) -> Defect:
        if self.kind == "size" and abs(self.scale - 1.0) < 0.02:
            raise ValueError(f"scale {self.scale} is within 2% of the nominal size: not a visible defect")
        return self


class Feeder(_Model):
    conveyor: str = "conveyor-0"
    """Name of the conveyor the parts are put on."""
    parts_per_episode: Annotated[int, Field(ge=1, le=50)] = 3
    first_arrival: tuple[Seconds, Seconds] = (0.5, 2.0)
    """Range in seconds (uniform) of the first arrival after reset."""
    interval: tuple[Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)], Seconds] = (5.0, 7.0)
    """Range in seconds (uniform) between consecutive arrivals."""
    mix: Annotated[
        dict[str, Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]], Field(min_length=1, max_length=64)
    ]
    """Relative frequency (weight, at most 1e6) of each part in the catalogue, by name."""
    lateral_jitter: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.03
    """Half-range in metres of the part's offset across the belt."""
    yaw_jitter: Annotated[float, Field(ge=0, le=180)] = 15.0
    """Half-range in degrees of the part's yaw on arrival."""
    spawn_offset: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.06
    """Distance in metres from the upstream end of the belt where parts are put down."""
    defect_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of parts (seeded per part) that carry a defect."""
    defects: Annotated[dict[str, Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]], Field(max_length=64)] = {}
    """Relative frequency of each defect type (``[[defects]]`` names) among defective parts."""

    @field_validator("first_arrival", "interval")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
        return v


class Bin(_Model):
    position: Vec3
    """Centre of the bin floor, metres."""
    size: tuple[
        Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)],
    ] = (0.3, 0.3, 0.12)
    """Inner length, width (each at most 10) and wall height (at most 5), metres."""
    wall: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.01
    color: Rgba = (0.2, 0.35, 0.7, 1.0)
    accepts: Literal["any", "good", "defective"] = "any"
    """Which parts belong in it: a good-parts bin, a reject bin, or any part."""


class Tray(_Model):
    """A shallow tray (``[[trays]]``) with a grid of slots: an input tray filled with raw parts at
    every reset, or an output tray that finished parts are set down in (a part at rest inside it is
    placed there, as in a bin)."""

    position: Vec3
    """Centre of the tray floor, metres."""
    size: tuple[
        Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=0.5, allow_inf_nan=False)],
    ] = (0.24, 0.24, 0.03)
    """Inner length, width (each at most 2) and wall height (at most 0.5), metres."""
    grid: tuple[Annotated[int, Field(ge=1, le=10)], Annotated[int, Field(ge=1, le=10)]] = (2, 2)
    """Slots along x and along y (the tray's length and width), each 1-10."""
    fill: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    """The part (catalogue name) put in every slot at reset; none for an output tray."""
    count: Annotated[int, Field(ge=1, le=100)] | None = None
    """How many slots are filled at reset (the first ones, row by row); all of them if unset."""
    jitter: Annotated[float, Field(ge=0, le=0.05, allow_inf_nan=False)] = 0.004
    """Half-range in metres of a part's seeded offset from its slot's centre, in x and y."""
    yaw_jitter: Annotated[float, Field(ge=0, le=180)] = 10.0
    """Half-range in degrees of a part's seeded yaw in its slot."""
    wall: Annotated[float, Field(gt=0, le=0.1, allow_inf_nan=False)] = 0.008
    color: Rgba = (0.25, 0.28, 0.3, 1.0)

    def slots(self) -> list[tuple[float, float]]:
        """Centres (x, y) of the slots, world frame, row by row."""
        nx, ny = self.grid
        lx, ly = self.size[0], self.size[1]
        x0, y0 = self.position[0] - lx / 2, self.position[1] - ly / 2
        return [(x0 + (i + 0.5) * lx / nx, y0 + (j + 0.5) * ly / ny) for j in range(ny) for i in range(nx)]


class Table(_Model):
    position: Vec2
    """Centre of the table, metres (x, y)."""
    size: tuple[
        Annotated[float, Field(gt=0, le=50, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=50, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)],
    ]
    """Length, width (each at most 50) and height (top surface height, at most 5), metres."""
    color: Rgba = (0.55, 0.5, 0.45, 1.0)


class Machine(_Model):
    """A machine station (``[[machines]]``): a part placed on its load fixture is processed for a
    seeded time, then becomes the finished part. States: idle, loaded, processing, done, blocked
    (a part it cannot process on the fixture), down; each change is an event."""

    position: Vec2
    """Centre of the station, metres (x, y)."""
    yaw: Degrees = 0.0
    size: tuple[
        Annotated[float, Field(gt=0.1, le=5, allow_inf_nan=False)],
        Annotated[float, Field(gt=0.1, le=5, allow_inf_nan=False)],
        Annotated[float, Field(gt=0.1, le=3, allow_inf_nan=False)],
    ] = (0.5, 0.5, 0.75)
    """Length, width and height (of the fixture's top face), metres."""
    fixture_offset: tuple[
        Annotated[float, Field(ge=-2.5, le=2.5, allow_inf_nan=False)],
        Annotated[float, Field(ge=-2.5, le=2.5, allow_inf_nan=False)],
    ] = (0.0, 0.0)
    """Centre of the load fixture relative to the station's top centre, station frame, metres."""
    fixture_size: Annotated[float, Field(gt=0.01, le=1, allow_inf_nan=False)] = 0.1
    """Side of the square fixture plate, metres."""
    tolerance: Annotated[float, Field(gt=0, le=0.1, allow_inf_nan=False)] = 0.015
    """How far (metres, in x and y) a part's centre may lie from the fixture's centre to count as loaded."""
    accepts: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    """The raw part (catalogue name) the machine processes."""
    produces: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    """The finished part (catalogue name) a processed part becomes: its type and colour."""
    process_time: tuple[
        Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)],
        Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)],
    ] = (8.0, 10.0)
    """Range in seconds (uniform, seeded per episode) of one cycle."""
    ideal_cycle_time: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] | None = None
    """Planned run time per item for OEE (ISO 22400 PRI), seconds; the shortest process time if unset."""
    color: Rgba = (0.93, 0.93, 0.9, 1.0)

    @field_validator("process_time")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
        return v

    @property
    def pri(self) -> float:
        return self.ideal_cycle_time if self.ideal_cycle_time is not None else self.process_time[0]

    @property
    def fixture_xy(self) -> tuple[float, float]:
        """Centre of the load fixture, world frame, metres."""
        yaw = math.radians(self.yaw)
        c, s = math.cos(yaw), math.sin(yaw)
        (x, y), (ox, oy) = self.position, self.fixture_offset
        return (x + c * ox - s * oy, y + s * ox + c * oy)


class Inspection(_Model):
    """An inspection station over a belt (``[[inspections]]``): a camera looks at the belt and a
    sensor reads each passing part's defect flag once, wrong at the given rates (seeded)."""

    conveyor: str = "conveyor-0"
    """The belt inspected."""
    offset: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.45
    """Distance in metres from the belt's upstream end to the line where parts are read."""
    camera: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    """Name of the ``[[cameras]]`` entry that looks at the inspection line."""
    false_positive: Annotated[float, Field(ge=0, le=0.5)] = 0.02
    """Chance that a good part reads as defective."""
    false_negative: Annotated[float, Field(ge=0, le=0.5)] = 0.02
    """Chance that a defective part reads as good."""


class Insertion(_Model):
    """A peg-in-hole station (``[[insertions]]``): a block with a square hole (chamfered rim) and a
    square peg standing upright beside it, both on a surface at ``position``'s height."""

    position: Vec3
    """Centre of the hole block's base, metres (the block stands on a table top at this height)."""
    block: tuple[
        Annotated[float, Field(gt=0.02, le=1, allow_inf_nan=False)],
        Annotated[float, Field(gt=0.02, le=1, allow_inf_nan=False)],
        Annotated[float, Field(gt=0.01, le=0.5, allow_inf_nan=False)],
    ] = (0.12, 0.12, 0.05)
    """Outer length, width and height of the hole block, metres; the hole goes through its height."""
    hole_width: Annotated[float, Field(ge=0.005, le=0.2, allow_inf_nan=False)] = 0.032
    """Side of the square hole, metres."""
    peg_width: Annotated[float, Field(ge=0.005, le=0.2, allow_inf_nan=False)] = 0.031
    """Side of the square peg, metres; at least 0.5 mm under the hole's (the clearance)."""
    peg_length: Annotated[float, Field(ge=0.02, le=0.5, allow_inf_nan=False)] = 0.08
    peg_mass: Annotated[float, Field(ge=0.001, le=10, allow_inf_nan=False)] = 0.1
    """Kilograms."""
    chamfer: Annotated[float, Field(ge=0, le=0.02, allow_inf_nan=False)] = 0.003
    """How far (metres) the hole's rim is widened at the top, in three steps of real collision geometry."""
    peg_start: Vec2
    """Where the peg stands upright before it is picked (x, y), at the block's base height."""
    jitter: Annotated[float, Field(ge=0, le=0.05, allow_inf_nan=False)] = 0.01
    """Half-range in metres of the hole block's seeded offset (x, y) at each reset."""
    depth: Annotated[float, Field(gt=0, le=0.5, allow_inf_nan=False)] = 0.03
    """How deep (metres) the peg's tip must go below the block's top face to count as inserted."""
    force_limit: Force = 60.0
    """Newtons of contact between peg and block above which the insertion fails (a crash)."""
    jam_force: Force = 20.0
    """Newtons of contact between peg and block that count as a jam."""

    @field_validator("peg_width")
    @classmethod
    def _fits(cls, v: float, info) -> float:
        hole = info.data.get("hole_width")
        if hole is not None and v > hole - 0.0005:
            raise ValueError(
                f"a {v * 1000:g} mm peg does not fit a {hole * 1000:g} mm hole (the clearance must be at least 0.5 mm)"
            )
        return v

    @field_validator("depth")
    @classmethod
    def _within_block(cls, v: float, info) -> float:
        block = info.data.get("block")
        if block is not None and v > block[2]:
            raise ValueError(f"{v} m is deeper than the {block[2]} m block")
        return v

    @field_validator("jam_force")
    @classmethod
    def _below_limit(cls, v: float, info) -> float:
        limit = info.data.get("force_limit")
        if limit is not None and v >= limit:
            raise ValueError(f"{v} N must be below force_limit ({limit} N)")
        return v

    @model_validator(mode="after")
    def _walls(self) -> Insertion:
        wall = (min(self.block[0], self.block[1]) - self.hole_width) / 2
        if wall < 0.005 + self.chamfer:
            raise ValueError(
                f"hole_width: the block's walls around a {self.hole_width * 1000:g} mm hole with a "
                f"{self.chamfer * 1000:g} mm chamfer would be under 5 mm thick; enlarge the block"
            )
        return self


class Fixture(_Model):
    urdf: Annotated[str, Field(min_length=1, max_length=4096)]
    """Path to a URDF, relative to the layout file's folder, or to the assets folder; it must parse,
    its meshes must exist and PyBullet must load it."""
    pose: Pose
    fixed: bool = True
    scale: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1.0


class Camera(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    eye: Vec3
    target: Vec3
    up: Vec3 = (0.0, 0.0, 1.0)
    fov: Annotated[float, Field(gt=1, lt=179)] = 60.0
    """Vertical field of view, degrees."""
    near: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 0.05
    far: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 5.0
    width: Annotated[int, Field(ge=8, le=4096)] = 84
    height: Annotated[int, Field(ge=8, le=4096)] = 84
    mount: Annotated[int, Field(ge=0, le=7)] | None = None
    """Index of the robot (in ``[[robots]]``) whose tool carries this camera, as a wrist camera;
    ``eye``, ``target`` and ``up`` are then in the tool centre point's frame (x forward, z along
    the tool, away from the flange), and the camera moves with the tool. None: fixed in the cell,
    ``eye``, ``target`` and ``up`` in the world frame."""

    def sees(self, point: tuple[float, float, float]) -> bool:
        """Whether ``point`` (world frame, metres) lies in the camera's view, between near and far."""
        eye = [float(v) for v in self.eye]
        fwd = _unit([t - e for t, e in zip(self.target, eye, strict=True)])
        right = _unit(_cross(fwd, list(self.up)))
        up = _cross(right, fwd)
        rel = [p - e for p, e in zip(point, eye, strict=True)]
        depth = sum(a * b for a, b in zip(rel, fwd, strict=True))
        if not self.near <= depth <= self.far:
            return False
        half_v = math.tan(math.radians(self.fov) / 2)
        half_h = half_v * self.width / self.height
        x = sum(a * b for a, b in zip(rel, right, strict=True)) / depth
        y = sum(a * b for a, b in zip(rel, up, strict=True)) / depth
        return abs(x) <= half_h and abs(y) <= half_v

    @model_validator(mode="after")
    def _geometry(self) -> Camera:
        if self.near >= self.far:
            raise ValueError(f"near ({self.near}) must be smaller than far ({self.far})")
        if math.dist(self.eye, self.target) == 0:
            raise ValueError("eye and target must differ")
        return self


def _cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]
