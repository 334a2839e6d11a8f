"""A cluster tool's equipment: cassettes (FOUPs) with slot ledges, chambers behind slit openings,
and the wafers.

Each station is two static bodies: its ledges, on which wafers may rest, and its walls (slot
walls, the chamber's box and the slit's edges), which a wafer must never touch.
"""

from __future__ import annotations

import math

from twin.layout import Cassette as CassetteConfig
from twin.layout import Chamber as ChamberConfig
from twin.layout import Wafer as WaferConfig
from twin.world import World

LEDGE_DEPTH = 0.02  # metres a ledge reaches in from its wall
LEDGE_T = 0.001  # ledge thickness, metres
WALL = 0.005  # half thickness of walls, metres
WALL_RGBA = (0.85, 0.87, 0.9, 0.55)  # clear polycarbonate
CHAMBER_RGBA = (0.55, 0.6, 0.68, 1.0)
LEDGE_RGBA = (0.2, 0.22, 0.25, 1.0)
WAFER_RGBA = (0.45, 0.5, 0.62, 1.0)

Box = tuple[tuple[float, float, float], tuple[float, float, float]]


class WaferStation:
    """A place wafers rest: a cassette's slots or a chamber's one position."""

    def __init__(self, world: World, name: str, config, heights: list[float], walls: list[Box], width: float) -> None:
        self.world, self.name, self.config = world, name, config
        self.yaw = math.radians(config.yaw)
        self.heights = heights
        """Height of each position's ledge tops, metres."""
        x, y = config.position
        self.xy = (float(x), float(y))
        half = width / 2
        ledges: list[Box] = []
        for h in heights:
            for s in (-1, 1):
                ledges.append(
                    ((0.08, LEDGE_DEPTH / 2, LEDGE_T / 2), (0.0, s * (half - LEDGE_DEPTH / 2), h - LEDGE_T / 2))
                )
        self.ledges = self._build(f"{name}-ledges", ledges, LEDGE_RGBA)
        self.walls = self._build(
            f"{name}-walls", walls, WALL_RGBA if isinstance(config, CassetteConfig) else CHAMBER_RGBA
        )

    def _build(self, name: str, boxes: list[Box], rgba) -> int:
        w = self.world
        body = w.create_compound(name, boxes, (*self.xy, 0.0), rgba=rgba, friction=0.5)
        w.p.resetBasePositionAndOrientation(body, [*self.xy, 0.0], w.p.getQuaternionFromEuler([0, 0, self.yaw]))
        return body

    def local(self, xyz) -> tuple[float, float]:
        """A point's offset from the wafer position: towards the opening and across, metres."""
        dx, dy = xyz[0] - self.xy[0], xyz[1] - self.xy[1]
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return dx * c + dy * s, -dx * s + dy * c


def build_cassette(world: World, name: str, config: CassetteConfig) -> WaferStation:
    heights = [config.height + k * config.pitch for k in range(config.slots)]
    half = config.slot_width / 2
    lo, hi = config.height - 0.02, heights[-1] + 0.02
    zc, hz = (lo + hi) / 2, (hi - lo) / 2
    walls: list[Box] = [((0.15, WALL, hz), (-0.02, s * (half + WALL), zc)) for s in (-1, 1)]  # sides
    walls.append(((WALL, half + 2 * WALL, hz), (-0.17 - WALL, 0.0, zc)))  # back
    walls += [((0.15 + WALL, half + 2 * WALL, WALL), (-0.02, 0.0, z)) for z in (lo - WALL, hi + WALL)]  # floor, roof
    walls.append(((0.15, 0.15, (lo - 2 * WALL) / 2), (-0.02, 0.0, (lo - 2 * WALL) / 2)))  # stand
    return WaferStation(world, name, config, heights, walls, config.slot_width)


def build_chamber(world: World, name: str, config: ChamberConfig, wafer: WaferConfig) -> WaferStation:
    h = config.height
    inner = wafer.diameter / 2 + 0.04  # half the chamber's inside
    half_w = max(config.slit_width / 2 + 0.03, inner)
    lo, hi = h - 0.05, h + 0.08
    zc, hz = (lo + hi) / 2, (hi - lo) / 2
    s_lo, s_hi = h - 0.01, h - 0.01 + config.slit_height
    front = inner + WALL
    walls: list[Box] = [((inner + 2 * WALL, WALL, hz), (0.0, s * (half_w + WALL), zc)) for s in (-1, 1)]  # sides
    walls.append(((WALL, half_w + 2 * WALL, hz), (-front, 0.0, zc)))  # back
    walls += [((inner + 2 * WALL, half_w + 2 * WALL, WALL), (0.0, 0.0, z)) for z in (lo - WALL, hi + WALL)]
    # the front wall, around the slit
    side = (half_w - config.slit_width / 2) / 2
    walls += [((WALL, side, hz), (front, s * (config.slit_width / 2 + side), zc)) for s in (-1, 1)]
    walls.append(((WALL, half_w, (s_lo - lo) / 2), (front, 0.0, (lo + s_lo) / 2)))
    walls.append(((WALL, half_w, (hi - s_hi) / 2), (front, 0.0, (s_hi + hi) / 2)))
    walls.append(((inner, half_w, (lo - 2 * WALL) / 2), (0.0, 0.0, (lo - 2 * WALL) / 2)))  # stand
    return WaferStation(world, name, config, [h], walls, 2 * (wafer.diameter / 2 + LEDGE_DEPTH / 2 + 0.001))


def build_wafer(world: World, name: str, config: WaferConfig) -> int:
    p = world.p
    r, t = config.diameter / 2, config.thickness
    col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=t)
    vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=t, rgbaColor=list(WAFER_RGBA))
    body = p.createMultiBody(config.mass, col, vis, [0.0, 0.0, -5.0])
    world._register(name, body)
    # friction combines by product in PyBullet: 1.0 here lets the pads' and ledges' own values rule
    p.changeDynamics(body, -1, lateralFriction=1.0, rollingFriction=0.0, spinningFriction=0.0)
    # never asleep: a wafer left lying all episode would otherwise start the next one asleep
    p.changeDynamics(body, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING)
    return body
