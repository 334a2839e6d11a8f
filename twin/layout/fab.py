"""The sections of a wafer-handling cluster tool: the wafer, cassettes (FOUPs) with slots, load
locks and process chambers behind slit openings, and the wafer-handling robot."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator

from twin.layout.base import Degrees, Seconds, Vec2, _Model

Height = Annotated[float, Field(gt=0, le=3, allow_inf_nan=False, json_schema_extra={"unit": "m"})]
"""Metres above the floor."""


class Wafer(_Model):
    """The wafers every cassette holds (a 300 mm silicon wafer by default)."""

    diameter: Annotated[float, Field(ge=0.05, le=0.45, allow_inf_nan=False)] = 0.3
    """Metres."""
    thickness: Annotated[float, Field(ge=0.0002, le=0.003, allow_inf_nan=False)] = 0.000775
    """Metres (SEMI M1: 775 micrometres)."""
    mass: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.128
    """Kilograms."""


class Cassette(_Model):
    """A front-opening cassette (FOUP) of horizontal slots; wafers rest on ledges at their edges."""

    position: Vec2
    """Where a wafer's centre lies in a slot, metres (x, y)."""
    yaw: Degrees = 0.0
    """Direction (degrees) from the slots towards the open front, where the robot reaches in."""
    height: Height = 0.8
    """Height of the lowest slot's ledges above the floor, metres."""
    slots: Annotated[int, Field(ge=1, le=25)] = 5
    pitch: Annotated[float, Field(ge=0.005, le=0.05, allow_inf_nan=False)] = 0.01
    """Metres between slots (SEMI E1.9: 10 mm)."""
    slot_width: Annotated[float, Field(gt=0, le=0.6, allow_inf_nan=False)] = 0.31
    """Metres between the side walls of a slot; the wafer rests on ledges 8 mm deep along them."""
    wafers: Annotated[int, Field(ge=0, le=25)] = 3
    """Slots filled from the bottom at reset."""


class Chamber(_Model):
    """A load lock or process chamber: a box behind a slit opening, with ledges inside that hold
    one wafer."""

    name: Annotated[str, Field(min_length=1, max_length=40)]
    kind: Literal["loadlock", "process"]
    position: Vec2
    """Where a wafer's centre lies inside, metres (x, y)."""
    yaw: Degrees = 0.0
    """Direction (degrees) from the wafer towards the slit."""
    height: Height = 0.8
    """Height of the ledges above the floor, metres."""
    slit_width: Annotated[float, Field(gt=0, le=0.6, allow_inf_nan=False)] = 0.34
    """Metres across the slit."""
    slit_height: Annotated[float, Field(gt=0, le=0.2, allow_inf_nan=False)] = 0.03
    """Metres from the slit's bottom edge (1 cm below the ledges) to its top."""
    cycle_time: tuple[Seconds, Seconds] = (3.0, 5.0)
    """Range in seconds (uniform, seeded) of a pump-down or vent (load lock) or a process run,
    from the moment the robot's paddle has left the chamber."""

    @field_validator("cycle_time")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
        return v


class WaferRobot(_Model):
    """An R-theta-Z wafer-handling robot: it turns (theta), lifts (z) and extends a thin vacuum
    paddle radially (r); see ``twin.robots.wafer_robot``."""

    position: Vec2 = (0.0, 0.0)
    """Its turning axis on the floor, metres."""
    vacuum_force: Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)] = 1.0
    """Newtons the vacuum pads pull a wafer down with while it touches them from above."""
    pad_friction: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] = 0.3
    """Friction coefficient between pads and wafer: with the vacuum force it sets how hard the
    paddle may accelerate before the wafer slips."""


def _stations(layout) -> list[tuple[str, object]]:
    return [(f"cassettes[{i}]", c) for i, c in enumerate(layout.cassettes)] + [
        (f"chambers[{i}]", c) for i, c in enumerate(layout.chambers)
    ]


def check_fab(layout) -> None:
    """The checks that span a cluster tool's sections (raise ValueError naming the field)."""
    from twin.robots.wafer_robot import SPEC  # the robot's module reads this one

    if not (layout.cassettes or layout.chambers):
        return
    if layout.wafer_robot is None:
        raise ValueError("wafer_robot: cassettes and chambers need a [wafer_robot] to serve them")
    w = layout.wafer
    hx, hy = layout.floor.size[0] / 2, layout.floor.size[1] / 2
    for i, c in enumerate(layout.cassettes):
        if w.diameter + 0.004 > c.slot_width:
            raise ValueError(
                f"wafer.diameter: a {w.diameter * 1000:.0f} mm wafer does not fit cassettes[{i}]'s "
                f"{c.slot_width * 1000:.0f} mm slots (at least 2 mm of play each side needed)"
            )
        if c.wafers > c.slots:
            raise ValueError(f"cassettes[{i}].wafers: {c.wafers} wafers do not fit in {c.slots} slots")
        if w.thickness + SPEC.paddle_thickness + 0.002 > c.pitch:
            raise ValueError(
                f"cassettes[{i}].pitch: {c.pitch * 1000:.1f} mm leaves no room for the {SPEC.paddle_thickness * 1000:.0f} "
                "mm paddle between wafers"
            )
    for i, c in enumerate(layout.chambers):
        if w.diameter + 0.01 > c.slit_width:
            raise ValueError(
                f"chambers[{i}].slit_width: a {w.diameter * 1000:.0f} mm wafer does not pass a "
                f"{c.slit_width * 1000:.0f} mm slit (5 mm of play each side needed)"
            )
        if c.slit_height < 0.02:
            raise ValueError(f"chambers[{i}].slit_height: the paddle and a wafer need a slit at least 20 mm high")
    names = [c.name for c in layout.chambers]
    if len(set(names)) != len(names):
        raise ValueError(f"chambers: names must be unique, got {names}")
    rx, ry = layout.wafer_robot.position
    for what, s in _stations(layout):
        x, y = s.position
        if abs(x) > hx or abs(y) > hy:
            raise ValueError(f"{what}.position: ({x}, {y}) is outside the floor (|x| <= {hx}, |y| <= {hy})")
        d = math.hypot(x - rx, y - ry)
        if not SPEC.min_reach <= d <= SPEC.max_reach:
            raise ValueError(
                f"{what}.position: {d:.3f} m from the robot's axis; its paddle reaches wafers from "
                f"{SPEC.min_reach} to {SPEC.max_reach} m"
            )
        front = d - (0.13 if hasattr(s, "slots") else w.diameter / 2 + 0.05)  # where its walls begin
        if front < SPEC.min_reach + w.diameter / 2 + 0.03:
            raise ValueError(
                f"{what}.position: its front is {front:.3f} m from the robot's axis; a wafer on the retracted paddle "
                f"reaches {SPEC.min_reach + w.diameter / 2:.3f} m as it turns, so the station must stand at least "
                f"{SPEC.min_reach + w.diameter / 2 + 0.03 - front + d:.3f} m away"
            )
        facing = math.degrees(math.atan2(ry - y, rx - x))
        off = (facing - s.yaw + 180) % 360 - 180
        if abs(off) > 1.0:
            raise ValueError(f"{what}.yaw: its opening must face the robot (yaw {facing:.1f} degrees), got {s.yaw}")
        top = s.height + (s.slots - 1) * s.pitch if hasattr(s, "slots") else s.height
        if not (SPEC.z_min <= s.height - 0.005 and top + 0.01 <= SPEC.z_max):
            raise ValueError(f"{what}.height: the paddle works from {SPEC.z_min} to {SPEC.z_max} m above the floor")
