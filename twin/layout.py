"""The cell layout: a declarative TOML file validated into frozen pydantic models.

A layout names everything in a cell and where it stands. Unknown keys are errors, every number
carries its unit in the field docs, and :func:`load_layout` reports problems as
``FILE: field.path: what was expected``. ``CellLayout.model_json_schema()`` gives the JSON
Schema for editors (``twin layout schema``).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twin.paths import ASSETS_DIR, LAYOUTS_DIR

MAX_LAYOUT_BYTES = 2**20
"""Largest layout file accepted (1 MiB)."""
MAX_URDF_BYTES = 16 * 2**20
"""Largest fixture URDF accepted (16 MiB)."""

# Physical bounds. A cell is at most 100 m across; nothing in it is bigger than the floor, and
# every number is finite. Each field's bounds show in ``twin layout schema``.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Coord = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]
"""A coordinate in metres, within the largest floor."""
Length = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
"""A length in metres, at most the largest floor."""
Friction = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
Degrees = Annotated[float, Field(ge=-360, le=360, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]
Force = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]
"""Newtons."""
Vec2 = tuple[Coord, Coord]
Vec3 = tuple[Coord, Coord, Coord]
Size3 = tuple[Length, Length, Length]
Unit = Annotated[float, Field(ge=0, le=1)]
Rgba = tuple[Unit, Unit, Unit, Unit]
Gravity = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]
"""m/s^2 along one axis (Earth: 9.81)."""
Radians = Annotated[float, Field(ge=-6.3, le=6.3, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayoutError(ValueError):
    """A layout that cannot be used; the message names the file and each offending field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: invalid layout ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


class Floor(_Model):
    size: tuple[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)], Length] = (6.0, 6.0)
    """Floor extent in metres along x and y (at most 100), centred on the origin; every body must stand on it."""
    friction: Friction = 0.8


class Physics(_Model):
    hz: Annotated[float, Field(ge=60, le=2000)] = 240.0
    """Physics rate in Hz."""
    substeps: Annotated[int, Field(ge=1, le=100)] = 12
    """Physics steps per control step; the control rate is hz / substeps."""
    gravity: tuple[Gravity, Gravity, Gravity] = (0.0, 0.0, -9.81)
    """m/s^2, each component within +-100."""
    solver_iterations: Annotated[int, Field(ge=1, le=1000)] = 50


class Pose(_Model):
    position: Vec3
    """Metres, world frame."""
    yaw: Degrees = 0.0
    """Degrees about +z."""


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


class CellLayout(_Model):
    """A factory cell: what stands where, and how the physics runs."""

    name: Annotated[str, Field(max_length=200)]
    description: Annotated[str, Field(max_length=10_000)] = ""
    floor: Floor = Floor()
    physics: Physics = Physics()
    robots: list[Robot] = Field(min_length=1, max_length=8)
    conveyors: list[Conveyor] = Field([], max_length=16)
    parts: list[Part] = Field([], max_length=64)
    defects: list[Defect] = Field([], max_length=16)
    feeders: list[Feeder] = Field([], max_length=16)
    bins: list[Bin] = Field([], max_length=32)
    tables: list[Table] = Field([], max_length=64)
    trays: list[Tray] = Field([], max_length=32)
    machines: list[Machine] = Field([], max_length=32)
    inspections: list[Inspection] = Field([], max_length=16)
    insertions: list[Insertion] = Field([], max_length=8)
    fixtures: list[Fixture] = Field([], max_length=256)
    cameras: list[Camera] = Field([], max_length=16)

    @model_validator(mode="after")
    def _references(self) -> CellLayout:
        part_names = [p.name for p in self.parts]
        dup = {n for n in part_names if part_names.count(n) > 1}
        if dup:
            raise ValueError(f"part names must be unique, repeated: {sorted(dup)}")
        cam_names = [c.name for c in self.cameras]
        if len(set(cam_names)) != len(cam_names):
            raise ValueError("camera names must be unique")
        for i, c in enumerate(self.cameras):
            if c.mount is not None and c.mount >= len(self.robots):
                raise ValueError(
                    f"cameras[{i}].mount: no robot {c.mount} to carry camera {c.name!r} (the layout has "
                    f"{len(self.robots)} robot(s), numbered from 0)"
                )
        conveyors = {f"conveyor-{i}" for i in range(len(self.conveyors))}
        for i, f in enumerate(self.feeders):
            if f.conveyor not in conveyors:
                raise ValueError(f"feeders[{i}].conveyor: no conveyor named {f.conveyor!r} (have {sorted(conveyors)})")
            unknown = sorted(set(f.mix) - set(part_names))
            if unknown:
                raise ValueError(f"feeders[{i}].mix: unknown parts {unknown} (catalogue: {part_names})")
            defect_names = [d.name for d in self.defects]
            unknown = sorted(set(f.defects) - set(defect_names))
            if unknown:
                raise ValueError(
                    f"feeders[{i}].defects: unknown defect types {unknown} (catalogue: {defect_names or 'none'})"
                )
            if f.defect_rate > 0 and not f.defects:
                raise ValueError(f"feeders[{i}].defects: a defect_rate above 0 needs at least one defect type")
        if len({d.name for d in self.defects}) != len(self.defects):
            raise ValueError("defect names must be unique")
        for i, ins in enumerate(self.inspections):
            self._check_inspection(i, ins, conveyors)
        for i, m in enumerate(self.machines):
            unknown = sorted({m.accepts, m.produces} - set(part_names))
            if unknown:
                raise ValueError(f"machines[{i}]: unknown parts {unknown} (catalogue: {part_names})")
            half = min(m.size[0], m.size[1]) / 2
            if max(abs(m.fixture_offset[0]), abs(m.fixture_offset[1])) + m.fixture_size / 2 > half:
                raise ValueError(f"machines[{i}].fixture_offset: the fixture must lie on the station's top")
        for i, t in enumerate(self.trays):
            if t.fill is None:
                if t.count is not None:
                    raise ValueError(f"trays[{i}].count: only a tray with fill is filled at reset")
                continue
            if t.fill not in part_names:
                raise ValueError(f"trays[{i}].fill: unknown part {t.fill!r} (catalogue: {part_names})")
            slots = t.grid[0] * t.grid[1]
            if t.count is not None and t.count > slots:
                raise ValueError(f"trays[{i}].count: {t.count} parts do not fit in {slots} slots")
            spec = self.part(t.fill)
            # the part, turned by up to its yaw jitter and shifted by the jitter, stays inside its slot
            side = spec.size[0] if spec.shape == "cylinder" else math.hypot(spec.size[0], spec.size[1])
            pitch = min(t.size[0] / t.grid[0], t.size[1] / t.grid[1])
            if side + 2 * t.jitter > pitch:
                raise ValueError(
                    f"trays[{i}].grid: slots of {pitch * 1000:.0f} mm cannot hold a {t.fill!r} "
                    f"({side * 1000:.0f} mm across, +-{t.jitter * 1000:.0f} mm jitter); use fewer slots or a larger tray"
                )
        hx, hy = self.floor.size[0] / 2, self.floor.size[1] / 2

        def off_floor(x: float, y: float) -> bool:
            return abs(x) > hx or abs(y) > hy

        for i, r in enumerate(self.robots):
            x, y, z = r.base.position
            if off_floor(x, y) or z < 0:
                raise ValueError(
                    f"robots[{i}].base.position: ({x}, {y}, {z}) is outside the floor "
                    f"(|x| <= {hx}, |y| <= {hy}, z >= 0)"
                )
        self._check_reach()
        groups = (
            ("conveyors", self.conveyors),
            ("tables", self.tables),
            ("bins", self.bins),
            ("trays", self.trays),
            ("machines", self.machines),
        )
        for kind, items in groups:
            for i, item in enumerate(items):
                x, y = item.position[0], item.position[1]
                if off_floor(x, y):
                    raise ValueError(
                        f"{kind}[{i}].position: ({x}, {y}) is outside the floor (|x| <= {hx}, |y| <= {hy})"
                    )
                # the whole footprint stands on the floor, not only its centre
                if kind == "conveyors":
                    half, yaw = (item.length / 2, item.width / 2), math.radians(item.yaw)
                elif kind == "machines":
                    half, yaw = (item.size[0] / 2, item.size[1] / 2), math.radians(item.yaw)
                else:
                    half, yaw = (item.size[0] / 2, item.size[1] / 2), 0.0
                c, s = math.cos(yaw), math.sin(yaw)
                for sx in (-1, 1):
                    for sy in (-1, 1):
                        cx = x + c * sx * half[0] - s * sy * half[1]
                        cy = y + s * sx * half[0] + c * sy * half[1]
                        if off_floor(cx, cy):
                            raise ValueError(
                                f"{kind}[{i}]: its footprint reaches ({cx:.3g}, {cy:.3g}), beyond the floor "
                                f"(|x| <= {hx}, |y| <= {hy}); shrink it or enlarge floor.size"
                            )
        return self

    def _check_inspection(self, i: int, ins: Inspection, conveyors: set[str]) -> None:
        if ins.conveyor not in conveyors:
            raise ValueError(
                f"inspections[{i}].conveyor: no conveyor named {ins.conveyor!r} (have {sorted(conveyors)})"
            )
        conv = self.conveyors[int(ins.conveyor.rpartition("-")[2])]
        if ins.offset > conv.length:
            raise ValueError(f"inspections[{i}].offset: {ins.offset} m is beyond the belt's {conv.length} m length")
        cam = next((c for c in self.cameras if c.name == ins.camera), None)
        if cam is not None and cam.mount is not None:
            raise ValueError(
                f"inspections[{i}].camera: camera {ins.camera!r} rides on a robot; an inspection station needs a "
                "camera fixed over the belt"
            )
        if cam is None:
            raise ValueError(
                f"inspections[{i}].camera: no camera named {ins.camera!r} (have {[c.name for c in self.cameras]})"
            )
        yaw = math.radians(conv.yaw)
        d = (math.cos(yaw), math.sin(yaw))
        along = ins.offset - conv.length / 2
        line = [
            (conv.position[0] + d[0] * along - d[1] * w, conv.position[1] + d[1] * along + d[0] * w, conv.height)
            for w in (-conv.width / 2, 0.0, conv.width / 2)
        ]
        if not any(cam.sees(point) for point in line):
            raise ValueError(
                f"inspections[{i}].camera: camera {ins.camera!r} does not see the belt at the inspection line "
                f"(around ({line[1][0]:.3g}, {line[1][1]:.3g}, {line[1][2]:.3g})); aim it there"
            )

    def _check_reach(self) -> None:
        """Every machine fixture and tray slot lies within reach of at least one robot."""
        from twin.robots import MODELS, can_reach  # the robots' modules read this one

        for i, r in enumerate(self.robots):
            spec = MODELS[r.model]
            for j, (q, lo, hi) in enumerate(zip(r.home or (), spec.lower, spec.upper, strict=False)):
                if not lo <= q <= hi:
                    raise ValueError(
                        f"robots[{i}].home[{j}]: {q:g} rad is outside the {spec.title}'s joint limits [{lo:g}, {hi:g}]"
                    )

        def reachable(point: tuple[float, float, float]) -> bool:
            return any(can_reach(r.model, r.base.position, point) for r in self.robots)

        for i, m in enumerate(self.machines):
            point = (*m.fixture_xy, m.size[2] + 0.05)
            if not reachable(point):
                raise ValueError(
                    f"machines[{i}].position: its load fixture at ({point[0]:.3g}, {point[1]:.3g}) is out of "
                    "reach of every robot; move it (or a robot) closer"
                )
        for i, ins in enumerate(self.insertions):
            x, y, z = ins.position
            if not reachable((x, y, z + ins.block[2] + 0.05)):
                raise ValueError(
                    f"insertions[{i}].position: the hole at ({x:.3g}, {y:.3g}) is out of reach of every robot"
                )
            if not reachable((*ins.peg_start, z + ins.peg_length)):
                raise ValueError(
                    f"insertions[{i}].peg_start: the peg at ({ins.peg_start[0]:.3g}, {ins.peg_start[1]:.3g}) is out of "
                    "reach of every robot"
                )
            gap = math.dist(ins.peg_start, (x, y)) - max(ins.block[:2]) / 2 - ins.peg_width - ins.jitter
            if gap < 0.03:
                raise ValueError(f"insertions[{i}].peg_start: the peg must stand at least 3 cm clear of the hole block")
        for i, t in enumerate(self.trays):
            for x, y in t.slots():
                if not reachable((x, y, t.position[2] + 0.03)):
                    raise ValueError(
                        f"trays[{i}].position: its slot at ({x:.3g}, {y:.3g}) is out of reach of every robot; "
                        "move it (or a robot) closer"
                    )

    def defect(self, name: str) -> Defect:
        for d in self.defects:
            if d.name == name:
                return d
        raise KeyError(name)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "(top level)"


def _brief(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        loc = _loc(tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-"))))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the layout schema)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = e.get("input")
        shown = (
            "" if e["type"] in ("missing", "extra_forbidden") or isinstance(value, dict) else f" (got {_brief(value)})"
        )
        problems.append(f"{loc}: {msg}{shown}")
    return problems


def parse_layout(data: dict, source: str = "<layout>", base_dir: Path | None = None) -> CellLayout:
    """Validate a layout given as a dict; ``source`` names it in errors."""
    try:
        layout = CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(source, _format_errors(err)) from None
    except RecursionError:
        raise LayoutError(source, ["nested too deeply"]) from None
    problems = []
    for i, fx in enumerate(layout.fixtures):
        path = resolve_asset(fx.urdf, base_dir)
        if path is None:
            problems.append(
                f"fixtures[{i}].urdf: file not found: {fx.urdf!r} (looked beside the layout and in {ASSETS_DIR})"
            )
            continue
        problem = check_urdf(path)
        if problem:
            problems.append(f"fixtures[{i}].urdf: {path}: {problem}")
    if problems:
        raise LayoutError(source, problems)
    return layout


def with_robot(layout: CellLayout, model: str, source: str = "<layout>") -> CellLayout:
    """The layout with every robot swapped for one of ``model`` (same base, tool and settings; the
    new model's own home posture), checked again: the new arm must reach what the cell needs."""
    data = layout.model_dump()
    for r in data["robots"]:
        r["model"], r["home"] = model, None
    try:
        return CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(f"{source} with robot={model!r}", _format_errors(err)) from None


def check_urdf(path: Path) -> str | None:
    """What is wrong with a fixture URDF (None when PyBullet loads it): size, XML, the ``<robot>``
    root, missing mesh files, and finally a load in a throwaway PyBullet client."""
    import xml.etree.ElementTree as ET

    try:
        size = path.stat().st_size
        if size > MAX_URDF_BYTES:
            return f"{size:,} bytes, over the {MAX_URDF_BYTES:,}-byte limit for a URDF"
        text = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if b"<!ENTITY" in text:
        return "XML entity declarations are not accepted in a URDF"
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return f"not well-formed XML ({exc})"
    except RecursionError:
        return "XML nested too deeply"
    if root.tag != "robot":
        return f"the root element is <{root.tag}>, a URDF's is <robot>"
    if root.find("link") is None:
        return "has no <link>"
    for mesh in root.iter("mesh"):
        name = mesh.get("filename", "")
        if not name:
            return "a <mesh> has no filename"
        if name.startswith("package://"):
            return f"mesh {name!r}: package:// paths are not resolved; give a path relative to the URDF"
        mesh_path = Path(name) if Path(name).is_absolute() else path.parent / name
        if not mesh_path.is_file():
            return f"mesh {name!r} not found (looked at {mesh_path})"
    return _pybullet_load_problem(path)


def _pybullet_load_problem(path: Path) -> str | None:
    import os

    import pybullet as pb

    # PyBullet prints its own complaints on the C stdout; keep them off the user's terminal.
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            client = pb.connect(pb.DIRECT)
            try:
                pb.loadURDF(str(path), physicsClientId=client)
            except pb.error as exc:
                return f"PyBullet cannot load it ({exc})"
            finally:
                pb.disconnect(client)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return None


def read_bounded(path: Path, limit: int, error) -> bytes:
    """A file's bytes, refusing files that are missing, unreadable, not regular or over ``limit``
    bytes (``error(problem)`` builds the exception) before reading them."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error("file not found") from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise error("not a regular file")
    if st.st_size > limit:
        raise error(f"{st.st_size:,} bytes, over the {limit:,}-byte limit")
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}") from None
    if len(raw) > limit:
        raise error(f"over the {limit:,}-byte limit")
    return raw


def parse_toml(raw: bytes, error) -> dict:
    """TOML from UTF-8 bytes; every failure (encoding, syntax, nesting) becomes ``error(problem)``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise error("not valid TOML: nested too deeply") from None


def resolve_asset(path: str, base_dir: Path | None) -> Path | None:
    """Find an asset path relative to the layout's folder, then the assets folder."""
    candidates = (
        [Path(path)] if Path(path).is_absolute() else [*(([base_dir / path]) if base_dir else []), ASSETS_DIR / path]
    )
    for c in candidates:
        if c.is_file():
            return c
    return None


def find_layout(name_or_path: str | Path) -> Path:
    """A layout file by path, or by name among the bundled layouts (``"default"``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    bundled = LAYOUTS_DIR / f"{name_or_path}.toml"
    if bundled.exists():
        return bundled
    names = sorted(f.stem for f in LAYOUTS_DIR.glob("*.toml"))
    raise FileNotFoundError(f"no layout file or bundled layout named {str(name_or_path)!r} (bundled: {names})")


def load_layout(name_or_path: str | Path) -> CellLayout:
    """Read and validate a layout TOML file (a path, or the name of a bundled layout)."""
    path = find_layout(name_or_path)
    source = str(path)
    raw = read_bounded(path, MAX_LAYOUT_BYTES, lambda problem: LayoutError(source, [problem]))
    data = parse_toml(raw, lambda problem: LayoutError(source, [problem]))
    return parse_layout(data, source, path.parent)


def layout_hash(name_or_path: str | Path) -> str:
    """SHA-256 of a layout file's bytes (recorded with results)."""
    return hashlib.sha256(find_layout(name_or_path).read_bytes()).hexdigest()
