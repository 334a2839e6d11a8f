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

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Vec2 = tuple[Finite, Finite]
Vec3 = tuple[Finite, Finite, Finite]
Size3 = tuple[PositiveFloat, PositiveFloat, PositiveFloat]
Unit = Annotated[float, Field(ge=0, le=1)]
Rgba = tuple[Unit, Unit, Unit, Unit]


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
    size: tuple[PositiveFloat, PositiveFloat] = (6.0, 6.0)
    """Floor extent in metres along x and y, centred on the origin; every body must stand on it."""
    friction: NonNegFloat = 0.8


class Physics(_Model):
    hz: Annotated[float, Field(ge=60, le=2000)] = 240.0
    """Physics rate in Hz."""
    substeps: Annotated[int, Field(ge=1, le=100)] = 12
    """Physics steps per control step; the control rate is hz / substeps."""
    gravity: Vec3 = (0.0, 0.0, -9.81)
    solver_iterations: Annotated[int, Field(ge=1, le=1000)] = 50


class Pose(_Model):
    position: Vec3
    """Metres, world frame."""
    yaw: Finite = 0.0
    """Degrees about +z."""


class Robot(_Model):
    model: Literal["panda"] = "panda"
    """Robot model; ``panda`` is the Franka Emika Panda from pybullet_data."""
    base: Pose
    tool: Literal["parallel_gripper", "suction"] = "parallel_gripper"
    """End-of-arm tool: a friction parallel-jaw gripper or a suction cup."""
    home: tuple[Finite, Finite, Finite, Finite, Finite, Finite, Finite] = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785)
    """Home joint angles in radians for the seven arm joints."""
    suction_force: PositiveFloat = 40.0
    """Newtons the suction seal holds before the part tears off (suction tool only)."""
    grip_force: PositiveFloat = 100.0
    """Newtons per finger (parallel gripper only)."""


class BeamBreak(_Model):
    offset: NonNegFloat = 0.12
    """Distance in metres from the downstream end of the belt to the light beam."""
    height: PositiveFloat = 0.015
    """Height of the beam above the belt surface, metres."""


class Conveyor(_Model):
    position: Vec2
    """Centre of the belt, metres (x, y)."""
    yaw: Finite = 0.0
    """Degrees; parts travel along the belt's +x axis rotated by yaw."""
    length: PositiveFloat = 1.6
    width: PositiveFloat = 0.3
    height: PositiveFloat = 0.75
    """Height of the belt surface above the floor, metres."""
    speed: Annotated[float, Field(ge=0, le=2.0)] = 0.1
    """Belt speed, m/s."""
    end_stop: bool = True
    """A stop at the downstream end that parts pile against; without it parts fall off."""
    beam_break: BeamBreak | None = BeamBreak()
    friction: NonNegFloat = 0.8


class Part(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    shape: Literal["box", "cylinder"]
    size: tuple[PositiveFloat, ...]
    """box: [x, y, z]; cylinder: [diameter, height]. Metres."""
    mass: PositiveFloat = 0.1
    """Kilograms."""
    color: Rgba = (0.8, 0.3, 0.2, 1.0)
    friction: NonNegFloat = 1.0

    @model_validator(mode="after")
    def _size_matches_shape(self) -> Part:
        want = {"box": 3, "cylinder": 2}[self.shape]
        if len(self.size) != want:
            raise ValueError(f"size for shape {self.shape!r} needs {want} numbers, got {len(self.size)}")
        return self

    @property
    def half_height(self) -> float:
        return self.size[-1] / 2


class Feeder(_Model):
    conveyor: str = "conveyor-0"
    """Name of the conveyor the parts are put on."""
    parts_per_episode: Annotated[int, Field(ge=1, le=50)] = 3
    first_arrival: tuple[NonNegFloat, NonNegFloat] = (0.5, 2.0)
    """Range in seconds (uniform) of the first arrival after reset."""
    interval: tuple[PositiveFloat, PositiveFloat] = (5.0, 7.0)
    """Range in seconds (uniform) between consecutive arrivals."""
    mix: dict[str, PositiveFloat]
    """Relative frequency of each part in the catalogue, by name."""
    lateral_jitter: NonNegFloat = 0.03
    """Half-range in metres of the part's offset across the belt."""
    yaw_jitter: Annotated[float, Field(ge=0, le=180)] = 15.0
    """Half-range in degrees of the part's yaw on arrival."""
    spawn_offset: NonNegFloat = 0.06
    """Distance in metres from the upstream end of the belt where parts are put down."""

    @field_validator("first_arrival", "interval")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
        return v


class Bin(_Model):
    position: Vec3
    """Centre of the bin floor, metres."""
    size: Size3 = (0.3, 0.3, 0.12)
    """Inner length, width and wall height, metres."""
    wall: PositiveFloat = 0.01
    color: Rgba = (0.2, 0.35, 0.7, 1.0)


class Table(_Model):
    position: Vec2
    """Centre of the table, metres (x, y)."""
    size: Size3
    """Length, width and height (top surface height), metres."""
    color: Rgba = (0.55, 0.5, 0.45, 1.0)


class Fixture(_Model):
    urdf: str
    """Path to a URDF, relative to the layout file's folder, or to the assets folder."""
    pose: Pose
    fixed: bool = True
    scale: PositiveFloat = 1.0


class Camera(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    eye: Vec3
    target: Vec3
    up: Vec3 = (0.0, 0.0, 1.0)
    fov: Annotated[float, Field(gt=1, lt=179)] = 60.0
    """Vertical field of view, degrees."""
    near: PositiveFloat = 0.05
    far: PositiveFloat = 5.0
    width: Annotated[int, Field(ge=8, le=4096)] = 84
    height: Annotated[int, Field(ge=8, le=4096)] = 84

    @model_validator(mode="after")
    def _geometry(self) -> Camera:
        if self.near >= self.far:
            raise ValueError(f"near ({self.near}) must be smaller than far ({self.far})")
        if math.dist(self.eye, self.target) == 0:
            raise ValueError("eye and target must differ")
        return self


class CellLayout(_Model):
    """A factory cell: what stands where, and how the physics runs."""

    name: str
    description: str = ""
    floor: Floor = Floor()
    physics: Physics = Physics()
    robots: list[Robot] = Field(min_length=1)
    conveyors: list[Conveyor] = []
    parts: list[Part] = []
    feeders: list[Feeder] = []
    bins: list[Bin] = []
    tables: list[Table] = []
    fixtures: list[Fixture] = []
    cameras: list[Camera] = []

    @model_validator(mode="after")
    def _references(self) -> CellLayout:
        part_names = [p.name for p in self.parts]
        dup = {n for n in part_names if part_names.count(n) > 1}
        if dup:
            raise ValueError(f"part names must be unique, repeated: {sorted(dup)}")
        cam_names = [c.name for c in self.cameras]
        if len(set(cam_names)) != len(cam_names):
            raise ValueError("camera names must be unique")
        conveyors = {f"conveyor-{i}" for i in range(len(self.conveyors))}
        for i, f in enumerate(self.feeders):
            if f.conveyor not in conveyors:
                raise ValueError(f"feeders[{i}].conveyor: no conveyor named {f.conveyor!r} (have {sorted(conveyors)})")
            unknown = sorted(set(f.mix) - set(part_names))
            if unknown:
                raise ValueError(f"feeders[{i}].mix: unknown parts {unknown} (catalogue: {part_names})")
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
        for kind, items in (("conveyors", self.conveyors), ("tables", self.tables), ("bins", self.bins)):
            for i, item in enumerate(items):
                x, y = item.position[0], item.position[1]
                if off_floor(x, y):
                    raise ValueError(
                        f"{kind}[{i}].position: ({x}, {y}) is outside the floor (|x| <= {hx}, |y| <= {hy})"
                    )
        return self

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
        shown = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(value, dict) else f" (got {value!r})"
        problems.append(f"{loc}: {msg}{shown}")
    return problems


def parse_layout(data: dict, source: str = "<layout>", base_dir: Path | None = None) -> CellLayout:
    """Validate a layout given as a dict; ``source`` names it in errors."""
    try:
        layout = CellLayout.model_validate(data)
    except ValidationError as err:
        raise LayoutError(source, _format_errors(err)) from None
    missing = []
    for i, fx in enumerate(layout.fixtures):
        if resolve_asset(fx.urdf, base_dir) is None:
            missing.append(
                f"fixtures[{i}].urdf: file not found: {fx.urdf!r} (looked beside the layout and in {ASSETS_DIR})"
            )
    if missing:
        raise LayoutError(source, missing)
    return layout


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LayoutError(source, ["file not found"]) from None
    except OSError as exc:
        raise LayoutError(source, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(source, [f"not valid TOML: {exc}"]) from None
    return parse_layout(data, source, path.parent)


def layout_hash(name_or_path: str | Path) -> str:
    """SHA-256 of a layout file's bytes (recorded with results)."""
    return hashlib.sha256(find_layout(name_or_path).read_bytes()).hexdigest()
