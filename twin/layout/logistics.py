"""The sections of a logistics floor: AGVs with range scanners, walls, racks, roller stations
where totes are handed over, the totes, and people walking seeded paths."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator

from twin.layout.base import Degrees, Length, Seconds, Size3, Vec2, _Model

Speed = Annotated[float, Field(gt=0, le=5, allow_inf_nan=False, json_schema_extra={"unit": "m/s"})]
"""Metres per second."""


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
    return v


class Scanner(_Model):
    """A 2-D laser range scanner (a safety scanner) on an AGV: a fan of horizontal beams."""

    beams: Annotated[int, Field(ge=1, le=1024)] = 64
    """Number of beams, spread evenly over ``fov``."""
    fov: Annotated[float, Field(gt=0, le=360, allow_inf_nan=False)] = 360.0
    """Field of view in degrees, centred on the AGV's heading."""
    max_range: Annotated[float, Field(gt=0, le=30, allow_inf_nan=False)] = 6.0
    """Metres from the AGV's centre; a beam that hits nothing reads this."""
    noise: Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)] = 0.01
    """Standard deviation in metres of the Gaussian noise on each reading (seeded per episode)."""
    height: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] = 0.15
    """Height of the scan plane above the floor, metres."""


class AGV(_Model):
    """A differential-drive AGV (``twin.robots.agv``): where it starts and how it may move."""

    position: Vec2
    """Start position of its centre on the floor, metres."""
    yaw: Degrees = 0.0
    """Start heading, degrees about +z (0: facing +x)."""
    max_speed: Annotated[float, Field(gt=0, le=3, allow_inf_nan=False)] = 1.2
    """Top speed, m/s."""
    max_turn_rate: Annotated[float, Field(gt=0, le=6, allow_inf_nan=False)] = 1.5
    """Top turn rate, rad/s."""
    max_accel: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 1.0
    """Metres per second squared the speed command may change by (and the turn rate by this over
    half the wheel track)."""
    safety_radius: Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)] = 0.5
    """Metres between its footprint and a person inside which the person counts as too close."""
    scanner: Scanner = Scanner()
    route: Annotated[list[Vec2], Field(max_length=64)] = []
    """Waypoints (metres) an AGV the task does not drive shuttles along, to the last and back."""


class Wall(_Model):
    start: Vec2
    """One end of the wall's centre line, metres."""
    end: Vec2
    thickness: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] = 0.1
    """Metres."""
    height: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 1.5
    """Metres."""

    @property
    def length(self) -> float:
        return math.dist(self.start, self.end)

    def footprint(self) -> tuple[tuple[float, float], tuple[float, float], float]:
        """Centre, half extents and yaw (degrees) of its rectangle on the floor."""
        (x0, y0), (x1, y1) = self.start, self.end
        yaw = math.degrees(math.atan2(y1 - y0, x1 - x0))
        return ((x0 + x1) / 2, (y0 + y1) / 2), (self.length / 2 + self.thickness / 2, self.thickness / 2), yaw


class Rack(_Model):
    """A shelving rack: a solid obstacle on the floor."""

    position: Vec2
    """Centre of its footprint, metres."""
    size: Size3 = (2.0, 0.8, 2.0)
    """Metres along its x, y and height."""
    yaw: Degrees = 0.0

    def footprint(self) -> tuple[tuple[float, float], tuple[float, float], float]:
        return self.position, (self.size[0] / 2, self.size[1] / 2), self.yaw


class Station(_Model):
    """A roller-conveyor station where an AGV docks beside its dock end to take or hand over a tote.

    The bed runs along its +x axis (turned by ``yaw``); the dock end is at +x. An AGV docks side
    on beside the dock end (heading ``yaw`` + 90 degrees with the station on its left, or - 90
    with it on its right), 3 cm clear of it. A ``pickup`` station's rollers
    push its waiting tote onto a docked AGV's deck; a ``dropoff`` station's rollers draw a tote
    off the deck towards its far end, where delivered totes stay: a bed takes as many as fit end
    to end (with 5 cm between them), and each tote's drop-off is drawn among those with room.
    """

    name: Annotated[str, Field(min_length=1, max_length=40)]
    kind: Literal["pickup", "dropoff"]
    position: Vec2
    """Centre of the roller bed, metres."""
    yaw: Degrees = 0.0
    length: Annotated[float, Field(ge=0.5, le=5, allow_inf_nan=False)] = 1.2
    """Metres along the rollers."""
    width: Annotated[float, Field(ge=0.2, le=2, allow_inf_nan=False)] = 0.5
    """Metres across the rollers, between the side guides."""
    height: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] = 0.35
    """Height of the roller surface above the floor, metres: the AGVs' deck height."""
    speed: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.4
    """Roller surface speed, m/s."""
    totes_per_episode: Annotated[int, Field(ge=1, le=20)] = 2
    """Totes a pickup station supplies in an episode, one at a time."""
    interval: tuple[Seconds, Seconds] = (2.0, 4.0)
    """Range in seconds (uniform, seeded) from one tote leaving a pickup station to the next arriving."""

    _order = field_validator("interval")(_ordered)

    def footprint(self) -> tuple[tuple[float, float], tuple[float, float], float]:
        return self.position, (self.length / 2, self.width / 2), self.yaw


class Tote(_Model):
    """The tote every station handles (a Euro container by default)."""

    size: Size3 = (0.4, 0.3, 0.22)
    """Metres along the rollers, across them, and high."""
    mass: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 4.0
    """Kilograms, contents included."""
    friction: Annotated[float, Field(ge=0.1, le=2, allow_inf_nan=False)] = 0.6


class Person(_Model):
    """Someone walking back and forth along a path at a seeded pace; they do not give way."""

    path: Annotated[list[Vec2], Field(min_length=2, max_length=32)]
    """Waypoints in metres; the person walks to the last, pauses, and walks back."""
    speed: tuple[Speed, Speed] = (1.0, 1.4)
    """Range of walking speeds, m/s (one drawn per episode)."""
    pause: tuple[Seconds, Seconds] = (0.5, 2.0)
    """Range in seconds of the pause at each end of the path."""
    radius: Annotated[float, Field(ge=0.1, le=1, allow_inf_nan=False)] = 0.25
    """Metres: the person is a cylinder this wide ..."""
    height: Length = 1.7
    """... and this tall."""

    _order = field_validator("speed", "pause")(_ordered)


Rect = tuple[tuple[float, float], tuple[float, float], float]


def capacity(station: Station, tote: Tote) -> int:
    """Totes a drop-off station's bed holds end to end (delivered totes stay where they stop)."""
    return int((station.length - 0.1) // (tote.size[0] + 0.05))


def corners(rect: Rect) -> list[tuple[float, float]]:
    """The four corners of a rectangle given as (centre, half extents, yaw in degrees)."""
    (x, y), (hx, hy), yaw = rect
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    return [
        (x + c * sx * hx - s * sy * hy, y + s * sx * hx + c * sy * hy)
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]


def overlap(a: Rect, b: Rect) -> bool:
    """Whether two rectangles on the floor overlap (separating-axis test)."""
    pa, pb = corners(a), corners(b)
    for rect in (a, b):
        yaw = math.radians(rect[2])
        for ax in ((math.cos(yaw), math.sin(yaw)), (-math.sin(yaw), math.cos(yaw))):
            da = [p[0] * ax[0] + p[1] * ax[1] for p in pa]
            db = [p[0] * ax[0] + p[1] * ax[1] for p in pb]
            if max(da) <= min(db) or max(db) <= min(da):
                return False
    return True


def check_floor(layout) -> None:
    """The checks that span a logistics floor's sections (raise ValueError naming the field)."""
    from twin.robots.agv import SPEC  # the AGV's module reads this one

    hx, hy = layout.floor.size[0] / 2, layout.floor.size[1] / 2

    def on_floor(points, what: str) -> None:
        for x, y in points:
            if abs(x) > hx + 1e-9 or abs(y) > hy + 1e-9:
                raise ValueError(
                    f"{what}: reaches ({x:.3g}, {y:.3g}), beyond the floor (|x| <= {hx}, |y| <= {hy}); "
                    "move it or enlarge floor.size"
                )

    obstacles: list[tuple[str, Rect]] = []
    for i, w in enumerate(layout.walls):
        if w.length < 0.01:
            raise ValueError(f"walls[{i}].end: the wall's ends must be at least 1 cm apart")
        on_floor(corners(w.footprint()), f"walls[{i}]")
        obstacles.append((f"walls[{i}]", w.footprint()))
    for i, r in enumerate(layout.racks):
        on_floor(corners(r.footprint()), f"racks[{i}]")
        obstacles.append((f"racks[{i}]", r.footprint()))
    names = [s.name for s in layout.stations]
    if len(set(names)) != len(names):
        raise ValueError(f"stations: names must be unique, got {names}")
    tote = layout.tote
    for i, s in enumerate(layout.stations):
        on_floor(corners(s.footprint()), f"stations[{i}].position")
        obstacles.append((f"stations[{i}]", s.footprint()))
        if abs(s.height - SPEC.deck_height) > 0.02:
            raise ValueError(
                f"stations[{i}].height: {s.height} m, but the AGVs' deck is {SPEC.deck_height} m high (the rollers "
                "hand totes over only within 2 cm)"
            )
        if tote.size[1] > s.width - 0.02:
            raise ValueError(f"tote.size: a tote {tote.size[1]} m across does not fit stations[{i}] ({s.width} m wide)")
        if tote.size[0] > s.length - 0.1:
            raise ValueError(f"tote.size: a tote {tote.size[0]} m long does not fit stations[{i}] ({s.length} m long)")
        dock = SPEC.dock_rect(s)
        on_floor(corners(dock), f"stations[{i}]: its dock (where an AGV parks beside it)")
        for what, rect in obstacles[:-1]:
            if overlap(dock, rect):
                raise ValueError(f"stations[{i}]: its dock (where an AGV parks beside it) is blocked by {what}")
    room = sum(capacity(s, tote) for s in layout.stations if s.kind == "dropoff")
    for i, s in enumerate(layout.stations):
        if s.kind == "pickup" and layout.stations and s.totes_per_episode > room:
            raise ValueError(
                f"stations[{i}].totes_per_episode: {s.totes_per_episode} totes do not fit on the drop-off stations "
                f"(they hold {room} in all)"
            )
    if tote.size[0] > SPEC.deck_size[1] - 0.1 or tote.size[1] > SPEC.deck_size[0] - 0.1:
        raise ValueError(
            f"tote.size: a {tote.size[0]} x {tote.size[1]} m tote does not fit the AGV's "
            f"{SPEC.deck_size[1]} x {SPEC.deck_size[0]} m deck"
        )
    starts: list[Rect] = []
    for i, a in enumerate(layout.agvs):
        rect = SPEC.footprint(a.position, a.yaw)
        on_floor(corners(rect), f"agvs[{i}].position")
        for what, other in obstacles:
            if overlap(rect, other):
                raise ValueError(
                    f"agvs[{i}].position: an AGV at ({a.position[0]:.3g}, {a.position[1]:.3g}) would stand inside "
                    f"{what}; start it in an aisle"
                )
        for j, other in enumerate(starts):
            if overlap(rect, other):
                raise ValueError(f"agvs[{i}].position: an AGV there would stand inside agvs[{j}]")
        starts.append(rect)
        on_floor(a.route, f"agvs[{i}].route")
    for i, person in enumerate(layout.people):
        on_floor(person.path, f"people[{i}].path")
        if sum(math.dist(a, b) for a, b in zip(person.path, person.path[1:], strict=False)) < 0.1:
            raise ValueError(f"people[{i}].path: the path must be at least 10 cm long")
    if layout.stations and not layout.agvs:
        raise ValueError("stations: stations hand totes to AGVs, and the layout has no [[agvs]]")
