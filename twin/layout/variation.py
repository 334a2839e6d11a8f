"""What goes wrong and what varies: the ``[faults]`` and ``[randomization]`` sections.

Both are drawn from the episode seed (through a side stream, so a cell's nominal draws stay what
they were). A fault family present in ``[faults]`` is on; so is every non-trivial range in
``[randomization]``. Each family and range says below which equipment it acts on; a layout that
asks for one its cell lacks is refused naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from twin.layout.base import _Model

if TYPE_CHECKING:
    from twin.layout.schema import CellLayout

RatePerMinute = Annotated[float, Field(ge=0, le=60, allow_inf_nan=False, json_schema_extra={"unit": "1/min"})]
"""Faults per minute of simulated time, per piece of equipment (0 switches the family off)."""
FaultSeconds = Annotated[float, Field(gt=0, le=600, allow_inf_nan=False, json_schema_extra={"unit": "s"})]
"""A fault's length in seconds, above 0 and at most 10 minutes."""
Scale = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, json_schema_extra={"unit": "x nominal"})]
"""A factor in (0, 1] that a fault scales something down by."""


def _ordered(model: _Model, *fields: str) -> None:
    for name in fields:
        lo, hi = getattr(model, name)
        if lo > hi:
            raise ValueError(f"{name}: low ({lo:g}) is above high ({hi:g})")


class _RateFault(_Model):
    rate: RatePerMinute = 1.0
    """Faults per minute of simulated time on each piece of equipment the family acts on; the time
    between one fault's end and the next fault's start is exponential with this rate."""
    duration: tuple[FaultSeconds, FaultSeconds] = (3.0, 10.0)
    """Seconds a fault lasts, drawn uniformly from [low, high]."""

    @model_validator(mode="after")
    def _order(self):
        _ordered(self, "duration")
        return self


class ConveyorJam(_RateFault):
    """Belts and roller beds stop (a jam): parts on them stand still until it clears.
    Acts on ``[[conveyors]]`` and AGV ``[[stations]]``."""


class MachineBreakdown(_Model):
    """A machine (or process chamber) goes down: its cycle stops until it is repaired and the
    stack light shows red; down time counts against its OEE availability. Acts on
    ``[[machines]]`` and ``[[chambers]]``."""

    mtbf: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] = 60.0
    """Mean time between failures, seconds of simulated time."""
    mttr: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 8.0
    """Mean time to repair, seconds (above 0)."""
    distribution: Literal["exponential", "fixed"] = "exponential"
    """``exponential``: times between failures and repair times are exponential with these means;
    ``fixed``: they are exactly ``mtbf`` and ``mttr``."""


class CameraFault(_RateFault):
    """A camera drops frames (black), freezes (repeats its last frame) or turns noisy. Acts on
    ``[[cameras]]``."""

    modes: Annotated[list[Literal["dropped", "frozen", "noisy"]], Field(min_length=1, max_length=3)] = [
        "dropped",
        "frozen",
        "noisy",
    ]
    """The ways a camera fails; each fault picks one at random."""
    noise: Annotated[float, Field(gt=0, le=128, allow_inf_nan=False)] = 25.0
    """Standard deviation of the ``noisy`` mode's pixel noise, in 8-bit levels."""
    duration: tuple[FaultSeconds, FaultSeconds] = (0.5, 3.0)


class BeamMissed(_RateFault):
    """A conveyor's beam-break sees nothing. A part that passes the beam while it is blind is never
    logged as missed: it waits at the end stop (or falls off an open end), still in play, so the
    tasks keep it as the part they observe and a robot may still take it; the episode does not end
    on it. A part that comes to rest in the beam is logged missed once the fault ends. Acts on
    conveyors with a ``beam_break``."""


class InspectionError(_RateFault):
    """An inspection sensor misreads: while the fault lasts, each reading is wrong with chance
    ``error``. Acts on ``[[inspections]]``."""

    error: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    """Chance that a reading taken during the fault is the wrong verdict."""
    duration: tuple[FaultSeconds, FaultSeconds] = (5.0, 15.0)


class GraspSlip(_RateFault):
    """A tool loses grip for a while: the gripper's finger friction, the suction seal's force or
    the wafer paddle's vacuum and pad friction drop to ``grip_scale`` of nominal. Acts on
    ``[[robots]]`` and the ``[wafer_robot]``."""

    grip_scale: Scale = 0.25
    duration: tuple[FaultSeconds, FaultSeconds] = (5.0, 15.0)


class JointSlowdown(_RateFault):
    """A robot's drives slow down: arm joints track their targets ``speed_scale`` times as
    fast, the wafer robot's and the AGV's speed limits drop to ``speed_scale`` of nominal. Acts on
    ``[[robots]]``, the ``[wafer_robot]`` and ``[[agvs]]``."""

    speed_scale: Scale = 0.4
    duration: tuple[FaultSeconds, FaultSeconds] = (5.0, 15.0)


class OutOfSpec(_Model):
    """Parts arrive out of specification: each part a feeder sends is, with chance ``share``,
    ``size_scale`` times its nominal size and its mass scaled by a factor drawn from
    ``mass_scale``. Acts on ``[[feeders]]``."""

    share: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.2
    """Chance that an arriving part is out of specification."""
    size_scale: Annotated[float, Field(ge=0.5, le=2, allow_inf_nan=False)] = 1.12
    """Its size as a multiple of the nominal size, from 0.5 to 2."""
    mass_scale: tuple[
        Annotated[float, Field(ge=0.1, le=10, allow_inf_nan=False)],
        Annotated[float, Field(ge=0.1, le=10, allow_inf_nan=False)],
    ] = (1.2, 2.0)
    """Its mass as a multiple of the nominal mass (after scaling its size), drawn from [low, high]."""

    @model_validator(mode="after")
    def _order(self):
        _ordered(self, "mass_scale")
        return self


class ScannerFault(_RateFault):
    """An AGV's range scanner drops its scan (every beam reads its maximum range) or turns noisy.
    Acts on ``[[agvs]]``."""

    modes: Annotated[list[Literal["dropped", "noisy"]], Field(min_length=1, max_length=2)] = ["dropped", "noisy"]
    noise: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1
    """Standard deviation of the ``noisy`` mode's range noise, metres."""
    duration: tuple[FaultSeconds, FaultSeconds] = (1.0, 4.0)


FAMILY_MODELS: dict[str, type[_Model]] = {
    "conveyor_jam": ConveyorJam,
    "machine_breakdown": MachineBreakdown,
    "camera_fault": CameraFault,
    "beam_missed": BeamMissed,
    "inspection_error": InspectionError,
    "grasp_slip": GraspSlip,
    "joint_slowdown": JointSlowdown,
    "out_of_spec": OutOfSpec,
    "scanner_fault": ScannerFault,
}
FAULT_FAMILIES: tuple[str, ...] = tuple(FAMILY_MODELS)
"""Every fault family, in the order of the fault indicators in an observation."""


class Faults(_Model):
    """Seeded faults. Each family given here is on; leave a family out for none of it."""

    indicators: bool = False
    """Whether a task's state observation ends with one 0/1 flag per family in ``FAULT_FAMILIES``
    (1 while a fault of that family is on anywhere in the cell); off, the policy must notice
    faults from what it observes."""
    conveyor_jam: ConveyorJam | None = None
    machine_breakdown: MachineBreakdown | None = None
    camera_fault: CameraFault | None = None
    beam_missed: BeamMissed | None = None
    inspection_error: InspectionError | None = None
    grasp_slip: GraspSlip | None = None
    joint_slowdown: JointSlowdown | None = None
    out_of_spec: OutOfSpec | None = None
    scanner_fault: ScannerFault | None = None

    def families(self) -> list[str]:
        """The families that are on, in ``FAULT_FAMILIES`` order."""
        return [f for f in FAULT_FAMILIES if getattr(self, f) is not None]


def _scale_range(lo: float, hi: float) -> type:
    bound = Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]
    return tuple[bound, bound]


MassRange = _scale_range(0.1, 10)
FrictionRange = _scale_range(0.1, 5)
SizeRange = _scale_range(0.5, 2)
SpeedRange = _scale_range(0.0, 3)


class Randomization(_Model):
    """Seeded variation, drawn per episode. Every range is [low, high]; a range of [1, 1] (or a
    jitter of 0) leaves that quantity nominal."""

    part_mass: MassRange = (1.0, 1.0)
    """Each part's mass as a multiple of its nominal mass (fed parts, tray parts, pegs)."""
    part_friction: FrictionRange = (1.0, 1.0)
    """Each part's friction as a multiple of its nominal friction; on a wafer tool, the paddle
    pads' friction (which sets how hard the paddle may accelerate a wafer)."""
    part_size: SizeRange = (1.0, 1.0)
    """Each part type's size, as a multiple of nominal, per episode: one of ``size_levels``
    evenly spaced values in the range (bodies of each size are built once)."""
    size_levels: Annotated[int, Field(ge=2, le=5)] = 3
    belt_speed: SpeedRange = (1.0, 1.0)
    """Each belt's speed as a multiple of its nominal speed."""
    base_position: Annotated[float, Field(ge=0, le=0.05, allow_inf_nan=False)] = 0.0
    """Metres each robot arm's base may stand off its layout position in x and y (uniform)."""
    base_yaw: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.0
    """Degrees each robot arm's base may be turned off its layout yaw (uniform)."""
    latency: tuple[Annotated[int, Field(ge=0, le=10)], Annotated[int, Field(ge=0, le=10)]] = (0, 0)
    """Control steps between an action and its effect, drawn per episode from [low, high]."""
    action_noise: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    """Standard deviation of Gaussian noise added to every action component (actions span [-1, 1]).
    The standard randomisation leaves it out on a wafer tool, whose servo axes repeat to a tenth of a
    millimetre: noise of 1% of full speed in its commands is not what such a robot sees."""
    lighting: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    """How far lighting varies in images, 0 to 1: the light's direction turns by up to 90 degrees
    times this, its colour and ambient level vary by up to this share."""
    color_jitter: Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)] = 0.0
    """Largest change to each RGB channel (0 to 1 scale) of the cell's furniture: floor, belts,
    tables, machines (never of parts, whose colour can be what inspection reads)."""
    camera_position: Annotated[float, Field(ge=0, le=0.2, allow_inf_nan=False)] = 0.0
    """Metres each fixed camera's eye and target may move along each axis (uniform)."""

    @model_validator(mode="after")
    def _order(self) -> Randomization:
        _ordered(self, "part_mass", "part_friction", "part_size", "belt_speed", "latency")
        return self

    def active(self) -> bool:
        return self != Randomization()


STANDARD_RANDOMIZATION = Randomization(
    part_mass=(0.7, 1.4),
    part_friction=(0.7, 1.3),
    part_size=(0.95, 1.05),
    belt_speed=(0.8, 1.2),
    base_position=0.01,
    base_yaw=1.0,
    latency=(0, 1),
    action_noise=0.01,
    lighting=0.5,
    color_jitter=0.15,
    camera_position=0.02,
)
"""What ``randomize=True`` applies to a layout without its own ``[randomization]``."""


def applicable_families(layout: CellLayout) -> list[str]:
    """The fault families that have something to act on in this cell."""
    has = {
        "conveyor_jam": bool(layout.conveyors or layout.stations),
        "machine_breakdown": bool(layout.machines or layout.chambers),
        "camera_fault": bool(layout.cameras),
        "beam_missed": any(c.beam_break is not None for c in layout.conveyors),
        "inspection_error": bool(layout.inspections),
        "grasp_slip": bool(layout.robots or layout.wafer_robot is not None),
        "joint_slowdown": bool(layout.robots or layout.wafer_robot is not None or layout.agvs),
        "out_of_spec": bool(layout.feeders),
        "scanner_fault": bool(layout.agvs),
    }
    return [f for f in FAULT_FAMILIES if has[f]]


def check_variation(layout: CellLayout) -> None:
    """Refuse a fault family with nothing to act on in the cell, naming the field."""
    have = applicable_families(layout)
    for family in layout.faults.families():
        if family not in have:
            doc = (FAMILY_MODELS[family].__doc__ or "").split("Acts on")[-1].strip().rstrip(".").replace("``", "")
            raise ValueError(f"faults.{family}: this cell has nothing it acts on (it acts on {doc})")
    r = layout.randomization
    if r.belt_speed != (1.0, 1.0) and not layout.conveyors:
        raise ValueError("randomization.belt_speed: this cell has no conveyor")
    if (r.base_position or r.base_yaw) and not layout.robots:
        raise ValueError("randomization.base_position/base_yaw: this cell has no robot arm")
