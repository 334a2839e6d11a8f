"""The wafer-handling side of a twin: cassettes, chambers, wafers and the wafer robot.

A ``Fab`` is built once with the twin and stepped with it. It tracks where each wafer rests (a
cassette slot, a chamber, the paddle, or nowhere it should be), runs each chamber's cycle (a
load lock's pump-down or vent, a process chamber's recipe) once a wafer rests in it and the
paddle has left, and logs what a fab's particle audit would: every contact between a wafer and
anything but the ledges it rests on and the paddle's top (``wafer_contact``), a wafer sliding on
the paddle (``slipped``), and the peak acceleration of a held wafer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.equipment.fab import WaferStation, build_cassette, build_chamber, build_wafer
from twin.events import EventLog
from twin.layout import CellLayout
from twin.robots.wafer_robot import WaferHandler
from twin.world import World

REST_TOLERANCE = 0.004  # metres (in the plane) from a position within which a resting wafer sits in it
TOUCH = 0.0005  # metres: contact points further apart than this are only near (PyBullet reports those too)
SLIP = 0.002  # metres a held wafer may move on the paddle before it counts as slipping
PARK = (30.0, 30.0, 2.0)


@dataclass
class Wafer:
    name: str
    id: int
    home: tuple[str, int] = ("", 0)
    """Its cassette and slot."""
    place: tuple[str, int] | None = None
    """Where it rests now (station name, position index), or None (held, moving, or astray)."""
    held: bool = False
    xyz: tuple[float, float, float] = PARK
    grip: tuple[float, float] | None = None
    """Its offset on the paddle (m, paddle frame) when picked up."""
    slipped: bool = False
    in_play: bool = False
    stage: int = 0
    """How far along its route it has come: 0 in its slot, 1 in the load lock, 2 in the process
    chamber, 3 back in the load lock, 4 home in its slot."""


@dataclass
class ChamberCycle:
    state: str = "empty"  # empty, waiting (a wafer in, the paddle still there), cycling, done
    ends: float = math.inf
    busy: float = 0.0
    """Seconds spent cycling this episode."""
    down: bool = False
    """Broken down: a cycle under way stands still until the repair."""


class Fab:
    def __init__(self, world: World, layout: CellLayout) -> None:
        self.world, self.layout = world, layout
        self.cassettes = [build_cassette(world, f"cassette-{i}", c) for i, c in enumerate(layout.cassettes)]
        self.chambers = [build_chamber(world, f"chamber-{c.name}", c, layout.wafer) for c in layout.chambers]
        self.stations: list[WaferStation] = [*self.cassettes, *self.chambers]
        self.by_name = {s.name: s for s in self.stations}
        self.wafers: list[Wafer] = []
        for i, c in enumerate(layout.cassettes):
            for k in range(c.wafers):
                name = f"wafer-{i}-{k}"
                self.wafers.append(Wafer(name, build_wafer(world, name, layout.wafer), home=(f"cassette-{i}", k)))
        self._by_id = {w.id: w for w in self.wafers}
        self.robot = WaferHandler(world, "wafer_robot-0", layout.wafer_robot, [w.id for w in self.wafers])
        world.substep_hooks.append(self.robot.hold_step)
        self._supports = {s.ledges for s in self.stations}
        lock = next((s.name for s in self.chambers if s.config.kind == "loadlock"), None)
        proc = next((s.name for s in self.chambers if s.config.kind == "process"), None)
        self.route_stations = (lock, proc, lock)
        """The chambers every wafer passes through, in order, before it goes home."""
        self._half_t = layout.wafer.thickness / 2
        self.cycles = {s.name: ChamberCycle() for s in self.chambers}
        self._rng = np.random.default_rng(0)
        self._touching: set[tuple[int, int]] = set()
        self._prev_vel: dict[int, np.ndarray] = {}
        self.peak_accel = 0.0

    # -- episode ----------------------------------------------------------------------------

    def before_restore(self) -> None:
        """Drop the contacts the last episode left behind before the twin restores its state
        (PyBullet would warm-start the next episode's first contacts from them)."""
        stations = [b for s in self.stations for b in (s.ledges, s.walls)]
        self.world.forget_contacts([w.id for w in self.wafers] + [self.robot.id] + stations)

    def reset(self, rng: np.random.Generator) -> None:
        p = self.world.p
        self.robot.reset()
        self._rng = np.random.default_rng(rng.integers(2**63))
        for w in self.wafers:
            station = self.by_name[w.home[0]]
            jitter = rng.uniform(-0.001, 0.001, size=2)  # as a FOUP's slots leave them
            xyz = self.position(station, w.home[1], jitter)
            p.resetBasePositionAndOrientation(w.id, xyz, [0, 0, 0, 1])
            p.resetBaseVelocity(w.id, [0, 0, 0], [0, 0, 0])
            w.place, w.held, w.xyz, w.grip, w.slipped, w.in_play = w.home, False, tuple(xyz), None, False, True
            w.stage = 0
        for c in self.cycles.values():
            c.state, c.ends, c.busy, c.down = "empty", math.inf, 0.0, False
        self._touching.clear()
        self._prev_vel.clear()
        self.peak_accel = 0.0

    def position(self, station: WaferStation, index: int, offset=(0.0, 0.0)) -> list[float]:
        """Where a wafer's centre rests in ``station``'s position ``index`` (plus an offset in
        the station's frame, metres)."""
        c, s = math.cos(station.yaw), math.sin(station.yaw)
        x = station.xy[0] + offset[0] * c - offset[1] * s
        y = station.xy[1] + offset[0] * s + offset[1] * c
        return [x, y, station.heights[index] + self._half_t]

    # -- stepping ---------------------------------------------------------------------------

    def pre_step(self, dt: float) -> None:
        self.robot.pre_step(dt)

    def after_step(self, t: float, dt: float, log: EventLog) -> None:
        p = self.world.p
        robot = self.robot
        touching: set[tuple[int, int]] = set()
        for w in self.wafers:
            pos, _ = p.getBasePositionAndOrientation(w.id)
            w.xyz = pos
            vel = np.asarray(p.getBaseVelocity(w.id)[0])
            held = robot.holding == w.id
            if held:
                prev = self._prev_vel.get(w.id)
                if prev is not None:
                    self.peak_accel = max(self.peak_accel, float(np.linalg.norm(vel - prev)) / dt)
                gx, gy, _ = robot.to_paddle(pos)
                if w.grip is None:
                    w.grip = (gx, gy)
                elif not w.slipped and math.hypot(gx - w.grip[0], gy - w.grip[1]) > SLIP:
                    w.slipped = True
                    log.add(t, "slipped", w.name, robot.name, value=math.hypot(gx - w.grip[0], gy - w.grip[1]) * 1000)
            else:
                w.grip = None
                w.slipped = False
            self._prev_vel[w.id] = vel
            if held != w.held:
                if held:
                    log.add(t, "picked", w.name, robot.name, station=w.place[0] if w.place else None)
                    if w.place and w.place[0] in self.cycles and self.cycles[w.place[0]].state != "done":
                        log.add(t, "early_pick", w.name, robot.name, station=w.place[0])
                w.held = held
            w.place = None if held else self._resting_place(pos, vel)
            if w.place is not None and w.stage < 4 and w.place == self.next_place(w):
                w.stage += 1
                log.add(t, "wafer_done" if w.stage == 4 else "wafer_moved", w.name, station=w.place[0])
            for c in p.getContactPoints(bodyA=w.id):
                other = c[2]
                if c[8] > TOUCH:
                    continue  # near, not touching
                if other in self._supports and c[7][2] > 0.9:
                    continue  # resting on a ledge (the normal on the ledge points up into the wafer)
                if other == robot.id and c[4] == robot.paddle and c[7][2] > 0.9:
                    continue  # on the paddle's top
                if other == self.world.body("floor"):
                    continue
                touching.add((w.id, other))
            if pos[2] < 0.2 and w.in_play:
                w.in_play = False
                log.add(t, "dropped", w.name, detail="fell to the floor")
        for a, b in touching - self._touching:
            log.add(t, "wafer_contact", self.world.name_of(a), detail=self.world.name_of(b) or "")
        self._touching = touching
        self._run_chambers(t, dt, log)

    def next_place(self, w: Wafer) -> tuple[str, int] | None:
        """Where the wafer goes next on its route (None once it is home)."""
        if w.stage >= 4:
            return None
        return (self.route_stations[w.stage], 0) if w.stage < 3 else w.home

    def _resting_place(self, pos, vel) -> tuple[str, int] | None:
        if np.linalg.norm(vel) > 0.01:
            return None
        for s in self.stations:
            a, c = s.local(pos)
            if math.hypot(a, c) > REST_TOLERANCE:
                continue
            for k, h in enumerate(s.heights):
                if abs(pos[2] - h - self._half_t) < 0.0015:
                    return s.name, k
        return None

    def paddle_inside(self, station: WaferStation) -> bool:
        """Whether any of the paddle reaches past the station's opening."""
        (px, py, _), th = self.robot.pad_pose()
        tip = (px + math.cos(th) * self.robot.spec.paddle_tip, py + math.sin(th) * self.robot.spec.paddle_tip)
        return max(station.local((px, py, 0))[0], station.local((*tip, 0))[0]) < self.layout.wafer.diameter / 2 + 0.06

    def _run_chambers(self, t: float, dt: float, log: EventLog) -> None:
        for s in self.chambers:
            cyc = self.cycles[s.name]
            if cyc.down:
                cyc.ends += dt  # the cycle stands still; the wafer stays until it is done
                continue
            inside = any(w.place == (s.name, 0) for w in self.wafers)
            if cyc.state == "cycling":
                cyc.busy += dt
                if t >= cyc.ends:
                    cyc.state = "done"
                    log.add(t, "chamber_cycle", station=s.name, detail="done")
            if not inside and cyc.state in ("waiting", "done"):
                cyc.state, cyc.ends = "empty", math.inf
            elif inside and cyc.state == "empty":
                cyc.state = "waiting"
            if cyc.state == "waiting" and not self.paddle_inside(s):
                cyc.state, cyc.ends = "cycling", t + float(self._rng.uniform(*s.config.cycle_time))
                log.add(t, "chamber_cycle", station=s.name, detail="start")

    # -- results ----------------------------------------------------------------------------

    def kpis(self, log: EventLog, sim_time: float) -> dict[str, float]:
        done = sum(e.kind == "wafer_done" for e in log.events)
        process = [s for s in self.chambers if s.config.kind == "process"]
        busy = sum(self.cycles[s.name].busy for s in process)
        return {
            "wafers_completed": float(done),
            "wafers_per_hour": done / sim_time * 3600 if sim_time > 0 else 0.0,
            "wafer_contacts": float(sum(e.kind == "wafer_contact" for e in log.events)),
            "wafer_slips": float(sum(e.kind == "slipped" for e in log.events)),
            "wafers_dropped": float(sum(e.kind == "dropped" and e.part in self._names for e in log.events)),
            "peak_wafer_acceleration": self.peak_accel,
            "process_chamber_utilisation": busy / (sim_time * len(process)) if sim_time > 0 and process else math.nan,
        }

    @property
    def _names(self) -> set[str]:
        return {w.name for w in self.wafers}
