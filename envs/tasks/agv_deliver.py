"""AGVDeliver: carry totes from the pickup station to the drop-off named in the observation."""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import numpy as np

from envs.core import Feature, Task
from envs.navigation import FloorMap, rect_gap
from twin.robots.agv import SPEC

PREDOCK = 0.8  # metres before the dock pose where the straight final approach starts
LEAVE = 1.0  # metres an AGV drives straight out of a dock before it turns
TO_PICKUP = 0.3  # share of a delivery's progress earned by reaching the pickup dock
LOADED = 0.1  # share earned when the tote is on the deck
TO_DROPOFF = 0.6  # share earned by reaching the drop-off dock (delivered: 1)
DIST_SCALE = 0.25  # 1 / metres in the progress terms' 1 - tanh(DIST_SCALE * floor distance)
COLLISION_PENALTY = 0.25
SAFETY_PENALTY = 0.02  # per step with a person inside the safety radius


class AGVDeliver(Task):
    """Deliver every tote from the pickup station to its drop-off station.

    **Task description:** a roller-deck AGV on a 14 x 8 m floor with two rows of racks. Totes
    arrive one at a time at the pickup station ``P``; each is bound for one of the drop-off
    stations ``A``, ``B`` or ``C``. The AGV must dock beside the pickup station (within 5 cm and
    5 degrees, standing still, the station on either side), wait while the rollers carry the tote
    onto its deck, drive to the tote's drop-off and dock there while the deck hands it over. Two
    people walk the cross aisles at either end of the racks and do not give way; the AGV must keep
    at least its safety radius (0.5 m) from them. Actions: speed and turn rate, each in [-1, 1]
    of the AGV's limits (1.2 m/s, 1.5 rad/s), reached within its 1 m/s^2 acceleration limit.

    **Randomizations:** each tote's drop-off; when the next tote arrives (2-4 s after the last
    left); each person's pace (1.0-1.4 m/s), starting point, direction and pauses; scanner noise.

    **Difficulty knobs:** ``deliveries`` (1-5 totes, 2 by default), ``people`` (how many of the
    layout's walkers are on the floor, 0 up to all), ``fleet`` (AGVs on the floor, 1 up to the
    layout's 8: the others shuttle along the aisles under their scripted controller).

    **Success conditions:** every tote delivered to its own drop-off, with no collision, no tote
    dropped or misdelivered and no person ever inside the safety radius. The episode terminates
    on success and on any of those failures; a time limit truncates it.

    Observations (``state``, 19 + scanner beams): odometry pose x, y (m), cos and sin of the
    heading (4) and its speed (m/s) and turn rate (rad/s) (2); the target dock in the odometry
    frame, relative to the AGV: ahead and left (m), cos and sin of the heading error to the
    nearer of its two dock headings (4); which station it is, one-hot over the layout's stations
    (4 on the bundled floor); carrying a tote, a transfer under way, docked (3); totes still to
    deliver (share) and episode time (share of 180 s) (2); scanner ranges as shares of its range
    (64 on the bundled AGV).

    **Dense reward** (staged, at most 1 per step): a delivery's progress is 0.3 * (1 - tanh(0.25 *
    d)) while heading for the pickup, d the distance along the floor to its dock; 0.3 + 0.1 +
    0.6 * (1 - tanh(0.25 * d)) once the tote is on the deck, d to the drop-off's dock; 1 when
    delivered. Each step earns the change in (deliveries + progress) / totes, less 0.25 per
    collision and 0.02 per step with a person inside the safety radius. **Sparse reward:** 1 on
    success.

    ``info`` carries ``is_success``, ``deliveries``, ``progress`` and, at the end, ``kpis``
    (``deliveries_per_hour``, ``travel_distance`` in m, ``docking_error_mean`` in mm,
    ``min_person_distance`` in m, ``safety_field_time`` in s, ``agv_collisions``, ``agv_energy``
    in J).
    """

    layout = "logistics"
    drives = "agv"
    action_size = 2
    obs_modes = ("state",)
    obs_camera = "overview"
    render_camera = "overview"
    time_scale = 180.0
    default_knobs = {"fleet": 1}
    shares: ClassVar[dict[str, float]] = {"to_pickup": TO_PICKUP, "loaded": LOADED, "to_dropoff": TO_DROPOFF}
    """A delivery's stages as shares of its progress (see the reward table)."""
    recovering_expert: ClassVar[bool] = False
    """Whether the expert docks precisely and labels the way back from states it never reaches
    itself (``-v2``: see ``AGVDeliverExpert``), or drives as ``-v0`` and ``-v1``'s did."""
    failure_cost: ClassVar[float | None] = None
    """What a failure (a collision, a person in the safety field, a dropped or misdelivered tote)
    costs beyond the progress it takes back (None: ``-v0``'s penalties, progress kept)."""

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        fleet = twin.fleet
        if fleet is None or not fleet.agvs:
            raise ValueError("AGVDeliver needs a layout with [[agvs]]")
        kinds = {s.config.kind for s in fleet.stations}
        if kinds != {"pickup", "dropoff"} or sum(s.config.kind == "pickup" for s in fleet.stations) != 1:
            raise ValueError("AGVDeliver needs a layout with one pickup station and at least one dropoff station")
        self.fleet = fleet
        self.agv = fleet.agvs[0]
        self.pickup = next(s.config.name for s in fleet.stations if s.config.kind == "pickup")
        self.names = [s.config.name for s in fleet.stations]
        self.map = FloorMap(twin.layout)
        self.n_totes = len(fleet.totes)

    @classmethod
    def adapt_layout(
        cls, layout, deliveries: int | None = None, people: int | None = None, fleet: int | None = None, **unknown
    ):
        """The layout with the difficulty knobs applied."""
        if unknown:
            raise ValueError(
                f"AGVDeliver has no setting {', '.join(map(repr, unknown))} (its settings: deliveries, people, fleet)"
            )
        if not layout.agvs:
            raise ValueError("AGVDeliver needs a layout with [[agvs]]")
        update: dict[str, Any] = {}
        for name, value, lo, hi in (
            ("deliveries", deliveries, 1, 5),
            ("people", people, 0, len(layout.people)),
            ("fleet", fleet, 1, len(layout.agvs)),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"AGVDeliver: {name} must be a whole number from {lo} to {hi}, got {value!r}")
        if deliveries is not None:
            update["stations"] = [
                s.model_copy(update={"totes_per_episode": deliveries}) if s.kind == "pickup" else s
                for s in layout.stations
            ]
        if people is not None:
            update["people"] = layout.people[:people]
        if fleet is not None:
            update["agvs"] = layout.agvs[:fleet]
        return layout.model_copy(update=update)

    # -- the target -------------------------------------------------------------------------

    def carrying(self):
        return self.fleet.carried(0)

    def target(self) -> str:
        """The station the AGV should go to next: the carried tote's drop-off, else the pickup."""
        tote = self.carrying()
        return tote.target if tote is not None and tote.state != "loading" else self.pickup

    def docks(self, name: str) -> list[tuple[float, float, float]]:
        """The station's two dock poses (the station on the AGV's left, then on its right)."""
        x, y, th = self.fleet.docks[name]
        return [(x, y, th), (x, y, math.atan2(-math.sin(th), -math.cos(th)))]

    def reset(self, rng: np.random.Generator) -> None:
        self._progress: float | None = None
        self._collisions = 0

    def observe(self) -> np.ndarray:
        agv, fleet = self.agv, self.fleet
        ox, oy, oth = agv.odom
        name = self.target()
        tx, ty, tth = self.fleet.docks[name]
        c, s = math.cos(oth), math.sin(oth)
        dx, dy = tx - ox, ty - oy
        err = math.atan2(math.sin(tth - oth), math.cos(tth - oth))
        if abs(err) > math.pi / 2:  # the nearer of the two dock headings
            err -= math.copysign(math.pi, err)
        onehot = [float(n == name) for n in self.names]
        tote = self.carrying()
        transfer = any(q.state in ("loading", "unloading") and q.agv == 0 for q in fleet.totes)
        delivered = sum(e.kind == "delivered" for e in self.twin.log.events)
        scan = fleet.scans[0] / agv.config.scanner.max_range
        head = (
            ox, oy, c, s, *agv.odom_vel,
            dx * c + dy * s, -dx * s + dy * c, math.cos(err), math.sin(err),
            *onehot,
            float(tote is not None and tote.state == "on_agv"), float(transfer), float(fleet.docked_at(agv) is not None),
            (self.n_totes - delivered) / self.n_totes, self.twin.sim_time / self.time_scale,
        )  # fmt: skip
        return np.concatenate([np.asarray(head, dtype=np.float32), scan.astype(np.float32)])

    def decode(self, action) -> tuple[float, float]:
        """The speed (m/s) and turn rate (rad/s) an action asks for."""
        c = self.agv.config
        return action[0] * c.max_speed, action[1] * c.max_turn_rate

    def encode(self, v: float, w: float) -> list[float]:
        """The action that asks for speed ``v`` and turn rate ``w`` (the inverse of ``decode``)."""
        c = self.agv.config
        return [v / c.max_speed, w / c.max_turn_rate]

    def act(self, action: list[float]) -> None:
        self.agv.command(*self.decode(action))

    # -- scoring ----------------------------------------------------------------------------

    def delivery_progress(self) -> float:
        tote = self.carrying()
        xy = self.agv.pose[:2]
        sh = self.shares
        if tote is None:
            d = self.map.distance(xy, self.fleet.docks[self.pickup][:2])
            return sh["to_pickup"] * (1.0 - math.tanh(DIST_SCALE * d))
        if tote.state == "loading":
            return sh["to_pickup"]
        d = self.map.distance(xy, self.fleet.docks[tote.target][:2])
        return sh["to_pickup"] + sh["loaded"] + sh["to_dropoff"] * (1.0 - math.tanh(DIST_SCALE * d))

    def evaluate(self) -> dict[str, Any]:
        events = self.twin.log.events
        delivered = sum(e.kind == "delivered" for e in events)
        failed = any(
            e.kind in ("misdelivered", "dropped") or (e.kind == "collision" and e.robot == self.agv.name)
            for e in events
        )
        collisions = sum(e.kind == "collision" and e.robot == self.agv.name for e in events)
        unsafe = self.fleet.safety_time > 0
        success = delivered == self.n_totes and not failed and not unsafe
        progress = (
            1.0
            if success
            else (delivered + (0.0 if delivered == self.n_totes else self.delivery_progress())) / self.n_totes
        )
        before = self._progress
        gained = 0.0 if before is None else progress - before
        self._progress = progress
        new_collisions, self._collisions = collisions - self._collisions, collisions
        inside = bool(self.fleet.people) and self.fleet.min_person_gap < self.agv.config.safety_radius
        now_inside = inside and any(
            self.fleet.person_gap(self.agv, w) < self.agv.config.safety_radius for w in self.fleet.people
        )
        done = success or failed or unsafe
        info: dict[str, Any] = {"deliveries": delivered, "progress": progress}
        if done:
            info["kpis"] = self.twin.kpis()
        gained -= COLLISION_PENALTY * new_collisions + SAFETY_PENALTY * now_inside
        if (failed or unsafe) and not success and self.failure_cost is not None:
            gained = -(before or 0.0) - self.failure_cost  # the banked progress back, and more
        return {"success": success, "done": done, "gained": gained, "info": info}

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["success"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


PEOPLE_TRACKED = 2
"""People the ``-v1`` observation tracks (the nearest first)."""


def walking_paths(task: AGVDeliver) -> list[tuple[float, list[tuple[float, float]]]]:
    """Each person's radius and the points (10 cm apart) of the path they walk: the floor's
    walking zones, as an AGV's map marks them. Computed once per fleet."""
    cache = getattr(task, "_walking_paths", None)
    if cache is None or cache[0] != id(task.fleet):
        paths = []
        for person in task.fleet.people:
            n = max(2, int(person.total / 0.1) + 1)
            paths.append((person.config.radius, [person.position_at(s) for s in np.linspace(0, person.total, n)]))
        cache = (id(task.fleet), paths)
        task._walking_paths = cache
    return cache[1]


def walking_gap(task: AGVDeliver, pose) -> float:
    """Metres between the AGV standing at ``pose`` and the nearest point of a walking path."""
    half = (SPEC.length / 2, SPEC.width / 2)
    return min((rect_gap(pose, half, xy, r) for r, pts in walking_paths(task) for xy in pts), default=math.inf)


class AGVDeliverV1(AGVDeliver):
    """AGVDeliver, version 1: what an AGV's localisation and safety scanner stack give it, the
    dock it is to use, rewards that teach.

    **Task description, randomizations, success conditions and knobs:** as ``AGVDeliver-v0``.

    **Observation** (``state``, 33 + scanner beams; 97 on the bundled AGV):

    ==============================  ============  ===========
    feature                         unit          range
    ==============================  ============  ===========
    pose x, y (localised)           m             [-60, 60]
    heading cos, sin                -             [-1, 1]
    speed, turn rate                m/s, rad/s    [-5, 5]
    dock to use: ahead, left        m             [-120, 120]
    dock to use: heading cos, sin   -             [-1, 1]
    target station one-hot          0/1           [0, 1]
    carrying, transfer, docked      0/1           [0, 1]
    totes left, time                share         [0, 2]
    last transfer's station         0/1           [0, 1]
    2 nearest people: ahead, left,  m, m/s        [-60, 60]
    their velocity (2), gap                       (gap [0, 60])
    scanner ranges                  share         [0, 1]
    ==============================  ============  ===========

    The pose is the localised one (map matching, as a navigating AGV has), not the drifting
    wheel odometry of ``-v0``; the people are tracked by the safety scanner stack (positions and
    velocities relative to the AGV, and the gap to its footprint; a person not on the floor
    reads far ahead and still); the dock to use is the one the expert uses (the nearer approach
    along the floor, or the one whose line the AGV is already on), its heading as the AGV must
    stand; the last transfer's station tells where the AGV must back out from.

    **Dense reward:** each step earns the change in (deliveries + the current one's progress) /
    totes:

    ==========================  ========================================================
    stage                       a delivery's progress
    ==========================  ========================================================
    to the pickup               0.2 * (1 - tanh(0.25 * floor distance to its dock))
    tote on the deck            0.5
    to the drop-off             + 0.2 * (1 - tanh(0.25 * floor distance to its dock))
    delivered                   1: the largest step of a delivery (+0.3 at least)
    failure (a collision, a     all the episode's banked progress taken back, and -0.25
    person in the safety field,
    a tote dropped or
    misdelivered: it ends it)
    time limit                  the current delivery's progress taken back
    ==========================  ========================================================

    **Sparse reward:** 1 on success.
    """

    shares: ClassVar[dict[str, float]] = {"to_pickup": 0.2, "loaded": 0.3, "to_dropoff": 0.2}
    failure_cost = 0.25
    settles_at_time_limit = True

    def dock_to_use(self) -> tuple[float, float, float]:
        """The target station's dock pose the AGV is to dock at (the expert's choice)."""
        return AGVDeliverExpert.choose_dock(self, self.target())

    def last_station(self) -> str | None:
        return AGVDeliverExpert.left_from(self)

    def observe(self) -> np.ndarray:
        agv, fleet = self.agv, self.fleet
        x, y, th = agv.pose
        c, s = math.cos(th), math.sin(th)
        name = self.target()
        dx, dy, dth = self.dock_to_use()
        rx, ry = dx - x, dy - y
        herr = dth - th
        tote = self.carrying()
        transfer = any(q.state in ("loading", "unloading") and q.agv == 0 for q in fleet.totes)
        delivered = sum(e.kind == "delivered" for e in self.twin.log.events)
        last = self.last_station()
        head = [
            x, y, c, s, *agv.vel,
            rx * c + ry * s, -rx * s + ry * c, math.cos(herr), math.sin(herr),
            *(float(n == name) for n in self.names),
            float(tote is not None and tote.state == "on_agv"), float(transfer), float(fleet.docked_at(agv) is not None),
            (self.n_totes - delivered) / self.n_totes, self.twin.sim_time / self.time_scale,
            *(float(n == last) for n in self.names),
        ]  # fmt: skip
        tracked = []
        for w in fleet.people:
            px, py = w.xy[0] - x, w.xy[1] - y
            vx, vy = w.velocity[0] - agv.vel[0] * c, w.velocity[1] - agv.vel[0] * s
            gap = fleet.person_gap(agv, w)
            tracked.append((gap, [px * c + py * s, -px * s + py * c, vx * c + vy * s, -vx * s + vy * c, gap]))
        tracked.sort(key=lambda t: t[0])
        far = agv.config.scanner.max_range
        people = [t[1] for t in tracked[:PEOPLE_TRACKED]]
        people += [[far, 0.0, 0.0, 0.0, far]] * (PEOPLE_TRACKED - len(people))
        scan = fleet.scans[0] / agv.config.scanner.max_range
        return np.concatenate(
            [np.asarray(head, np.float32), np.asarray(people, np.float32).ravel(), scan.astype(np.float32)]
        )

    def observation_features(self) -> list[Feature]:
        n_st = len(self.names)
        out: list[Feature] = [("x", "m", -60.0, 60.0), ("y", "m", -60.0, 60.0)]
        out += [("heading_cos", "-", -1.0, 1.0), ("heading_sin", "-", -1.0, 1.0)]
        out += [("speed", "m/s", -5.0, 5.0), ("turn_rate", "rad/s", -5.0, 5.0)]
        out += [("dock_ahead", "m", -120.0, 120.0), ("dock_left", "m", -120.0, 120.0)]
        out += [("dock_heading_cos", "-", -1.0, 1.0), ("dock_heading_sin", "-", -1.0, 1.0)]
        out += [(f"target_{n}", "0/1", 0.0, 1.0) for n in self.names][:n_st]
        out += [("carrying", "0/1", 0.0, 1.0), ("transfer", "0/1", 0.0, 1.0), ("docked", "0/1", 0.0, 1.0)]
        out += [("totes_left", "share", 0.0, 1.0), ("time", "share of 180 s", 0.0, 2.0)]
        out += [(f"last_transfer_{n}", "0/1", 0.0, 1.0) for n in self.names]
        for k in range(PEOPLE_TRACKED):
            out += [(f"person{k}_ahead", "m", -60.0, 60.0), (f"person{k}_left", "m", -60.0, 60.0)]
            out += [(f"person{k}_v_ahead", "m/s", -10.0, 10.0), (f"person{k}_v_left", "m/s", -10.0, 10.0)]
            out += [(f"person{k}_gap", "m", 0.0, 60.0)]
        out += [(f"scan_{k}", "share of its range", 0.0, 1.0) for k in range(self.agv.config.scanner.beams)]
        return out

    def unsettled(self) -> float:
        if self.reward_type != "dense" or self._progress is None:
            return 0.0
        delivered = sum(e.kind == "delivered" for e in self.twin.log.events)
        return max(0.0, self._progress - delivered / self.n_totes)


LINE_NEAR = 0.05
"""Metres (and radians) at which the ``-v2`` docking-line features ``tanh(x / LINE_NEAR)`` saturate."""
PREDOCK_NEAR = 0.25
"""Metres at which the ``-v2`` pre-dock offset ``tanh(offset / PREDOCK_NEAR)`` saturates."""
FAR = 3.0
"""Metres at which the ``-v2`` observation clips the leaving and walking-zone distances."""
CONFLICT_HORIZON = 4.0
"""Seconds ahead the ``-v2`` observation extrapolates each tracked person's relative motion."""


def closest_approach(ahead: float, left: float, v_ahead: float, v_left: float, horizon: float = CONFLICT_HORIZON):
    """Metres and seconds of the nearest a person comes (centre to centre) in ``horizon``
    seconds if both keep their velocities: what a tracking safety stack reports as a conflict."""
    vv = v_ahead * v_ahead + v_left * v_left
    t = 0.0 if vv < 1e-9 else min(max(-(ahead * v_ahead + left * v_left) / vv, 0.0), horizon)
    return math.hypot(ahead + v_ahead * t, left + v_left * t), t


class AGVDeliverV2(AGVDeliverV1):
    """AGVDeliver, version 2: ``-v1`` with what an AGV's navigation stack hands its controller:
    the planned path's heading, the docking line it must hold to 5 cm, the dock it backs out of,
    the walking zones on its map, and each tracked person's closest approach.

    **Task description, randomizations, success conditions, knobs and rewards:** as
    ``AGVDeliver-v1``.

    **Action:** speed and turn rate are their limits times ``a * |a|`` (a signed square): full
    speed and turn at +-1 as before, and fine ones near 0, as holding a docking line to 5 cm
    and 5 degrees needs (a turn of 0.1 rad/s is the action 0.26, not 0.07).

    **Observation** (``state``, 54 + scanner beams; 118 on the bundled AGV): ``-v1``'s first
    23 numbers (pose to last transfer's station), then:

    ===============================  =================  ===========
    feature                          unit               range
    ===============================  =================  ===========
    path heading cos, sin            -                  [-1, 1]
    pre-dock point distance          m                  [0, 60]
    pre-dock point ahead, left       tanh(m / 0.25)     [-1, 1]
    docking line: along, across      m                  [-120, 120]
    docking line: along, across,     tanh(m / 0.05),    [-1, 1]
    heading error                    tanh(rad / 0.05)
    last dock: along, across         m (clipped at 3)   [-3, 3]
    last dock: along                 tanh(m / 0.05)     [-1, 1]
    last dock: heading alignment     cos                [-1, 1]
    next goal along the last dock    tanh(m / 0.05)     [-1, 1]
    walking zone gap: here, 1 m on   m (clipped at 3)   [-1, 3]
    2 nearest people: ahead, left,   m, m/s, m, s       [-60, 60]
    their velocity (2), gap, closest
    approach in 4 s and when
    scanner ranges                   share              [0, 1]
    ===============================  =================  ===========

    The path heading is the bearing of the point 1 m down the floor's planned path to the dock's
    pre-dock point (0.8 m before it on its line); the docking line is that dock's, with the
    AGV's place along (negative before the dock) and across it; the last dock is where the last
    transfer was (as far as it reads when there was none); the walking zones are the people's
    paths as the map marks them; a person's closest approach extrapolates their relative
    motion, as a tracking safety scanner stack does. Every number's name, unit and range:
    ``observation_features()``.
    """

    recovering_expert = True

    def decode(self, action) -> tuple[float, float]:
        c = self.agv.config
        return action[0] * abs(action[0]) * c.max_speed, action[1] * abs(action[1]) * c.max_turn_rate

    def encode(self, v: float, w: float) -> list[float]:
        c = self.agv.config
        return [
            math.copysign(math.sqrt(abs(v) / c.max_speed), v),
            math.copysign(math.sqrt(abs(w) / c.max_turn_rate), w),
        ]

    def _head_size(self) -> int:
        """Numbers of ``-v1``'s observation before its tracked people (pose to last transfer's station)."""
        return 4 + 2 + 4 + 2 * len(self.names) + 3 + 2

    def observe(self) -> np.ndarray:
        full = super().observe()
        n_head = self._head_size()
        head, people = full[:n_head], full[n_head : n_head + 5 * PEOPLE_TRACKED]
        scan = full[n_head + 5 * PEOPLE_TRACKED :]
        agv = self.agv
        x, y, th = agv.pose
        c, s = math.cos(th), math.sin(th)
        dock = self.dock_to_use()
        dc, ds = math.cos(dock[2]), math.sin(dock[2])
        pre = (dock[0] - PREDOCK * dc, dock[1] - PREDOCK * ds)
        gx, gy = self.map.lookahead((x, y), pre, ahead=1.0)
        bearing = math.atan2(gy - y, gx - x) - th
        px, py = pre[0] - x, pre[1] - y
        along, across, herr = AGVDeliverExpert._line_of(self, dock)
        nav = [
            math.cos(bearing), math.sin(bearing), math.hypot(px, py),
            math.tanh((px * c + py * s) / PREDOCK_NEAR), math.tanh((-px * s + py * c) / PREDOCK_NEAR),
            along, across, math.tanh(along / LINE_NEAR), math.tanh(across / LINE_NEAR), math.tanh(herr / LINE_NEAR),
        ]  # fmt: skip
        nav += self._last_dock()
        ahead = (x + math.cos(th), y + math.sin(th), th)
        nav += [min(walking_gap(self, (x, y, th)), FAR), min(walking_gap(self, ahead), FAR)]
        tracked = []
        for k in range(PEOPLE_TRACKED):
            pa, pl, va, vl, gap = (float(v) for v in people[5 * k : 5 * k + 5])
            tracked += [pa, pl, va, vl, gap, *closest_approach(pa, pl, va, vl)]
        return np.concatenate([head, np.asarray(nav + tracked, np.float32), scan]).astype(np.float32)

    def _last_dock(self) -> list[float]:
        """The AGV against the dock of its last transfer: along its line (m, and magnified),
        across it (m), the heading's alignment with it, and which way along that line the path
        to the next goal leaves (magnified); as if far off when there was no transfer yet."""
        last = self.last_station()
        if last is None:
            return [FAR, 1.0, FAR, 0.0, 0.0]
        dx, dy, dth = self.fleet.docks[last]
        x, y, th = self.agv.pose
        c, s = math.cos(dth), math.sin(dth)
        along, across = (x - dx) * c + (y - dy) * s, -(x - dx) * s + (y - dy) * c
        gx, gy = self.map.lookahead((x, y), self.fleet.docks[self.target()][:2], ahead=2.0)
        side = (gx - dx) * c + (gy - dy) * s
        clip = lambda v: max(-FAR, min(FAR, v))  # noqa: E731
        return [
            clip(along),
            math.tanh(along / LINE_NEAR),
            clip(across),
            math.cos(th - dth),
            math.tanh(side / LINE_NEAR),
        ]

    def observation_features(self) -> list[Feature]:
        out = super().observation_features()[: self._head_size()]
        out += [("path_heading_cos", "-", -1.0, 1.0), ("path_heading_sin", "-", -1.0, 1.0)]
        out += [("predock_distance", "m", 0.0, 60.0)]
        out += [(f"predock_near_{a}", f"tanh(m / {PREDOCK_NEAR:g})", -1.0, 1.0) for a in ("ahead", "left")]
        out += [("line_along", "m", -120.0, 120.0), ("line_across", "m", -120.0, 120.0)]
        out += [(f"line_near_{a}", f"tanh(m / {LINE_NEAR:g})", -1.0, 1.0) for a in ("along", "across")]
        out += [("line_near_heading", f"tanh(rad / {LINE_NEAR:g})", -1.0, 1.0)]
        out += [("last_dock_along", "m", -FAR, FAR), ("last_dock_near_along", f"tanh(m / {LINE_NEAR:g})", -1.0, 1.0)]
        out += [("last_dock_across", "m", -FAR, FAR), ("last_dock_alignment", "cos", -1.0, 1.0)]
        out += [("next_goal_along_last_dock", f"tanh(m / {LINE_NEAR:g})", -1.0, 1.0)]
        out += [("walking_zone_gap", "m", -1.0, FAR), ("walking_zone_gap_1m_ahead", "m", -1.0, FAR)]
        for k in range(PEOPLE_TRACKED):
            out += [(f"person{k}_ahead", "m", -60.0, 60.0), (f"person{k}_left", "m", -60.0, 60.0)]
            out += [(f"person{k}_v_ahead", "m/s", -10.0, 10.0), (f"person{k}_v_left", "m/s", -10.0, 10.0)]
            out += [(f"person{k}_gap", "m", 0.0, 60.0)]
            out += [(f"person{k}_closest", "m", 0.0, 60.0), (f"person{k}_closest_in", "s", 0.0, CONFLICT_HORIZON)]
        out += [(f"scan_{k}", "share of its range", 0.0, 1.0) for k in range(self.agv.config.scanner.beams)]
        return out


class AGVDeliverExpert:
    """A scripted AGV driver: follow the floor's distance field to a point before the target dock,
    turn onto the dock's heading, creep in along the dock line, stand still while the rollers
    transfer, back or drive straight out of the dock, and repeat.

    On ``-v2`` (``recovering_expert``) it docks precisely and labels the way back from states
    it never reaches itself, as a learner may: it stops on the pre-dock point to 1.2 cm (braking
    onto it, backing up to it if past), starts in only straight and within 1.5 cm of the dock
    line, and backs straight out once a front corner strays 3 cm off the line beside the station
    (the dock leaves 3 cm); standing where a person would walk into it, it backs or drives
    straight away if that keeps them further off. On ``-v0`` and ``-v1`` it turns within 12 cm
    of the point and creeps in from there.

    People: before each move it rolls the AGV forward (0.5 s of the move, then braking within its
    acceleration limit) against the people walking on along their paths (constant pace, turning
    back at the ends). It moves if that keeps everyone outside the safety radius plus 15 cm and
    the AGV could stop somewhere no walking path comes that near; where the stop would be beside
    a walking path (crossing an aisle) it moves only if carrying on across for 6 s stays 40 cm
    clearer still;
    once braking would leave it beside a path it does what keeps people further off, going on or
    stopping. It stops for
    another AGV close ahead. It reads the true poses, not the odometry."""

    HORIZON = 4.0  # seconds of people's walking extrapolated
    MARGIN = 0.15  # metres beyond the safety radius it plans to keep
    COMMIT = 0.5  # seconds it plans to keep going before it could brake
    STOP_MARGIN = 0.2  # metres more it wants where it would stop (it brakes a little later than planned)
    CROSS_MARGIN = 0.4  # metres more it wants before it starts to cross a walking path
    CROSS_HORIZON = 6.0  # seconds of people's walking it looks ahead before crossing their path
    # -v2's docking (``recovering_expert``)
    PRE_STOP = 0.012  # metres from the pre-dock point at which it stops to turn onto the dock's heading
    ENTRY = 0.015  # metres off the dock line from which it starts its final approach
    STRAY = 0.03  # metres a front corner strays off the dock line beside the station before it backs out
    BESIDE = 0.72  # metres before the dock pose from which its body passes the station's frame
    EVADE = 0.5  # m/s it backs or drives away from a person who would walk into it standing

    def __init__(self, env) -> None:
        self.env = env.unwrapped

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state between calls."""

    def _line(self, pose: tuple[float, float, float]) -> tuple[float, float, float]:
        """Where the AGV stands against a dock pose: along and across its dock line (m), heading error (rad)."""
        return self._line_of(self.env.task, pose)

    def _on_line(self, pose) -> bool:
        return self.on_line(self.env.task, pose)

    @staticmethod
    def _line_of(task: AGVDeliver, pose) -> tuple[float, float, float]:
        x, y, th = task.agv.pose
        c, s = math.cos(pose[2]), math.sin(pose[2])
        along = (x - pose[0]) * c + (y - pose[1]) * s
        across = -(x - pose[0]) * s + (y - pose[1]) * c
        return along, across, math.atan2(math.sin(pose[2] - th), math.cos(pose[2] - th))

    @staticmethod
    def on_line(task: AGVDeliver, pose) -> bool:
        """On the final approach of ``pose``: on its line (a band), between the pre-dock point and
        the dock, heading along it."""
        along, across, herr = AGVDeliverExpert._line_of(task, pose)
        return abs(across) < 0.15 and -PREDOCK - 0.3 < along < 0.05 and abs(herr) < math.radians(15)

    def _choose_dock(self, task: AGVDeliver, name: str) -> tuple[float, float, float]:
        return self.choose_dock(task, name)

    @staticmethod
    def choose_dock(task: AGVDeliver, name: str) -> tuple[float, float, float]:
        """The dock heading whose final approach the AGV is on, else the one whose approach starts
        nearer along the floor."""
        docks = task.docks(name)
        for pose in docks:
            if AGVDeliverExpert.on_line(task, pose):
                return pose
        xy = task.agv.pose[:2]
        best = None
        for pose in docks:
            pre = (pose[0] - PREDOCK * math.cos(pose[2]), pose[1] - PREDOCK * math.sin(pose[2]))
            ij = task.map.cell(pre)
            if not task.map.free[ij]:
                continue
            d = task.map.distance(xy, pre)
            if best is None or d < best[0]:
                best = (d, pose)
        return best[1] if best is not None else docks[0]

    def _left_from(self, task: AGVDeliver) -> str | None:
        return self.left_from(task)

    @staticmethod
    def left_from(task: AGVDeliver) -> str | None:
        """The station of the AGV's last transfer (the pickup while it carries a tote, else where it
        last unloaded one), read from the event log."""
        if task.carrying() is not None:
            return task.pickup
        last = next(
            (e for e in reversed(task.twin.log.events) if e.kind == "unloaded" and e.robot == task.agv.name), None
        )
        if last is None:
            return None
        return next((s.config.name for s in task.fleet.stations if s.name == last.station), None)

    def _leaving(self, task: AGVDeliver, name: str) -> float | None:
        """Driving straight out of the dock of the last transfer, before turning: the speed
        (m/s, signed) while the AGV is still within ``LEAVE`` of that dock on its line; else None.
        It leaves away from the dock, on the side nearer the next goal when it stands at it."""
        last = self._left_from(task)
        if last is None or last == name:
            return None
        dock = task.fleet.docks[last]
        x, y, th = task.agv.pose
        c, s = math.cos(dock[2]), math.sin(dock[2])
        along = (x - dock[0]) * c + (y - dock[1]) * s  # on the dock's line
        across = -(x - dock[0]) * s + (y - dock[1]) * c
        herr = math.atan2(math.sin(dock[2] - th), math.cos(dock[2] - th))
        aligned = min(abs(herr), math.pi - abs(herr)) < math.radians(30)
        if not aligned or abs(across) > 0.3 or abs(along) >= LEAVE:
            return None
        if abs(along) < 0.05:  # still at the dock: out on the side nearer the next goal
            gx, gy = task.map.lookahead(task.agv.pose[:2], task.fleet.docks[name][:2], ahead=2.0)
            away = 1.0 if (gx - dock[0]) * c + (gy - dock[1]) * s >= 0 else -1.0
        else:
            away = 1.0 if along > 0 else -1.0
        forward = math.cos(th) * c + math.sin(th) * s  # the AGV's heading along the line (+-1)
        return 0.5 * away * (1.0 if forward >= 0 else -1.0)

    @staticmethod
    def _bearing(pose, goal) -> float:
        """The turn (rad, in [-pi, pi]) from ``pose``'s heading to the bearing of the point ``goal``."""
        err = math.atan2(goal[1] - pose[1], goal[0] - pose[0]) - pose[2]
        return math.atan2(math.sin(err), math.cos(err))

    @staticmethod
    def _approach(along: float, across: float, herr: float) -> tuple[float, float]:
        """Speed and turn rate creeping along a dock line to the dock, steering onto the line."""
        if along > -0.008:
            return 0.0, 0.0
        v = min(0.4, max(0.06, 0.8 * -along))
        return v, 2.0 * herr - 3.0 * across

    def _dock_loosely(self, task: AGVDeliver, dock, pre) -> tuple[float, float, list]:
        """``-v0`` and ``-v1``'s docking: drive to within 12 cm of the pre-dock point, turn onto
        the dock's heading and creep in along its line. Returns speed, turn rate and the path it
        follows."""
        agv, cfg = task.agv, task.agv.config
        x, y = agv.pose[:2]
        along, across, herr = self._line(dock)
        if self._on_line(dock) and (abs(herr) < math.radians(2) or along > -PREDOCK + 0.1):
            v, w = self._approach(along, across, herr)  # on the line, straightened (or under way along it)
            return v, w, [(x, y), (dock[0], dock[1])]
        dist = math.dist((x, y), pre)
        if dist < 0.12 or (dist < 0.25 and abs(agv.vel[0]) < 0.05):
            return 0.0, 2.0 * herr, [(x, y), (dock[0], dock[1])]
        err = self._bearing(agv.pose, task.map.lookahead((x, y), pre, ahead=1.0))
        v = 0.0 if abs(err) > 0.6 else cfg.max_speed * math.cos(err) * min(1.0, 0.2 + 0.8 * dist)
        return v, 2.5 * err, task.map.path((x, y), pre, 8.0)

    def _dock_precisely(self, task: AGVDeliver, dock, pre) -> tuple[float, float, list]:
        """``-v2``'s docking: drive onto the pre-dock point to within ``PRE_STOP``, turn onto the
        dock's heading, and creep in only straight and from within ``ENTRY`` of its line; an AGV
        whose front corner strays ``STRAY`` off the line once its body is beside the station
        (where the dock leaves 3 cm) backs straight out and comes in again. Returns speed, turn
        rate and the path it follows."""
        agv, cfg = task.agv, task.agv.config
        x, y, th = agv.pose
        along, across, herr = self._line(dock)
        lane = abs(herr) < math.radians(15) and -PREDOCK - 0.3 < along < 0.05
        beside = along > -self.BESIDE
        reach = abs(across) + SPEC.length / 2 * abs(math.sin(herr))  # a front corner off the line (m)
        to_dock = [(x, y), (dock[0], dock[1])]
        if lane and beside and reach >= self.STRAY:
            return -0.1, 2.0 * herr, []
        if along <= -PREDOCK + 0.01:  # at (or behind) the pre-dock point: in only straight and on the line
            entering = abs(across) < self.ENTRY and abs(herr) < math.radians(1.5)
        else:  # under way to the station
            entering = abs(across) < self.ENTRY and reach < self.STRAY
        if lane and (beside or entering):
            v, w = self._approach(along, across, herr)
            return v, w, to_dock
        dist = math.dist((x, y), pre)
        still = abs(agv.vel[0]) < 0.05
        if dist < self.PRE_STOP or (dist < 1.6 * self.PRE_STOP and still and abs(across) < self.ENTRY):
            return 0.0, 2.0 * herr, to_dock
        if dist > 0.3:
            goal, path = task.map.lookahead((x, y), pre, ahead=1.0), task.map.path((x, y), pre, 8.0)
        else:  # the last stretch: straight at the point, backing up to it if past it
            goal, path = pre, [(x, y), pre]
        err, sign = self._bearing(agv.pose, goal), 1.0
        if dist <= 0.3 and abs(err) > math.pi / 2:
            sign, err = -1.0, self._bearing((x, y, th + math.pi), goal)
        # brake to stop on the point (half the acceleration limit), creeping the last centimetres
        speed = min(cfg.max_speed * min(1.0, 0.2 + 0.8 * dist), 0.7 * math.sqrt(cfg.max_accel * dist) + 0.02)
        v = 0.0 if abs(err) > 0.6 else sign * speed * math.cos(err)
        return v, 2.5 * err, path if sign > 0 else []

    def _rollout(self, task: AGVDeliver, v: float, w: float, horizon: float, brake_after: float | None, path: list):
        """Poses (t, (x, y, heading)) every 0.25 s if the AGV heads for speed ``v`` within its
        acceleration limit, and from ``brake_after`` seconds on brakes to a stop. Driving, it
        follows ``path`` (or straight on if empty); turning on the spot (``v`` 0) it turns at ``w``
        for ``COMMIT`` seconds."""
        x, y, th = task.agv.pose
        speed, accel = task.agv.vel[0], task.agv.config.max_accel
        pts = path if (path and v > 0) else [(x, y), (x + 20 * math.cos(th), y + 20 * math.sin(th))]
        if v < 0:
            pts = [(x, y), (x - 20 * math.cos(th), y - 20 * math.sin(th))]
        seg = [math.dist(a, b) for a, b in itertools.pairwise(pts)]
        out, dt, s, k = [], 0.25, 0.0, 0
        for n in range(int(horizon / dt) + 1):
            t = n * dt
            while k < len(seg) - 1 and s > seg[k]:
                s -= seg[k]
                k += 1
            (ax, ay), (bx, by) = pts[k], pts[k + 1]
            f = min(s / seg[k], 1.0) if seg[k] > 0 else 1.0
            if v == 0.0 and w != 0.0:
                heading = th + w * min(t, self.COMMIT)
            elif speed < 0 or v < 0:
                heading = th
            else:
                heading = math.atan2(by - ay, bx - ax) if n else th
            out.append((t, (ax + (bx - ax) * f, ay + (by - ay) * f, heading)))
            braking = brake_after is not None and t >= brake_after
            goal_v = 0.0 if braking else abs(v)
            speed = abs(speed) + min(max(goal_v - abs(speed), -accel * dt), accel * dt)
            s += speed * dt
        return out

    def _dynamic_gap(self, task: AGVDeliver, poses) -> float:
        """Smallest gap (m) between the AGV along ``poses`` and the people walking on (each keeps
        its pace and turns back at its path's ends)."""
        half = (SPEC.length / 2, SPEC.width / 2)
        gap = math.inf
        for t, pose in poses:
            for person in task.fleet.people:
                ps = person.s + person.direction * person.speed * t
                ps = -ps if ps < 0 else (2 * person.total - ps if ps > person.total else ps)
                pxy = person.position_at(min(max(ps, 0.0), person.total))
                gap = min(gap, rect_gap(pose, half, pxy, person.config.radius))
        return gap

    def _static_gap(self, task: AGVDeliver, pose) -> float:
        """Smallest gap (m) between the AGV standing at ``pose`` and any point of a walking path."""
        return walking_gap(task, pose)

    def _safe_to_go(self, task: AGVDeliver, v: float, w: float, path: list) -> bool:
        """Whether driving at ``v``, ``w`` keeps every person outside the safety radius (plus
        ``MARGIN``): if it can still brake to a stop somewhere no walking path comes near, the
        people it meets until then; if that stop would be on or beside a walking path (crossing
        an aisle), the people it meets while it carries on across."""
        safe = task.agv.config.safety_radius + self.MARGIN
        braked = self._rollout(task, v, w, self.HORIZON, self.COMMIT, path)
        if self._static_gap(task, braked[-1][1]) >= safe + self.STOP_MARGIN:
            go = self._dynamic_gap(task, braked)
            if go >= safe:
                return True
        else:  # a crossing: it starts one only with room to spare (its plan of the crossing is rough)
            go = self._dynamic_gap(task, self._rollout(task, v, w, self.CROSS_HORIZON, None, path))
            if go >= safe + self.CROSS_MARGIN:
                return True
        stop = self._rollout(task, 0.0, 0.0, self.CROSS_HORIZON, 0.0, path)
        if self._static_gap(task, stop[-1][1]) < safe + self.STOP_MARGIN:  # braking now ends beside a path: no refuge
            return go >= self._dynamic_gap(task, stop)
        return False

    def _evade(self, task: AGVDeliver, path: list) -> float:
        """Where standing still would let a person into the safety field (people do not give way):
        the speed (``EVADE`` m/s back or forward, straight on, clear of racks, stations and the
        other AGVs) that keeps them furthest off over ``HORIZON``, if that is further than
        standing; else 0."""
        stay = self._dynamic_gap(task, self._rollout(task, 0.0, 0.0, self.HORIZON, 0.0, path))
        if stay >= task.agv.config.safety_radius + 0.05:
            return 0.0
        best, speed = stay + 0.05, 0.0
        for v in (-self.EVADE, self.EVADE):
            poses = self._rollout(task, v, 0.0, self.HORIZON, self.COMMIT * 2, [])
            ends = [(x + e * SPEC.length / 2 * math.cos(th), y + e * SPEC.length / 2 * math.sin(th))
                    for _, (x, y, th) in poses for e in (-1.0, 1.0)]  # fmt: skip
            if min(task.map.clearance[task.map.cell(xy)] for xy in ends) < SPEC.width / 2 + 0.05:
                continue
            near = SPEC.length + 0.3  # another AGV's centre this near a pose: too close to pass
            if any(math.dist(p[:2], o.pose[:2]) < near for _, p in poses for o in task.fleet.agvs[1:]):
                continue
            gap = self._dynamic_gap(task, poses)
            if gap > best:
                best, speed = gap, v
        return speed

    def _agv_ahead(self, task: AGVDeliver, v: float) -> bool:
        """Whether another AGV stands within stopping distance ahead (in a 60 degree cone)."""
        agv = task.agv
        stop = SPEC.length + 0.4 + v * v / agv.config.max_accel
        for other in task.fleet.agvs[1:]:
            lx, ly = agv.to_local(other.pose[:2])
            if 0 < lx < stop and abs(ly) < lx * 0.6 + SPEC.width:
                return True
        return False

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        task: AGVDeliver = self.env.task
        agv, fleet = task.agv, task.fleet
        cfg = agv.config
        name = task.target()
        transfer = any(q.state in ("loading", "unloading") and q.agv == 0 for q in fleet.totes)
        if transfer or fleet.docked_at(agv) == name:
            return np.zeros(2, dtype=np.float32)
        leave = self._leaving(task, name)
        if leave is not None:  # pull straight out of the last dock before turning
            v, w, path = leave, 0.0, []
        else:
            dock = self._choose_dock(task, name)
            pre = (dock[0] - PREDOCK * math.cos(dock[2]), dock[1] - PREDOCK * math.sin(dock[2]))
            dock_in = self._dock_precisely if task.recovering_expert else self._dock_loosely
            v, w, path = dock_in(task, dock, pre)
        w = max(-cfg.max_turn_rate, min(cfg.max_turn_rate, w))
        v = max(-cfg.max_speed, min(cfg.max_speed, v))
        # plan with the speed the drives will give (a slowdown fault caps them below the command)
        k = agv.speed_scale
        if fleet.people and (v != 0 or w != 0) and not self._safe_to_go(task, v * k, w * k, path):
            v, w = 0.0, 0.0
            if task.recovering_expert:
                v = self._evade(task, path)
        if v > 0 and self._agv_ahead(task, v):
            v = 0.0
        return np.array(task.encode(v, w), dtype=np.float32)
