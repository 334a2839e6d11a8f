"""What every layout section shares: bounded number types, the strict base model, the error."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_LAYOUT_BYTES = 2**20
"""Largest layout file accepted (1 MiB)."""
MAX_URDF_BYTES = 16 * 2**20
"""Largest fixture URDF accepted (16 MiB)."""

# Physical bounds. A cell is at most 100 m across; nothing in it is bigger than the floor, and
# every number is finite. Each field's bounds show in ``twin layout schema``.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Coord = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False, json_schema_extra={"unit": "m"})]
"""A coordinate in metres, within the largest floor."""
Length = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, json_schema_extra={"unit": "m"})]
"""A length in metres, at most the largest floor."""
Friction = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False, json_schema_extra={"unit": "coefficient"})]
Degrees = Annotated[float, Field(ge=-360, le=360, allow_inf_nan=False, json_schema_extra={"unit": "deg"})]
Seconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False, json_schema_extra={"unit": "s"})]
Force = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False, json_schema_extra={"unit": "N"})]
"""Newtons."""
Vec2 = tuple[Coord, Coord]
Vec3 = tuple[Coord, Coord, Coord]
Size3 = tuple[Length, Length, Length]
Unit = Annotated[float, Field(ge=0, le=1, json_schema_extra={"unit": "0-1"})]
Rgba = tuple[Unit, Unit, Unit, Unit]
Gravity = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False, json_schema_extra={"unit": "m/s²"})]
"""m/s^2 along one axis (Earth: 9.81)."""
Radians = Annotated[float, Field(ge=-6.3, le=6.3, allow_inf_nan=False, json_schema_extra={"unit": "rad"})]


class _Model(BaseModel):
    # the docstring under each field is its description in the JSON Schema and the layout reference
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


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
