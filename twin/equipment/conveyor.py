"""Conveyors: a belt that carries what lies on it, an optional end stop and a beam-break sensor."""

from __future__ import annotations

import math

import numpy as np

from twin.layout import Conveyor as ConveyorConfig
from twin.sensors import BeamBreak
from twin.world import World

BELT_THICKNESS = 0.04
FRAME_RGBA = (0.35, 0.37, 0.4, 1.0)
BELT_RGBA = (0.12, 0.12, 0.13, 1.0)


_ZERO3 = (0.0, 0.0, 0.0)
RAIL = 0.025  # half-height of the side rails under the belt's edges, metres
LEG = 0.025  # half-side of a leg's square section, metres
LEG_PITCH = 0.8  # metres between pairs of legs along the belt


def _frame_boxes(config: ConveyorConfig) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The conveyor's frame in its own frame (x along the belt): side rails under the belt's edges,
    pairs of legs to the floor and a stretcher between each pair, as (half extents, centre)."""
    lx, wy, h = config.length / 2, config.width / 2, config.height - BELT_THICKNESS
    boxes = [((lx, RAIL / 2, RAIL), (0.0, s * (wy - RAIL / 2), h - RAIL)) for s in (-1, 1)]
    n = max(2, math.ceil(config.length / LEG_PITCH) + 1)
    for i in range(n):
        x = -lx + LEG + i * (2 * lx - 2 * LEG) / (n - 1)
        boxes += [((LEG, LEG, (h - 2 * RAIL) / 2), (x, s * (wy - LEG), (h - 2 * RAIL) / 2)) for s in (-1, 1)]
        boxes.append(((LEG / 2, wy - 2 * LEG, LEG / 2), (x, 0.0, 0.15)))
    return boxes


class Conveyor:
    """A belt that carries whatever rests on it at belt speed.

    The belt is a static body given a surface velocity: PyBullet's contact solver then drives
    resting parts by friction exactly as a moving belt would (they slip if held back, stop at the
    end stop, fall off an open end). The belt body creeps along with its velocity during a control
    step and is put back before the next one, so it never wanders.
    """

    def __init__(self, world: World, name: str, config: ConveyorConfig) -> None:
        self.world = world
        self.name = name
        self.config = config
        yaw = math.radians(config.yaw)
        self.direction = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        self.lateral = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        self.orn = tuple(world.p.getQuaternionFromEuler([0, 0, yaw]))
        cx, cy = config.position
        self.center = np.array([cx, cy, config.height - BELT_THICKNESS / 2])
        self.surface_z = config.height
        half = (config.length / 2, config.width / 2)
        self.id = world.create_box(
            name,
            (half[0], half[1], BELT_THICKNESS / 2),
            self.center,
            self.orn,
            rgba=BELT_RGBA,
            friction=config.friction,
        )
        self.frame = world.create_compound(f"{name}-frame", _frame_boxes(config), (cx, cy, 0.0), rgba=FRAME_RGBA)
        world.p.resetBasePositionAndOrientation(self.frame, [cx, cy, 0.0], self.orn)
        self.running, self.speed_scale = True, 1.0
        self._set_velocity()
        self._center_list = self.center.tolist()
        self.dir_xy = (math.cos(yaw), math.sin(yaw))
        """The belt's direction of travel in the floor plane, as Python floats."""
        if config.end_stop:
            stop_pos = self.center + self.direction * (half[0] + 0.01) + np.array([0, 0, 0.03])
            world.create_box(f"{name}-stop", (0.01, half[1], 0.05), stop_pos, self.orn, rgba=(0.9, 0.75, 0.1, 1.0))
        self.beam: BeamBreak | None = None
        self.beam_blind = False
        """A beam-break fault: the beam reads nothing while this is on."""
        self._beam_along = math.inf
        if config.beam_break is not None:
            self._beam_along = half[0] - config.beam_break.offset
            at = self.center + self.direction * (half[0] - config.beam_break.offset)
            at[2] = config.height + config.beam_break.height
            reach = self.lateral * (half[1] + 0.03)
            self.beam = BeamBreak(world, at - reach, at + reach)

    def _set_velocity(self) -> None:
        speed = self.config.speed * self.speed_scale if self.running else 0.0
        self.velocity = speed * self.direction
        self._home = self.center - self.velocity * self.world.control_dt / 2  # creeps through the centre
        self._home_list, self._velocity_list = self._home.tolist(), self.velocity.tolist()

    def set_running(self, running: bool) -> None:
        """Run or stop the belt (a jam stops it; parts on it stand still)."""
        self.running = bool(running)
        self._set_velocity()

    def set_speed_scale(self, scale: float) -> None:
        """Run the belt at ``scale`` times its layout speed (randomisation)."""
        self.speed_scale = float(scale)
        self._set_velocity()

    def read_beam(self) -> int | None:
        """What breaks the beam now (None when nothing does, or the beam is blind)."""
        if self.beam is None or self.beam_blind:
            return None
        return self.beam.read()

    def start(self) -> np.ndarray:
        """Upstream end of the belt centre line, on the surface."""
        p = self.center - self.direction * self.config.length / 2
        p[2] = self.surface_z
        return p

    def pre_step(self) -> None:
        """Put the belt back and give it its surface velocity for the next control step."""
        p = self.world.p
        p.resetBasePositionAndOrientation(self.id, self._home_list, self.orn)
        p.resetBaseVelocity(self.id, self._velocity_list, _ZERO3)

    def near_beam(self, pos, margin: float = 0.15) -> bool:
        """Whether ``pos`` is within ``margin`` metres (along the belt) of the beam-break or past it.

        Only a part this close can be what breaks the beam, so the beam is read only then.
        """
        (cx, cy, _), (dx, dy) = self._center_list, self.dir_xy
        return (pos[0] - cx) * dx + (pos[1] - cy) * dy >= self._beam_along - margin

    def on_belt(self, pos, half_height: float) -> bool:
        """Whether a part centred at ``pos`` rests on the belt surface."""
        (cx, cy, _), (dx, dy) = self._center_list, self.dir_xy
        rx, ry = pos[0] - cx, pos[1] - cy
        along, across = rx * dx + ry * dy, ry * dx - rx * dy  # lateral = (-dy, dx)
        return (
            abs(along) <= self.config.length / 2 + 0.01
            and abs(across) <= self.config.width / 2 + 0.01
            and abs(pos[2] - self.surface_z - half_height) < 0.015
        )
