"""A twin's faults and randomisation, applied to its equipment (``[faults]``, ``[randomization]``).

Everything here draws from side streams of the episode's generator (``twin.faults.side_rng``), so
a cell with faults or variation keeps the nominal cell's part stream, goals and machine times for
the same seed: a faulted or randomised episode differs from the nominal one by what the layout
asks for and nothing else.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from twin.events import EventLog
from twin.faults import Fault, FaultTimeline, compute_fault_kpis, side_rng
from twin.layout import CellLayout
from twin.robots import Arm

if TYPE_CHECKING:
    from twin.cell import Twin
    from twin.parts import Part

FURNITURE = ("floor", "conveyor-", "table-", "bin-", "tray-", "machine-", "pedestal-", "wall-", "rack-", "station-")
"""Bodies whose colours ``color_jitter`` varies (never parts, robots or lamps)."""
BASE_LIGHT = np.array([0.6, 0.4, 1.0]) / np.linalg.norm([0.6, 0.4, 1.0])


def part_scales(layout: CellLayout) -> tuple[list[float], float | None]:
    """The size levels fed parts come in (``[1.0]`` without size randomisation) and the
    out-of-spec size factor (None without that fault)."""
    r = layout.randomization
    levels = [1.0] if r.part_size == (1.0, 1.0) else [float(v) for v in np.linspace(*r.part_size, r.size_levels)]
    oos = layout.faults.out_of_spec
    return levels, (oos.size_scale if oos is not None else None)


def extra_pool_rows(layout: CellLayout, per_type: int, defects: dict[str, list]) -> list[tuple]:
    """Pool rows (spec, defect, count, scale) for the fed parts' sizes besides the nominal one."""
    levels, oos = part_scales(layout)
    scales = sorted({*levels, *([round(lv * oos, 6) for lv in levels] if oos else [])} - {1.0})
    rows = []
    for name in sorted({n for f in layout.feeders for n in f.mix}):
        spec = layout.part(name)
        for s in scales:
            rows.append((spec, None, per_type, s))
            rows += [(spec, layout.defect(d), per_type, s) for d in defects.get(name, [])]
    return rows


class Disturbances:
    """The faults and variation of one twin; built only when its layout asks for either."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        layout = twin.layout
        self.random = layout.randomization
        self.levels, _ = part_scales(layout)
        self.oos = layout.faults.out_of_spec
        self._part_types = sorted({n for f in layout.feeders for n in f.mix})
        fleet, fab = twin.fleet, twin.fab
        arms = [r.name for r in twin.robots]
        wafer_robot = [fab.robot.name] if fab is not None else []
        agvs = [a.name for a in fleet.agvs] if fleet is not None else []
        targets = {
            "conveyor_jam": [*twin.conveyors, *([s.name for s in fleet.stations] if fleet is not None else [])],
            "machine_breakdown": [m.name for m in twin.machines] + ([c.name for c in fab.chambers] if fab else []),
            "camera_fault": list(twin.cameras),
            "beam_missed": [n for n, c in twin.conveyors.items() if c.beam is not None],
            "inspection_error": [s.name for s in twin.inspections],
            "grasp_slip": arms + wafer_robot,
            "joint_slowdown": arms + wafer_robot + agvs,
            "scanner_fault": agvs,
        }
        self.timeline = FaultTimeline(layout.faults, targets, self._apply)
        self._equipment: dict[str, object] = {
            **{m.name: m for m in twin.machines},
            **{s.name: s for s in twin.inspections},
            **({s.name: s for s in fleet.stations} if fleet is not None else {}),
            **({a.name: a for a in fleet.agvs} if fleet is not None else {}),
            **{r.name: r for r in twin.robots},
        }
        """The equipment a fault names, by its name (belts and cameras are the twin's own dicts)."""
        self._noise = np.random.default_rng(0)
        self._furniture: dict[int, list[float]] = {}
        if self.random.color_jitter > 0:
            p = twin.world.p
            for name in twin.world.body_names:
                body = twin.world.body(name)
                if name.startswith(FURNITURE) and not name.endswith("-lamp"):
                    shapes = p.getVisualShapeData(body)
                    if shapes:
                        self._furniture[body] = list(shapes[0][7])
        self._draw = np.random.default_rng(0)

    # -- episode ----------------------------------------------------------------------------

    def begin(self, rng: np.random.Generator) -> None:
        """Before the twin draws anything: this episode's side streams and part-type sizes."""
        self._draw = side_rng(rng, "randomization")
        self._fault_rng = side_rng(rng, "faults")
        self._oos_rng = side_rng(rng, "out_of_spec")
        self._size = {n: self.levels[int(self._draw.integers(len(self.levels)))] for n in self._part_types}

    def arrival(self, part_type: str) -> tuple[float, float | None]:
        """The size factor of the next fed part of ``part_type`` and, if it is out of spec, its
        mass factor (else None)."""
        scale = self._size.get(part_type, 1.0)
        if self.oos is not None and self._oos_rng.uniform() < self.oos.share:
            return round(scale * self.oos.size_scale, 6), float(self._oos_rng.uniform(*self.oos.mass_scale))
        return scale, None

    def finish(self, parts: list[Part]) -> None:
        """After the twin's reset: part dynamics, belts, bases, cameras, colours, a fresh fault timeline."""
        twin, r, rng = self.twin, self.random, self._draw
        p = twin.world.p
        if r.part_mass != (1.0, 1.0) or r.part_friction != (1.0, 1.0):
            for part in parts:
                if part.state == "parked":
                    continue
                m, f = float(rng.uniform(*r.part_mass)), float(rng.uniform(*r.part_friction))
                mass = p.getDynamicsInfo(part.id, -1)[0]
                p.changeDynamics(part.id, -1, mass=mass * m, lateralFriction=part.spec.friction * f)
                part.dynamics_changed = True
        if twin.fab is not None and r.part_friction != (1.0, 1.0):  # the paddle's pads, worn or new
            twin.fab.robot.set_grip(1.0, pad_scale=float(rng.uniform(*r.part_friction)))
        for name in sorted(twin.conveyors):
            twin.conveyors[name].set_speed_scale(float(rng.uniform(*r.belt_speed)))
        if r.base_position or r.base_yaw:
            for arm in twin.robots:
                base = arm.config.base
                dx, dy = rng.uniform(-r.base_position, r.base_position, 2)
                yaw = base.yaw + float(rng.uniform(-r.base_yaw, r.base_yaw))
                arm.set_base((base.position[0] + dx, base.position[1] + dy, base.position[2]), yaw)
        for name in sorted(twin.cameras):
            cam = twin.cameras[name]
            cam.clear_fault()
            if cam.config.mount is not None:
                continue
            d = r.camera_position
            eye, target = rng.uniform(-d, d, 3), rng.uniform(-d, d, 3)
            cam.set_variation(eye, target, self._light(rng) if r.lighting else None)
        if self._furniture:
            for body in sorted(self._furniture):
                rgba = self._furniture[body]
                c = np.clip(np.array(rgba[:3]) + rng.uniform(-r.color_jitter, r.color_jitter, 3), 0, 1)
                p.changeVisualShape(body, -1, rgbaColor=[*c.tolist(), rgba[3]])
        self._noise = np.random.default_rng(self._fault_rng.integers(2**63))
        self.timeline.reset(self._fault_rng)

    def _light(self, rng: np.random.Generator) -> dict[str, object]:
        k = self.random.lighting
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        angle = math.radians(90.0) * k * float(rng.uniform())
        axis = np.cross(BASE_LIGHT, v)
        axis = axis / (np.linalg.norm(axis) or 1.0)
        d = BASE_LIGHT * math.cos(angle) + np.cross(axis, BASE_LIGHT) * math.sin(angle)
        return {
            "lightDirection": d.tolist(),
            "lightColor": (1.0 - k * rng.uniform(0, 0.4, 3)).tolist(),
            "lightAmbientCoeff": 0.6 * (1 + k * float(rng.uniform(-0.5, 0.5))),
            "lightDiffuseCoeff": 0.35 * (1 + k * float(rng.uniform(-0.5, 0.5))),
        }

    # -- stepping ---------------------------------------------------------------------------

    def pre_step(self, t: float, log: EventLog) -> None:
        self.timeline.update(t, log)

    def _apply(self, fault: Fault, on: bool) -> None:
        twin, name, family = self.twin, fault.target, fault.family
        c = getattr(twin.layout.faults, family)
        fleet, fab = twin.fleet, twin.fab
        thing = self._equipment.get(name)  # None for belts, cameras, chambers and the wafer robot
        if family == "conveyor_jam":
            if name in twin.conveyors:
                twin.conveyors[name].set_running(not on)
            else:
                thing.jammed = on
        elif family == "machine_breakdown":
            if thing is not None:
                thing.set_down(twin.sim_time, on, twin.log)
            else:
                fab.cycles[name].down = on
        elif family == "camera_fault":
            twin.cameras[name].fault = (fault.mode, c.noise, self._noise) if on else None
        elif family == "beam_missed":
            twin.conveyors[name].beam_blind = on
        elif family == "inspection_error":
            thing.error = c.error if on else None
        elif family == "grasp_slip":
            scale = c.grip_scale if on else 1.0
            if thing is not None:
                thing.tool.set_grip(scale)
            else:
                fab.robot.set_grip(scale)
        elif family == "joint_slowdown":
            scale = c.speed_scale if on else 1.0
            if thing is None:
                fab.robot.speed_scale = scale
            elif isinstance(thing, Arm):
                thing.set_speed(scale)
            else:  # an AGV
                thing.speed_scale = scale
        elif family == "scanner_fault":
            i = next(i for i, a in enumerate(fleet.agvs) if a.name == name)
            if on:
                fleet.scanners.faults[i] = (fault.mode, c.noise, self._noise)
            else:
                fleet.scanners.faults.pop(i, None)

    # -- results ----------------------------------------------------------------------------

    def flags(self) -> np.ndarray:
        return self.timeline.flags()

    def kpis(self, log: EventLog, sim_time: float) -> dict[str, float]:
        if not self.timeline.config.families():
            return {}
        return compute_fault_kpis(log, sim_time, self.timeline.equipment)
