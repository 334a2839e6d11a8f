"""The logistics side of a twin: AGVs, their scanners, roller stations, totes and people.

A ``Fleet`` is built once with the twin and stepped with it. Stations hand totes over by
themselves once an AGV is docked beside them (within ``DOCK_TOLERANCE`` and ``DOCK_ANGLE``,
standing still): a pickup station's rollers and the AGV's deck rollers carry the waiting tote
across onto the deck until a photo-eye sees it centred; at a drop-off station the deck pushes the
tote across and the station's rollers draw it in. Everything moves through contact and friction.

The first AGV is the task's; the others (a fleet) shuttle along their layout routes under a
scripted controller that stops for whatever its scanner sees ahead and turns back after waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pybullet as pb

from twin.equipment.logistics import ToteStation, Walker, build_rack, build_wall
from twin.events import EventLog
from twin.layout import CellLayout
from twin.layout.logistics import capacity
from twin.robots.agv import AGV, SPEC
from twin.sensors import RangeScanners
from twin.world import World

TOUCH = 0.001  # metres: contact points further apart than this are only near (PyBullet reports those too)
DOCK_TOLERANCE = 0.05  # metres between an AGV's centre and its dock pose for a transfer to start
DOCK_ANGLE = math.radians(5.0)  # radians of heading error allowed at the dock
STILL_SPEED = 0.02  # m/s (and rad/s / 2) under which a docked AGV counts as standing still
CENTRED = 0.01  # metres from the deck's centre at which the photo-eye stops the deck
TOTE_RGBA = (0.15, 0.35, 0.75, 1.0)
PARKING = (60.0, 60.0, 2.0)  # totes not in play wait asleep from here on, a metre apart, far off the floor

TOTE_STATES = (
    "parked", "queued", "waiting", "loading", "on_agv", "unloading", "on_station", "delivered", "loose", "dropped"
)  # fmt: skip
"""A tote's life: parked out of play, queued for its arrival, waiting on its pickup station,
loading onto an AGV, carried, unloading, on its drop-off, delivered (at rest there); loose when
a transfer broke off with it in between, dropped once it lies on the floor."""


@dataclass
class Tote:
    name: str
    id: int
    source: str = ""
    """The pickup station it comes from."""
    target: str = ""
    """The drop-off station it must go to (drawn per episode)."""
    state: str = "parked"
    arrival: float = math.inf
    agv: int | None = None
    """The AGV carrying it (or taking it on, or handing it over)."""
    station: str = ""
    rest_since: float = math.inf
    xyz: tuple[float, float, float] = PARKING


@dataclass
class _Shuttle:
    """The scripted controller of a fleet AGV: shuttle along the route, stop for obstacles ahead."""

    route: list[tuple[float, float]]
    index: int = 1
    step: int = 1
    blocked: float = 0.0
    patience: float = 3.0
    front: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


class Fleet:
    def __init__(self, world: World, layout: CellLayout) -> None:
        self.world, self.layout = world, layout
        p = world.p
        self.walls = [build_wall(world, f"wall-{i}", w) for i, w in enumerate(layout.walls)]
        self.racks = [build_rack(world, f"rack-{i}", r) for i, r in enumerate(layout.racks)]
        self.stations = [ToteStation(world, f"station-{s.name}", s) for s in layout.stations]
        self.by_name = {s.config.name: s for s in self.stations}
        self.agvs = [AGV(world, f"agv-{i}", a) for i, a in enumerate(layout.agvs)]
        self.people = [Walker(world, f"person-{i}", c) for i, c in enumerate(layout.people)]
        self.scanners = RangeScanners(
            world, [a.config.scanner for a in self.agvs], [(SPEC.length / 2, SPEC.width / 2)] * len(self.agvs)
        )
        self.docks = {s.config.name: SPEC.dock_pose(s.config) for s in self.stations}
        """Each station's dock pose with the station on the AGV's left; the heading turned by
        pi (the station on its right) docks as well."""
        t = layout.tote
        self.tote_half = (t.size[0] / 2, t.size[1] / 2, t.size[2] / 2)
        self.totes: list[Tote] = []
        for s in layout.stations:
            for k in range(s.totes_per_episode if s.kind == "pickup" else 0):
                name = f"tote-{s.name}-{k}"
                body = world.create_box(name, self.tote_half, PARKING, mass=t.mass, rgba=TOTE_RGBA, friction=t.friction)
                p.changeDynamics(body, -1, rollingFriction=0.0, spinningFriction=0.001)
                self.totes.append(Tote(name, body, source=s.name))
        self._tote_by_id = {q.id: q for q in self.totes}
        self._tote_index = {q.id: k for k, q in enumerate(self.totes)}
        for q in self.totes:
            self._park(q)
        self._obstacles = {*self.walls, *self.racks, *(s.id for s in self.stations), *(s.frame for s in self.stations)}
        self._obstacles |= {w.id for w in self.people} | {a.id for a in self.agvs}
        self.shuttles = {
            i: _Shuttle([tuple(a.config.position), *map(tuple, a.config.route)])
            for i, a in enumerate(self.agvs)
            if i > 0 and a.config.route
        }
        for i, sh in self.shuttles.items():
            sc = self.agvs[i].config.scanner
            a = self.scanners._angles[i]
            sh.front = np.abs(np.angle(np.exp(1j * a))) < math.radians(25) if sc.fov >= 50 else np.ones_like(a, bool)
        self._masks = [self.shuttles[i].front if i in self.shuttles else None for i in range(len(self.agvs))]
        """The beams each scanner casts: all for the task's AGV; for a shuttle, those of its
        protective field ahead (the others read NaN)."""
        self.scans: list[np.ndarray] = []
        self._rng = np.random.default_rng(0)
        self._touching: set[tuple[int, int]] = set()
        self.min_person_gap = math.inf
        self.safety_time = 0.0

    # -- episode ----------------------------------------------------------------------------

    def before_restore(self) -> None:
        """Drop the contacts the last episode left behind (before the twin restores its saved
        state): PyBullet would otherwise warm-start the next episode's first contacts from them,
        and episodes would depend on their history."""
        stations = [b for s in self.stations for b in (s.id, s.frame)]
        self.world.forget_contacts([a.id for a in self.agvs] + [q.id for q in self.totes] + stations)

    def reset(self, rng: np.random.Generator) -> None:
        for a in self.agvs:
            a.reset()
        for w in self.people:
            w.reset(rng)
        self.scanners.reset(rng)
        self._rng = np.random.default_rng(rng.integers(2**63))
        room = {
            s.config.name: capacity(s.config, self.layout.tote) for s in self.stations if s.config.kind == "dropoff"
        }
        for q in self.totes:
            self._park(q)
            q.state, q.arrival, q.agv, q.station, q.rest_since = "parked", math.inf, None, "", math.inf
            q.xyz = PARKING
            open_ = [name for name, n in room.items() if n > 0]  # each drop-off takes as many as its bed holds
            q.target = open_[int(rng.integers(len(open_)))] if open_ else ""
            if q.target:
                room[q.target] -= 1
        for s in self.stations:
            s.run(0.0)
            first = next((q for q in self.totes if q.source == s.config.name), None)
            if first is not None:
                first.state, first.arrival = "queued", 0.0
        for sh in self.shuttles.values():
            sh.index, sh.step, sh.blocked = 1, 1, 0.0
            sh.patience = float(self._rng.uniform(2.0, 4.0))
        self._touching.clear()
        self.min_person_gap, self.safety_time = math.inf, 0.0
        self.scans = self.scanners.read([a.pose for a in self.agvs], self._masks) if self.agvs else []

    # -- stepping ---------------------------------------------------------------------------

    def pre_step(self, t: float, dt: float, log: EventLog) -> None:
        for q in self.totes:
            if q.state == "queued" and q.arrival <= t + 1e-9:
                s = self.by_name[q.source]
                xyz, orn = s.slot(self.tote_half[0], self.tote_half[2])
                self._unpark(q, xyz, orn)
                q.state, q.station, q.xyz = "waiting", q.source, tuple(xyz)
                log.add(t, "arrived", q.name, detail=f"station-{q.source}")
        for i, sh in self.shuttles.items():
            self._drive_shuttle(i, sh, dt)
        for a in self.agvs:
            a.pre_step(dt)
        for s in self.stations:
            s.pre_step(dt)
        for w in self.people:
            w.step(dt, self._rng)

    def after_step(self, t: float, dt: float, log: EventLog) -> None:
        p = self.world.p
        for a in self.agvs:
            a.update(dt)
        self.scans = self.scanners.read([a.pose for a in self.agvs], self._masks) if self.agvs else []
        touching = set()
        for a in self.agvs:
            for c in p.getContactPoints(bodyA=a.id):
                if c[2] in self._obstacles and c[8] < TOUCH:
                    touching.add((a.id, c[2]))
        for pair in touching - self._touching:
            if (pair[1], pair[0]) in self._touching:
                continue
            log.add(t, "collision", robot=self.world.name_of(pair[0]), detail=self.world.name_of(pair[1]) or "")
        self._touching = touching
        if self.agvs and self.people:
            a = self.agvs[0]
            gap = min(self.person_gap(a, w) for w in self.people)
            self.min_person_gap = min(self.min_person_gap, gap)
            if gap < a.config.safety_radius:
                self.safety_time += dt
        for q in self.totes:
            if q.state not in ("parked", "queued", "delivered", "dropped"):
                pos, _ = p.getBasePositionAndOrientation(q.id)
                q.xyz = pos
                self._track(q, t, log)

    def _park(self, q: Tote) -> None:
        """Out of play: asleep in the air at its own spot far off the floor.

        It keeps colliding, so that the broad phase drops its contacts with whatever it left in
        the usual way (switching its collisions off as it leaves would keep those contacts
        cached, and the next episode would start from them); asleep, it does not fall.
        """
        p = self.world.p
        k = self._tote_index[q.id]
        p.resetBasePositionAndOrientation(q.id, [PARKING[0] + k, PARKING[1], PARKING[2]], [0, 0, 0, 1])
        p.resetBaseVelocity(q.id, [0, 0, 0], [0, 0, 0])
        p.changeDynamics(q.id, -1, activationState=pb.ACTIVATION_STATE_ENABLE_SLEEPING)
        p.changeDynamics(q.id, -1, activationState=pb.ACTIVATION_STATE_SLEEP)

    def _unpark(self, q: Tote, xyz, orn) -> None:
        p = self.world.p
        p.resetBasePositionAndOrientation(q.id, xyz, orn)
        p.changeDynamics(q.id, -1, activationState=pb.ACTIVATION_STATE_WAKE_UP)
        p.changeDynamics(q.id, -1, activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING)

    def person_gap(self, agv: AGV, person: Walker) -> float:
        """Metres between the AGV's footprint and the person (negative: touching)."""
        lx, ly = agv.to_local(person.xy)
        dx, dy = max(abs(lx) - SPEC.length / 2, 0.0), max(abs(ly) - SPEC.width / 2, 0.0)
        return math.hypot(dx, dy) - person.config.radius

    def docked_at(self, agv: AGV, still: bool = True) -> str | None:
        """The station an AGV stands docked at (with the station on either side), within
        tolerance and (unless ``still`` is False) standing still, or None."""
        x, y, th = agv.pose
        v, w = agv.vel
        if still and (abs(v) >= STILL_SPEED or abs(w) >= 2 * STILL_SPEED):
            return None
        for name, (dx, dy, dth) in self.docks.items():
            if math.hypot(x - dx, y - dy) < DOCK_TOLERANCE:
                err = abs(math.atan2(math.sin(th - dth), math.cos(th - dth)))
                if min(err, math.pi - err) < DOCK_ANGLE:
                    return name
        return None

    def station_side(self, agv: AGV, station: str) -> int:
        """1 if ``station`` is on the AGV's left, -1 if on its right."""
        return 1 if agv.to_local(self.by_name[station].config.position)[1] >= 0 else -1

    def dock_error(self, agv: AGV, station: str) -> float:
        x, y, _ = agv.pose
        dx, dy, _ = self.docks[station]
        return math.hypot(x - dx, y - dy)

    def carried(self, index: int) -> Tote | None:
        return next((q for q in self.totes if q.agv == index and q.state in ("loading", "on_agv", "unloading")), None)

    def _on_deck(self, q: Tote, agv: AGV) -> tuple[float, bool]:
        """The tote's offset across the deck (m, left positive) and whether it rests on the deck."""
        lx, ly = agv.to_local(q.xyz)
        up = abs(q.xyz[2] - SPEC.deck_height - self.tote_half[2]) < 0.03
        return ly, up and abs(lx) < SPEC.deck_size[0] / 2 and abs(ly) < SPEC.deck_size[1] / 2 - self.tote_half[0] + 0.03

    def _track(self, q: Tote, t: float, log: EventLog) -> None:
        if q.xyz[2] < self.tote_half[2] + 0.05 and q.state != "dropped":  # on the floor
            q.state = "dropped"
            for s in self.stations:
                s.run(0.0)
            if q.agv is not None:
                self.agvs[q.agv].run_deck(0.0)
            log.add(t, "dropped", q.name, detail="fell to the floor")
            return
        if q.state == "waiting":
            s = self.by_name[q.station]
            for i, a in enumerate(self.agvs):
                if self.carried(i) is None and self.docked_at(a) == q.station:
                    q.state, q.agv = "loading", i
                    err = self.dock_error(a, q.station)
                    log.add(t, "docked", q.name, a.name, station=s.name, value=err * 1000)
                    break
        elif q.state == "on_agv":
            a = self.agvs[q.agv]
            station = self.docked_at(a)
            if station is not None and self.by_name[station].config.kind == "dropoff":
                q.state, q.station = "unloading", station
                log.add(
                    t, "docked", q.name, a.name, station=f"station-{station}", value=self.dock_error(a, station) * 1000
                )
        if q.state == "loading":
            a, s = self.agvs[q.agv], self.by_name[q.station]
            # a transfer under way goes on while the AGV stays in the dock (it may creep a little)
            if self.docked_at(a, still=False) != q.station and not self._on_deck(q, a)[1]:
                a.run_deck(0.0)
                s.run(0.0)  # the AGV left mid-transfer: stop and let the tote lie where it is
                q.state, q.agv = ("waiting" if s.on_bed(q.xyz, self.tote_half[0]) else "loose"), None
                return  # a loose tote that falls is logged as dropped
            off, on = self._on_deck(q, a)
            off *= self.station_side(a, q.station)  # metres still to go, towards the far side
            s.run(s.config.speed if s.along(q.xyz)[0] < s.config.length / 2 + 0.05 else 0.0)
            if on and off < CENTRED:
                a.run_deck(0.0)
                s.run(0.0)
                q.state, q.station = "on_agv", ""
                log.add(t, "loaded", q.name, a.name, station=s.name)
                nxt = next((o for o in self.totes if o.source == s.config.name and o.state == "parked"), None)
                if nxt is not None:
                    nxt.state, nxt.arrival = "queued", t + float(self._rng.uniform(*s.config.interval))
            else:
                side = self.station_side(a, q.station)
                a.run_deck(-side * (min(s.config.speed, max(0.05, 2.0 * off)) if off > 0 else -0.05))
        elif q.state == "unloading":
            a, s = self.agvs[q.agv], self.by_name[q.station]
            a.run_deck(self.station_side(a, q.station) * s.config.speed)
            s.run(-s.config.speed)
            if s.on_bed(q.xyz, self.tote_half[0]):
                a.run_deck(0.0)
                q.state, q.agv, q.rest_since = "on_station", None, math.inf
                log.add(t, "unloaded", q.name, a.name, station=s.name)
        elif q.state == "on_station":
            s = self.by_name[q.station]
            v = self.world.p.getBaseVelocity(q.id)[0]
            if math.hypot(v[0], v[1]) < 0.02 and s.on_bed(q.xyz, self.tote_half[0]):
                q.state = "delivered"  # it stays where it came to rest
                log.add(
                    t, "delivered" if q.station == q.target else "misdelivered", q.name, station=s.name, detail=q.target
                )
                if not any(o.state in ("on_station", "unloading") and o.station == q.station for o in self.totes):
                    s.run(0.0)

    def _drive_shuttle(self, i: int, sh: _Shuttle, dt: float) -> None:
        a = self.agvs[i]
        target = sh.route[sh.index]
        lx, ly = a.to_local(target)
        if math.hypot(lx, ly) < 0.2:
            if not 0 <= sh.index + sh.step < len(sh.route):
                sh.step = -sh.step
            sh.index += sh.step
            target = sh.route[sh.index]
            lx, ly = a.to_local(target)
        err = math.atan2(ly, lx)
        scan = self.scans[i] if i < len(self.scans) else None
        v_max = a.config.max_speed
        clear = math.inf if scan is None or not sh.front.any() else float(scan[sh.front].min()) - SPEC.length / 2
        v = abs(a.vel[0])
        if clear < 0.5 + 0.2 * v + v * v / a.config.max_accel and abs(err) < math.pi / 2:
            a.command(0.0, 0.0)
            sh.blocked += dt
            if sh.blocked > sh.patience:  # turn back along the route
                sh.step = -sh.step
                sh.index = min(max(sh.index + sh.step, 0), len(sh.route) - 1)
                sh.blocked = 0.0
            return
        sh.blocked = 0.0
        a.command(v_max * max(0.0, 1.0 - abs(err) / 0.8), 2.0 * err)

    # -- results ----------------------------------------------------------------------------

    @property
    def energy(self) -> float:
        return sum(a.energy for a in self.agvs)

    def kpis(self, log: EventLog, sim_time: float) -> dict[str, float]:
        """Deliveries, travel, docking, safety and energy of the task's AGV (the first)."""
        delivered = sum(e.kind == "delivered" for e in log.events)
        docked = [e.value for e in log.events if e.kind == "docked" and e.robot == "agv-0"]
        out = {
            "deliveries": float(delivered),
            "deliveries_per_hour": delivered / sim_time * 3600 if sim_time > 0 else 0.0,
            "misdeliveries": float(sum(e.kind == "misdelivered" for e in log.events)),
            "totes_dropped": float(sum(e.kind == "dropped" and e.part in self._tote_names for e in log.events)),
            "agv_collisions": float(sum(e.kind == "collision" and e.robot == "agv-0" for e in log.events)),
        }
        if self.agvs:
            out["travel_distance"] = self.agvs[0].distance
            out["docking_error_mean"] = float(np.mean(docked)) if docked else math.nan
            out["agv_energy"] = self.agvs[0].energy
        if self.people:
            out["min_person_distance"] = self.min_person_gap
            out["safety_field_time"] = self.safety_time
        return out

    @property
    def _tote_names(self) -> set[str]:
        return {q.name for q in self.totes}
