"""The Twin: a cell built once from its layout, initialised per episode, stepped at control rate."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from twin.disturbances import Disturbances, extra_pool_rows
from twin.equipment import Bin, Conveyor, InspectionStation, Machine, Tray, build_pedestal, build_table
from twin.equipment.assembly import PegHole, peg_spec
from twin.equipment.floor import build_floor
from twin.equipment.machine import REST_SPEED
from twin.events import EventLog, compute_kpis, compute_oee, compute_quality
from twin.fab import Fab
from twin.fleet import Fleet
from twin.layout import FAULT_FAMILIES, CellLayout, load_layout, resolve_asset
from twin.parts import IN_PLAY, Arrival, Part, build_pool, park, schedule, unpark
from twin.robots import Arm, build_arm
from twin.robots.arm import ROBOT_MESHES
from twin.sensors import Camera
from twin.telemetry.replay import drive
from twin.world import World

PICK_LIFT = 0.02  # metres above its resting height at which a held part counts as picked
GRASP_RADIUS = 0.06  # a tool closing this close to a part is a pick attempt
COLLISION_FORCE = 5.0  # newtons of contact between a robot and the cell that count as a collision
_GRASPABLE = frozenset({"on_conveyor", "loose", "stored", "on_station"})


class Twin:
    """A digital twin of one factory cell.

    ``Twin(layout)`` builds every body once. ``reset(rng)`` puts the cell back in its initial
    state and draws this episode's part stream; it never reloads a URDF. ``step()`` advances one
    control step and keeps the event log.

    Args:
        layout: A validated layout, a path to a layout file, or a bundled layout's name.
        gui: Open the PyBullet GUI (headless DIRECT by default).
        source: The file an in-memory layout came from (its fixtures' paths are relative to it).
        robot_meshes: How the arms look to the cameras: ``"visual"`` (the model's meshes) or
            ``"collision"`` (their collision meshes: about ten times faster to render on a CPU).
    """

    def __init__(
        self,
        layout: CellLayout | str | Path = "default",
        gui: bool = False,
        source: str | Path | None = None,
        robot_meshes: str = "visual",
    ) -> None:
        if robot_meshes not in ROBOT_MESHES:
            raise ValueError(f"robot_meshes must be one of {list(ROBOT_MESHES)}, got {robot_meshes!r}")
        if not isinstance(layout, CellLayout):
            self.layout_source = str(layout)
            layout = load_layout(layout)
        else:
            self.layout_source = str(source) if source is not None else "<in memory>"
        self.layout = layout
        ph = layout.physics
        self.world = World(ph.hz, ph.substeps, ph.gravity, gui=gui, solver_iterations=ph.solver_iterations)
        w = self.world
        w.robot_meshes = robot_meshes
        w.create_plane("floor", friction=layout.floor.friction)
        self.robots = [build_arm(w, f"{r.model}-{i}", r) for i, r in enumerate(layout.robots)]
        for i, r in enumerate(layout.robots):
            if r.base.position[2] > 0.05:
                build_pedestal(w, f"pedestal-{i}", np.asarray(r.base.position))
        self.conveyors = {f"conveyor-{i}": Conveyor(w, f"conveyor-{i}", c) for i, c in enumerate(layout.conveyors)}
        self.bins = [Bin(w, f"bin-{i}", b) for i, b in enumerate(layout.bins)]
        self.trays = [Tray(w, f"tray-{i}", t) for i, t in enumerate(layout.trays)]
        self._receptacles: list[Bin] = [*self.bins, *(t for t in self.trays if not t.count)]
        """Where a part set down counts as placed: bins and output trays (a part set back in an
        input tray is stored there again)."""
        self.machines = [Machine(w, f"machine-{i}", m, layout.part(m.produces)) for i, m in enumerate(layout.machines)]
        for i, t in enumerate(layout.tables):
            build_table(w, f"table-{i}", t)
        base_dir = Path(self.layout_source).parent if self.layout_source != "<in memory>" else None
        for i, fx in enumerate(layout.fixtures):
            path = resolve_asset(fx.urdf, base_dir)
            if path is None:
                raise FileNotFoundError(f"fixtures[{i}].urdf: file not found: {fx.urdf!r}")
            orn = w.p.getQuaternionFromEuler([0, 0, np.radians(fx.pose.yaw)])
            w.load_urdf(f"fixture-{i}", path, fx.pose.position, orn, fixed_base=fx.fixed, scale=fx.scale)
        per_type = max((f.parts_per_episode for f in layout.feeders), default=0)
        counts = dict.fromkeys(sorted({name for f in layout.feeders for name in f.mix}), per_type)
        for tray in self.trays:
            if tray.count:
                counts[tray.config.fill] = counts.get(tray.config.fill, 0) + tray.count
        variants = sorted({(n, d) for f in layout.feeders for n in f.mix for d in f.defects})
        pegs = [peg_spec(i, c) for i, c in enumerate(layout.insertions)]
        fed_defects: dict[str, list[str]] = defaultdict(list)
        for n, d in variants:
            fed_defects[n].append(d)
        self.parts: list[Part] = build_pool(
            w,
            [(layout.part(n), counts[n]) for n in sorted(counts)] + [(spec, 1) for spec in pegs],
            [(layout.part(n), layout.defect(d), per_type) for n, d in variants],
            extra_pool_rows(layout, per_type, fed_defects),
        )
        by_name = {p.name: p for p in self.parts}
        self.insertions = [
            PegHole(w, f"insertion-{i}", c, by_name[f"part-{pegs[i].name}-0"]) for i, c in enumerate(layout.insertions)
        ]
        self.inspections = [
            InspectionStation(w, f"inspection-{i}", c, self.conveyors[c.conveyor])
            for i, c in enumerate(layout.inspections)
        ]
        self._part_by_id = {p.id: p for p in self.parts}
        self._part_by_name = {p.name: p for p in self.parts}
        self._base_spec = {p.id: p.spec for p in self.parts}  # a machine changes a part's type; reset restores it
        self.fleet = Fleet(w, layout) if (layout.agvs or layout.people or layout.walls or layout.racks) else None
        """The logistics floor's AGVs, stations, totes and people, if the layout has any."""
        self.fab = Fab(w, layout) if (layout.cassettes or layout.chambers) else None
        """The cluster tool's cassettes, chambers, wafers and wafer robot, if the layout has any."""
        build_floor(w, layout)
        self.cameras = {c.name: self._camera(c) for c in layout.cameras}
        self.disturbances = Disturbances(self) if layout.faults.families() or layout.randomization.active() else None
        """The cell's faults and randomisation, if its layout has any."""
        self.log = EventLog()
        self.replay = None
        """A plant log's episode driving this one (``twin.telemetry.replay.EpisodePlan``): set it
        before the reset; None for the seeded generators."""
        self._touching: set[tuple[int, int]] = set()
        self._initial_state: int | None = None  # saved at the first reset, once tasks added their bodies
        self._saved_bodies = 0
        self.sim_time = 0.0
        self._steps = 0
        self._next_arrival = np.inf  # time of the next queued part's arrival

    # -- episode ----------------------------------------------------------------------------

    @property
    def control_dt(self) -> float:
        return self.world.control_dt

    def reset(self, rng: np.random.Generator) -> None:
        """Initial physics state, robots home, a fresh event log and a new seeded part stream."""
        if self.replay is not None:
            self.replay.begin()
        if self.disturbances is not None:  # side streams of rng: it draws nothing from rng itself
            self.disturbances.begin(rng)
        for r in self.robots:
            r.release()
        if self._initial_state is None:
            self._initial_state, self._saved_bodies = self.world.save_state(), self.world.num_bodies()
        elif self.world.num_bodies() != self._saved_bodies:
            raise RuntimeError("bodies were added to the twin after its first reset; add them before resetting")
        if self.fleet is not None:
            self.fleet.before_restore()
        if self.fab is not None:
            self.fab.before_restore()
        self.world.restore_state(self._initial_state)
        for r in self.robots:
            r.reset()
        self.log.clear()
        self._touching.clear()
        self.sim_time = 0.0
        self._steps = 0
        for part in self.parts:
            self.retire(part)
        free: dict[tuple[str, str | None, float], list[Part]] = defaultdict(list)
        for part in self.parts:
            free[part.spec.name, part.defect, part.scale].append(part)
        for feeder in self.layout.feeders:
            conv = self.conveyors[feeder.conveyor]
            arrivals = schedule(feeder, rng)
            if self.replay is not None:  # the log's arrivals, with the drawn placements on the belt
                arrivals = self._replayed(feeder.conveyor, arrivals, free)
            for a in arrivals:
                scale, mass = self.disturbances.arrival(a.part_type) if self.disturbances else (1.0, None)
                part = free[a.part_type, a.defect, scale].pop(0)
                if mass is not None:
                    self.world.p.changeDynamics(part.id, -1, mass=part.spec.mass * mass)
                    part.out_of_spec = part.dynamics_changed = True
                self._queue(part, feeder, conv, a)
        self._next_arrival = min((q.arrival_time for q in self.parts if q.state == "queued"), default=np.inf)
        for m in self.machines:  # after the part stream, so machines leave other draws unchanged
            m.reset(rng)
            if self.replay is not None:
                m.planned = list(self.replay.process_times.get(m.name, []))
        for station in self.inspections:  # after the rest, so cells without inspection draw as before
            station.reset(rng)
        for tray in self.trays:
            if not tray.count:
                continue
            spec = self.layout.part(tray.config.fill)
            for xyz, yaw in tray.draw_poses(rng, spec.half_height):
                part = free[spec.name, None, 1.0].pop(0)
                unpark(self.world, part)
                self.world.p.resetBasePositionAndOrientation(
                    part.id, xyz, self.world.p.getQuaternionFromEuler([0, 0, yaw])
                )
                part.state, part.arrival_time, part.location, part.pos = "stored", 0.0, tray.name, xyz
                part.rest_z = xyz[2] - 0.001
                self.log.add(0.0, "arrived", part.name, detail=tray.name)
        for station in self.insertions:
            station.reset(rng)
            peg, (x, y), z = station.peg, station.config.peg_start, station.base[2]
            xyz = [x, y, z + peg.spec.half_height + 0.001]
            unpark(self.world, peg)
            self.world.p.resetBasePositionAndOrientation(peg.id, xyz, [0, 0, 0, 1])
            peg.state, peg.arrival_time, peg.location, peg.pos, peg.rest_z = (
                "stored",
                0.0,
                station.name,
                xyz,
                xyz[2] - 0.001,
            )
            self.log.add(0.0, "arrived", peg.name, detail=station.name)
        if self.fleet is not None:  # last, so cells without a floor draw as before
            self.fleet.reset(rng)
        if self.fab is not None:
            self.fab.reset(rng)
        if self.disturbances is not None:
            self.disturbances.finish(self.parts)

    def _queue(self, part: Part, feeder, conv: Conveyor, a) -> None:
        """Queue ``part`` to arrive on ``conv`` as ``feeder`` places arrival ``a`` (time, offset, yaw)."""
        pos = conv.start() + conv.direction * feeder.spawn_offset + conv.lateral * a.lateral
        pos[2] += part.spec.half_height + 0.001
        yaw = np.degrees(np.arctan2(conv.direction[1], conv.direction[0])) + np.degrees(a.yaw)
        orn = np.asarray(self.world.p.getQuaternionFromEuler([0, 0, np.radians(yaw)]))
        part.state, part.arrival_time, part.arrival_pose, part.conveyor = "queued", a.t, (pos, orn), feeder.conveyor

    def retire(self, part: Part) -> None:
        """Take ``part`` out of play and forget its episode (its type, state, place and readings):
        parked, it is free to arrive again (reset retires every part; a line retires one that has
        left the cell)."""
        park(self.world, part)
        if part.spec is not self._base_spec[part.id]:
            part.spec = self._base_spec[part.id]
            self.world.p.changeVisualShape(part.id, -1, rgbaColor=list(part.spec.color))
        part.state, part.arrival_time, part.arrival_pose, part.drop_logged = "parked", np.inf, None, False
        part.location, part.reading, part.out_of_spec = "", None, False
        part.pos, part.vel = part.park, np.zeros(3)
        if part.dynamics_changed:
            spec = self._base_spec[part.id]
            self.world.p.changeDynamics(part.id, -1, mass=spec.mass, lateralFriction=spec.friction)
            part.dynamics_changed = False

    def feed(self, part: Part, feeder_index: int, lateral: float = 0.0, yaw: float = 0.0) -> None:
        """Bring parked ``part`` onto the belt of feeder ``feeder_index`` at the next control step
        (``lateral`` metres off the belt's centre line, ``yaw`` radians): an arrival from outside
        the cell's own seeded stream, such as a line's buffer."""
        if part.state != "parked":
            raise ValueError(f"{part.name} is {part.state}, not parked: only a parked part can be fed")
        feeder = self.layout.feeders[feeder_index]
        self._queue(part, feeder, self.conveyors[feeder.conveyor], Arrival(self.sim_time, part.spec.name, lateral, yaw))
        self._next_arrival = min(self._next_arrival, self.sim_time)

    def stock(self, part: Part, tray: Tray, yaw: float = 0.0) -> bool:
        """Set parked ``part`` down in a free slot of input ``tray`` now (a refill from outside the
        cell, such as a line's buffer); False when every slot is taken."""
        if part.state != "parked":
            raise ValueError(f"{part.name} is {part.state}, not parked: only a parked part can be stocked")
        pitch = min(tray.config.size[0] / tray.config.grid[0], tray.config.size[1] / tray.config.grid[1])
        taken = [q.xyz for q in self.parts if q.state in IN_PLAY]
        slot = next((s for s in tray.slots if all(math.dist(s[:2], q[:2]) > pitch / 2 for q in taken)), None)
        if slot is None:
            return False
        xyz = [float(slot[0]), float(slot[1]), float(slot[2] + part.spec.half_height + 0.001)]
        unpark(self.world, part)
        self.world.p.resetBasePositionAndOrientation(part.id, xyz, self.world.p.getQuaternionFromEuler([0, 0, yaw]))
        part.state, part.arrival_time, part.location, part.pos = "stored", self.sim_time, tray.name, xyz
        part.rest_z = xyz[2] - 0.001
        self.log.add(self.sim_time, "arrived", part.name, detail=tray.name)
        return True

    def _replayed(self, conveyor: str, drawn: list, free: dict) -> list:
        """The replayed log's arrivals on ``conveyor``, each placed on the belt as the seeded
        generator would have placed the one of its rank (lateral offset, yaw); arrivals beyond
        what the cell's part pool holds are left out and noted in the plan's ``dropped``."""
        out, room = [], {k: len(v) for k, v in free.items()}
        for k, a in enumerate(self.replay.arrivals.get(conveyor, [])):
            key = (a.part_type, a.defect, 1.0)
            if room.get(key, 0) <= 0:
                self.replay.dropped.append(f"{conveyor}: {a.part_type} at {a.t:.2f} s (the pool holds no more)")
                continue
            room[key] -= 1
            place = drawn[k] if k < len(drawn) else None
            out.append(replace(a, lateral=place.lateral, yaw=place.yaw) if place is not None else a)
        return out

    # -- stepping ---------------------------------------------------------------------------

    def _camera(self, config) -> Camera:
        """A camera fixed in the cell, or riding on a robot's tool (a wrist camera)."""
        if config.mount is None:
            return Camera(self.world, config)
        robot = self.robots[config.mount]
        return Camera(self.world, config, carrier=lambda: (robot.ee_xyz(), robot.ee_orientation()))

    def command_tool(self, robot: Arm, close: bool) -> None:
        """Close/open a robot's tool, logging a pick attempt when it closes next to a part."""
        was = robot.tool_active
        robot.command_tool(close)
        if close and not was:
            ee = robot.ee_xyz()
            for part in self.parts:
                if part.state in _GRASPABLE and math.dist(part.xyz, ee) < GRASP_RADIUS:
                    self.log.add(self.sim_time, "grasp", part.name, robot.name)
                    break

    def step(self) -> None:
        """Advance one control step: part arrivals, belts, physics, tools, part tracking, events."""
        p = self.world.p
        for part in self.parts if self.sim_time + 1e-9 >= self._next_arrival else ():
            if part.state == "queued" and part.arrival_time <= self.sim_time + 1e-9:
                pos, orn = part.arrival_pose
                unpark(self.world, part)
                p.resetBasePositionAndOrientation(part.id, pos.tolist(), orn.tolist())
                p.resetBaseVelocity(part.id, self.conveyors[part.conveyor].velocity.tolist(), [0, 0, 0])
                part.state, part.pos = "on_conveyor", pos
                self.log.add(self.sim_time, "arrived", part.name, detail=part.conveyor, defect=part.defect)
                if part.out_of_spec:  # a fault that starts and ends with the part's arrival
                    self.log.add(self.sim_time, "fault_start", part.name, detail="out_of_spec", value=part.scale)
                    self.log.add(self.sim_time, "fault_end", part.name, detail="out_of_spec", value=0.0)
        if self.sim_time + 1e-9 >= self._next_arrival:
            self._next_arrival = min((q.arrival_time for q in self.parts if q.state == "queued"), default=np.inf)
        if self.disturbances is not None:
            self.disturbances.pre_step(self.sim_time, self.log)
        if self.replay is not None:
            drive(self, self.replay)
        for conv in self.conveyors.values():
            conv.pre_step()
        if self.fleet is not None:
            self.fleet.pre_step(self.sim_time, self.control_dt, self.log)
        if self.fab is not None:
            self.fab.pre_step(self.control_dt)
        self.world.step()
        self._steps += 1
        self.sim_time = self._steps * self.control_dt  # no drift from summing floats
        self._after_step()

    def _after_step(self) -> None:
        p = self.world.p
        dt = self.control_dt
        held: dict[int, Arm] = {}
        touching: set[tuple[int, int]] = set()
        for robot in self.robots:
            tool_contacts: dict[int, list] = {}
            for c in p.getContactPoints(bodyA=robot.id):
                other = c[2]
                if other in self._part_by_id:
                    if c[3] in robot.tool_links:
                        tool_contacts.setdefault(other, []).append(c)
                elif c[9] > COLLISION_FORCE:
                    touching.add((robot.id, other))
            robot.update(dt, tool_contacts)
            holding = robot.holding(tool_contacts)
            robot.gripping = holding
            if holding is not None:
                held[holding] = robot
        for pair in touching - self._touching:
            self.log.add(
                self.sim_time, "collision", robot=self.world.name_of(pair[0]), detail=self.world.name_of(pair[1]) or ""
            )
        self._touching = touching
        beams: dict[str, int | None] = {}  # beam-breaks read this step (only those a part is near)
        in_play = [q for q in self.parts if q.state in IN_PLAY]
        for part in in_play:
            pos, _ = p.getBasePositionAndOrientation(part.id)
            part.xyz = pos
            self._track(part, pos, held.get(part.id), beams)
        for station in self.inspections:
            station.update(self.sim_time, in_play, self.log)
        for station in self.insertions:
            station.update(self.sim_time, self.log)
        for m in self.machines:
            m.update(self.sim_time, [q for q in in_play if q.state == "on_station" and m.holds(q.xyz)], self.log)
        if self.fleet is not None:
            self.fleet.after_step(self.sim_time, dt, self.log)
        if self.fab is not None:
            self.fab.after_step(self.sim_time, dt, self.log)

    def _beam(self, name: str, beams: dict[str, int | None]) -> int | None:
        if name not in beams:
            beams[name] = self.conveyors[name].read_beam()
        return beams[name]

    def _track(self, part: Part, pos: tuple, robot: Arm | None, beams: dict[str, int | None]) -> None:
        t, hh, z = self.sim_time, part.spec.half_height, pos[2]
        conv = self.conveyors.get(part.conveyor)
        if part.state == "stored":
            tray = next((b for b in self.trays if b.name == part.location), None)
            if robot is not None and z > part.rest_z + PICK_LIFT:
                part.state, part.drop_logged, part.location = "held", False, ""
                self.log.add(t, "picked", part.name, robot.name)
            elif (tray is not None and not tray.contains(pos)) or (tray is None and abs(z - part.rest_z) > 0.01):
                part.state, part.location = "loose", ""  # pushed out of its tray, or knocked over
            return
        if part.state == "on_station":
            station = next((m for m in self.machines if m.holds(pos)), None)
            if robot is not None and (station is None or z > station.top_z + hh + PICK_LIFT):
                part.state, part.drop_logged = "held", False
                self.log.add(t, "picked", part.name, robot.name)
            elif station is None:
                part.state = "loose"  # pushed off the fixture
            return
        if part.state == "on_conveyor" or part.state == "loose":
            rest_z = (conv.surface_z if conv else 0.0) + hh
            if robot is not None and z > rest_z + PICK_LIFT:
                part.state, part.drop_logged = "held", False
                self.log.add(t, "picked", part.name, robot.name)
                return
        if part.state == "on_conveyor":
            if conv is not None and conv.near_beam(pos) and self._beam(part.conveyor, beams) == part.id:
                part.state = "missed"
                self.log.add(t, "missed", part.name, detail="reached the end of the conveyor")
            elif conv is not None and z < conv.surface_z - 0.1:
                part.state = "missed"
                self.log.add(t, "missed", part.name, detail="fell off the conveyor")
        elif part.state == "held":
            if robot is None:
                part.state = "loose"
                if (
                    not any(b.above(pos) for b in [*self.bins, *self.trays])
                    and not any(m.holds(pos) for m in self.machines)
                    and not any(s.over(pos) for s in self.insertions)
                ):
                    part.drop_logged = True
                    self.log.add(t, "dropped", part.name, detail="released outside a bin")
        elif part.state == "loose":
            speed = math.hypot(*part.vel_xyz)
            in_bin = next((b.name for b in self._receptacles if b.contains(pos)), None)
            back = next((b for b in self.trays if b.count and b.contains(pos)), None) if speed < REST_SPEED else None
            hole = next((s for s in self.insertions if s.holds(pos)), None) if speed < REST_SPEED else None
            if hole is not None:
                part.state, part.location = "placed", hole.name  # left standing in the hole
                self.log.add(t, "placed", part.name, detail=hole.name)
            elif back is not None:
                part.state, part.location, part.rest_z = "stored", back.name, back.center[2] + hh
            elif in_bin and speed < 0.3:
                part.state, part.location = "placed", in_bin
                self.log.add(t, "placed", part.name, detail=in_bin)
            elif speed < REST_SPEED and any(m.holds(pos) for m in self.machines):
                part.state = "on_station"  # set down on a machine's load fixture
            elif conv is not None and conv.on_belt(pos, hh) and speed < 0.5:
                part.state = "on_conveyor"
            elif z < hh + 0.01 or (speed < 1e-3 and not in_bin):  # on the floor, or at rest elsewhere
                part.state = "lost"
                if not part.drop_logged:
                    self.log.add(t, "dropped", part.name, detail="came to rest outside a bin")

    def part(self, name: str) -> Part:
        """The part called ``name``."""
        return self._part_by_name[name]

    # -- results ----------------------------------------------------------------------------

    @property
    def energy(self) -> float:
        return sum(r.energy for r in self.robots) + (self.fleet.energy if self.fleet is not None else 0.0)

    def kpis(self) -> dict[str, float]:
        """The production KPIs and, per machine, its ISO 22400 figures (``machine-0_oee``, ...)."""
        out = compute_kpis(self.log, self.sim_time, self.energy)
        oee = compute_oee(self.log, self.sim_time, {m.name: m.config.pri for m in self.machines})
        for name, figures in oee.items():
            for key in ("oee", "availability", "performance", "quality", "idle_time", "produced", "scrap"):
                out[f"{name}_{key}"] = figures[key]
        for s in self.insertions:
            picked = next((e.t for e in self.log.events if e.kind == "picked" and e.part == s.peg.name), math.nan)
            out[f"{s.name}_insertion_time"] = s.inserted_at - picked if s.inserted_at < math.inf else math.nan
            out[f"{s.name}_peak_force"] = s.peak_force
            out[f"{s.name}_jams"] = float(sum(e.kind == "jammed" and e.station == s.name for e in self.log.events))
        if self.fleet is not None:
            out.update(self.fleet.kpis(self.log, self.sim_time))
        if self.fab is not None:
            out.update(self.fab.kpis(self.log, self.sim_time))
        if self.disturbances is not None:
            out.update(self.disturbances.kpis(self.log, self.sim_time))
        sorting = {b.name: b.config.accepts for b in self.bins if b.config.accepts != "any"}
        if sorting:
            out.update(compute_quality(self.log, sorting))
        return out

    def fault_flags(self) -> np.ndarray:
        """One 0/1 per fault family (``twin.layout.FAULT_FAMILIES``): whether one is on now."""
        if self.disturbances is None:
            return np.zeros(len(FAULT_FAMILIES), dtype=np.float32)
        return self.disturbances.flags()

    @property
    def all_parts_done(self) -> bool:
        """True once every part of this episode has been placed, missed or lost."""
        return all(p.done or p.state == "parked" for p in self.parts)

    def close(self) -> None:
        self.world.close()
