"""Machines: a station with a load fixture that turns a raw part into a finished one.

A part is physically put on the fixture and physically taken off; the machine only watches the
fixture and, when a cycle ends, changes the part's type and colour. Every state change is a
``machine_state`` event and every finished cycle a ``produced`` event (``defective`` when the
blank carried a defect or was out of spec), so OEE comes from the event log alone
(``twin.events.compute_oee``, which also counts a produced part as bad when it is later dropped,
missed or rejected by an inspection).
"""

from __future__ import annotations

import math

import numpy as np

from twin.events import EventLog, MachineState
from twin.layout import Machine as MachineConfig
from twin.layout import Part as PartConfig
from twin.parts import Part
from twin.world import World

FIXTURE_RGBA = (0.95, 0.75, 0.1, 1.0)  # safety yellow, so the load point reads at a glance
FIXTURE_THICKNESS = 0.004
REST_SPEED = 0.02  # m/s below which a part on the fixture counts as set down
LAMP = {  # stack-light colour per state: green running, amber waiting for the robot, red fault
    "idle": (0.25, 0.27, 0.25, 1.0),
    "loaded": (0.1, 0.8, 0.2, 1.0),
    "processing": (0.1, 0.8, 0.2, 1.0),
    "done": (1.0, 0.65, 0.0, 1.0),
    "blocked": (0.9, 0.1, 0.1, 1.0),
    "down": (0.9, 0.1, 0.1, 1.0),
}


class Machine:
    """One machine station, built once; ``reset`` clears it and draws nothing until a cycle starts."""

    def __init__(self, world: World, name: str, config: MachineConfig, finished: PartConfig) -> None:
        self.world, self.name, self.config, self.finished = world, name, config, finished
        lx, ly, h = config.size
        yaw = math.radians(config.yaw)
        x, y = config.position
        orn = world.p.getQuaternionFromEuler([0, 0, yaw])
        self.body = world.create_box(name, (lx / 2, ly / 2, h / 2), (x, y, h / 2), orn, rgba=config.color)
        self.fixture_xy = config.fixture_xy
        self.top_z = h + FIXTURE_THICKNESS
        half = config.fixture_size / 2
        world.create_box(
            f"{name}-fixture",
            (half, half, FIXTURE_THICKNESS / 2),
            (*self.fixture_xy, h + FIXTURE_THICKNESS / 2),
            orn,
            rgba=FIXTURE_RGBA,
        )
        # a stack light (visual only) on the corner farthest from the fixture
        corners = [(sx * (lx / 2 - 0.04), sy * (ly / 2 - 0.04)) for sx in (-1, 1) for sy in (-1, 1)]
        ox, oy = config.fixture_offset
        cx, cy = max(corners, key=lambda q: math.hypot(q[0] - ox, q[1] - oy))
        c, s = math.cos(yaw), math.sin(yaw)
        lx_w, ly_w = x + c * cx - s * cy, y + s * cx + c * cy
        world.create_box(
            f"{name}-pole", (0.008, 0.008, 0.08), (lx_w, ly_w, h + 0.08), rgba=(0.2, 0.2, 0.2, 1.0), collision=False
        )
        self.lamp = world.create_box(
            f"{name}-lamp", (0.022, 0.022, 0.03), (lx_w, ly_w, h + 0.19), rgba=LAMP["idle"], collision=False
        )
        self.state: MachineState = "idle"
        self.part: Part | None = None
        self.cycle_end = math.inf
        self._rng = np.random.default_rng(0)
        self.planned: list[float] = []
        """Seconds of the next cycles, in order, where a replayed plant log gives them."""
        self._before_down: MachineState | None = None
        self._down_since = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self.state, self.part, self.cycle_end = "idle", None, math.inf
        self._before_down = None
        self.planned = []
        self.world.p.changeVisualShape(self.lamp, -1, rgbaColor=list(LAMP["idle"]))
        self._rng = np.random.default_rng(rng.integers(2**63))

    def holds(self, pos) -> bool:
        """Whether a part whose centre is at ``pos`` rests on the fixture (in x, y within the plate)."""
        half = self.config.fixture_size / 2
        fx, fy = self.fixture_xy
        return abs(pos[0] - fx) <= half and abs(pos[1] - fy) <= half and self.top_z - 0.01 <= pos[2] <= self.top_z + 0.2

    def _set(self, t: float, state: MachineState, log: EventLog) -> None:
        if state != self.state:
            self.state = state
            self.world.p.changeVisualShape(self.lamp, -1, rgbaColor=list(LAMP[state]))
            log.add(t, "machine_state", self.part.name if self.part else None, detail=state, station=self.name)

    def set_down(self, t: float, down: bool, log: EventLog) -> None:
        """Break down (the cycle stops, the light turns red) or come back from repair (the cycle
        goes on for the time it had left)."""
        if down and self._before_down is None:
            self._before_down, self._down_since = self.state, t
            self._set(t, "down", log)
        elif not down and self._before_down is not None:
            self.cycle_end += t - self._down_since
            state, self._before_down = self._before_down, None
            self._set(t, state, log)

    def update(self, t: float, parts: list[Part], log: EventLog) -> None:
        """Advance the state machine after a control step; ``parts`` are the parts at rest on the fixture."""
        if self._before_down is not None:
            return  # down: nothing runs until the repair
        cfg = self.config
        present = self.part if self.part is not None and self.part in parts else None
        if self.state in ("processing", "done", "loaded", "blocked") and present is None:
            self.part = None
            self._set(t, "idle", log)  # taken off (a cycle cut short is not produced)
            self.cycle_end = math.inf
        if self.state == "idle" and parts:
            part = parts[0]
            self.part = part
            fx, fy = self.fixture_xy
            if part.spec.name != cfg.accepts:
                self._set(t, "blocked", log)
                return
            if max(abs(part.xyz[0] - fx), abs(part.xyz[1] - fy)) > cfg.tolerance:
                self._set(t, "blocked", log)  # on the fixture, but not seated within tolerance
                return
            self._set(t, "loaded", log)
        if self.state == "blocked" and self.part is not None and self.part.spec.name == cfg.accepts:
            fx, fy = self.fixture_xy
            if max(abs(self.part.xyz[0] - fx), abs(self.part.xyz[1] - fy)) <= cfg.tolerance:
                self._set(t, "loaded", log)
        if self.state == "loaded":
            lo, hi = cfg.process_time
            # a replayed plant log gives each cycle's length; else it is drawn
            self.cycle_end = t + (self.planned.pop(0) if self.planned else float(self._rng.uniform(lo, hi)))
            self._set(t, "processing", log)
        elif self.state == "processing" and t + 1e-9 >= self.cycle_end:
            part = self.part
            # a defective or out-of-spec blank makes a defective part, however well it is machined
            flaw = part.defect or ("out_of_spec" if part.out_of_spec else None)
            part.spec = self.finished
            self.world.p.changeVisualShape(part.id, -1, rgbaColor=list(self.finished.color))
            log.add(t, "produced", part.name, detail="defective" if flaw else "good", station=self.name, defect=flaw)
            self._set(t, "done", log)
