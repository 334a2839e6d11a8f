"""MachineTend: load raw parts from an input tray into machines and unload the finished parts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.core import Task
from envs.motion import Waypoint, WaypointFollower, act_towards, planned_ee
from twin.parts import Part

_STATES = ("idle", "busy", "done", "blocked")  # one-hot of a machine's state in the observation
_BUSY = frozenset({"loaded", "processing"})

# Each part's share of the episode's progress by where it is in its route (a delivered part is 1).
APPROACH = 0.05  # tool nearing the part to pick next: APPROACH * (1 - tanh(5 * distance))
RAW_HELD = 0.1  # a raw part held (gates the carry term)
RAW_CARRY = 0.15  # ... moving it towards a free machine's fixture: RAW_CARRY * (1 - tanh(5 * distance))
LOADED = 0.3  # a raw part on a machine's fixture (or falling onto it)
FINISHED = 0.5  # the machine has turned it into the finished part
DONE_HELD = 0.6  # the finished part held ...
DONE_CARRY = 0.2  # ... moving it towards the output tray: DONE_CARRY * (1 - tanh(5 * distance))
RELEASED = 0.85  # released over the output tray
SAFE_Z = 0.2  # metres above the robot's base at which the tool travels between stations


class MachineTend(Task):
    """Feed the machines from the input tray and unload their finished parts to the output tray.

    **Task description:** raw blanks wait in an input tray. The robot must put each on the load
    fixture of a machine (within the fixture's tolerance), let the machine run its cycle (seeded
    process time; the part turns from grey to blue), take the finished part off and set it down
    in the output tray. The default cell has a fast machine (4-5 s) and a slow one (9-11 s), so
    the order in which machines are loaded and unloaded decides the throughput. Actions: tool
    position delta (3-D, up to 3 cm per 50 ms step) and a tool command (> 0 closes).

    **Randomizations:** each blank's position (+-4 mm) and yaw (+-10 degrees) in its slot; every
    cycle's process time.

    **Success conditions:** every blank is machined and lies in the output tray. The episode
    terminates on success, or when a part is lost (dropped outside the trays and fixtures, or a
    raw part put in a tray); a 60 s time limit truncates it.

    Observations (``state``, 14 + 8 per machine numbers): tool position (3) and velocity (3),
    finger opening (1); held part present and finished (2); the next blank in the input tray
    relative to the tool (3) and present (1); per machine: its fixture's drop point relative to
    the tool (3), state one-hot (idle, busy, done, blocked; 4), seconds of cycle left / 10 (1);
    the output tray's free slot relative to the tool (3); shares of the blanks still in the input
    tray and delivered (2).

    **Dense reward** (staged, at most 1 per step): the episode's progress is the sum over parts
    of each part's share: held raw 0.1 + 0.15 * (1 - tanh(5 * distance to a free fixture)); on a
    fixture 0.3; machined 0.5; held machined 0.6 + 0.2 * (1 - tanh(5 * distance to the output
    tray's free slot)); released over the output tray 0.85; delivered 1; plus, while nothing is
    held, 0.05 * (1 - tanh(5 * tool distance)) for the part to pick next (a machined part on a
    fixture, else a blank while a machine is free). Each step's reward is the change in
    progress, so the return is the parts delivered and waiting out a cycle neither pays nor
    costs. **Sparse reward:** +1 per part delivered.

    ``info`` carries ``is_success``, ``parts_delivered``, ``parts_loaded`` (on fixtures now),
    ``progress`` and, when the episode ends, ``kpis`` (per machine OEE, idle time; throughput;
    ``parts_in_process_mean``, the time-averaged work in process).
    """

    layout = "machine_tending"
    obs_modes = ("state", "rgb")

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        inputs = [t for t in twin.trays if t.count]
        outputs = [t for t in twin.trays if not t.count]
        if not inputs or not outputs or not twin.machines:
            raise ValueError("MachineTend needs a layout with a filled input tray, an empty output tray and a machine")
        self.input, self.output, self.machines = inputs[0], outputs[0], twin.machines
        self.finished = {m.config.produces for m in self.machines}
        base = self.robot.base_position
        lo = np.minimum.reduce([base[:2] - 0.85, *[np.asarray(m.fixture_xy) for m in self.machines]])
        self.workspace = ((*(lo - 0.05), base[2] + 0.0), (*(base[:2] + 0.85), base[2] + 0.5))
        self.safe_z = float(base[2] + SAFE_Z)
        self.parts = [p for p in twin.parts if p.spec.name == self.input.config.fill]
        hh = self.parts[0].spec.half_height
        self._drops = {m.name: np.array([*m.fixture_xy, m.top_z + hh + 0.008]) for m in self.machines}
        for point in self._drops.values():
            point.flags.writeable = False

    # -- where things are ---------------------------------------------------------------------

    def drop_point(self, machine) -> np.ndarray:
        """Where the tool sets a part down on ``machine``'s fixture (fixed for the cell)."""
        return self._drops[machine.name]

    def output_slot(self) -> np.ndarray:
        hh = self.parts[0].spec.half_height
        occupied = [p.xyz for p in self.parts if p.location == self.output.name]
        x, y, z = self.output.free_slot(occupied)
        return np.array([x, y, z + hh + 0.012])

    def next_blank(self) -> Part | None:
        return next((p for p in self.parts if p.state == "stored"), None)

    def held(self) -> Part | None:
        return next((p for p in self.parts if p.state == "held"), None)

    def free_machines(self) -> list:
        return [m for m in self.machines if m.state == "idle" and m.part is None]

    def delivered(self, part: Part) -> bool:
        return part.state == "placed" and part.location == self.output.name and part.spec.name in self.finished

    # -- gym side -------------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> None:
        self._progress: float | None = None
        self._delivered = 0

    def observe(self) -> np.ndarray:
        ee = np.array(self.robot.ee_xyz())
        held, blank = self.held(), self.next_blank()
        out = [*ee, *self.robot.ee_vel_xyz(), self.robot.finger_width()]
        out += [float(held is not None), float(held is not None and held.spec.name in self.finished)]
        out += [*(blank.pos - ee), 1.0] if blank is not None else [0.0, 0.0, 0.0, 0.0]
        t = self.twin.sim_time
        for m in self.machines:
            state = "busy" if m.state in _BUSY else m.state if m.state in _STATES else "blocked"
            left = min(max(m.cycle_end - t, 0.0), 10.0) if m.state == "processing" else 0.0
            out += [*(self.drop_point(m) - ee), *(float(state == s) for s in _STATES), left / 10.0]
        n = len(self.parts)
        out += [*(self.output_slot() - ee), sum(p.state == "stored" for p in self.parts) / n]
        out.append(sum(map(self.delivered, self.parts)) / n)
        return np.array(out, dtype=np.float32)

    def _share(self, part: Part, ee: np.ndarray) -> float:
        finished = part.spec.name in self.finished
        if part.state == "placed":
            return 1.0 if self.delivered(part) else 0.0
        if part.state == "on_station":
            return FINISHED if finished else LOADED
        if part.state == "held" and finished:
            return DONE_HELD + DONE_CARRY * (1.0 - math.tanh(5.0 * np.linalg.norm(part.pos - self.output_slot())))
        if part.state == "held":
            free = self.free_machines() or self.machines
            d = min(np.linalg.norm(part.pos - self.drop_point(m)) for m in free)
            return RAW_HELD + RAW_CARRY * (1.0 - math.tanh(5.0 * d))
        if part.state == "loose":
            if finished and self.output.above(part.xyz):
                return RELEASED
            if not finished and any(m.holds(part.xyz) for m in self.machines):
                return LOADED
        return 0.0

    def next_pick(self) -> Part | None:
        """The part to pick next: a machined part on a fixture, else a blank while a machine is free."""
        done = next((m.part for m in self.machines if m.state in ("done", "blocked") and m.part is not None), None)
        if done is not None:
            return done
        return self.next_blank() if self.free_machines() else None

    def evaluate(self) -> dict[str, Any]:
        ee = np.array(self.robot.ee_xyz())
        progress = sum(self._share(p, ee) for p in self.parts)
        target = self.next_pick() if self.held() is None else None
        if target is not None:
            progress += APPROACH * (1.0 - math.tanh(5.0 * np.linalg.norm(target.pos - ee)))
        gained = 0.0 if self._progress is None else progress - self._progress
        self._progress = progress
        delivered = sum(map(self.delivered, self.parts))
        spoilt = any(
            p.state in ("lost", "missed") or (p.state == "placed" and not self.delivered(p)) for p in self.parts
        )
        success = delivered == len(self.parts)
        info: dict[str, Any] = {
            "parts_delivered": delivered,
            "parts_loaded": sum(p.state == "on_station" for p in self.parts),
            "progress": progress,
        }
        if success or spoilt:
            info["kpis"] = {**self.twin.kpis(), **self.kpis()}
        new, self._delivered = delivered - self._delivered, delivered
        return {"success": success, "done": success or spoilt, "gained": gained, "delivered_now": new, "info": info}

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["delivered_now"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])

    def kpis(self) -> dict[str, float]:
        """``parts_in_process_mean``: parts between their first pick and their delivery, averaged over time."""
        t_end = self.twin.sim_time
        start: dict[str, float] = {}
        busy = 0.0
        for e in self.twin.log.events:
            if e.kind == "picked" and e.part not in start:
                start[e.part] = e.t
            elif e.kind == "placed" and e.part in start:
                busy += e.t - start.pop(e.part)
        busy += sum(t_end - t for t in start.values())
        return {"parts_in_process_mean": busy / t_end if t_end > 0 else 0.0}


class MachineTendExpert:
    """A scripted tender: unload a finished part first, else load a blank into the fastest free
    machine, else wait above the machine that finishes next."""

    def __init__(self, env) -> None:
        self.task: MachineTend = env.unwrapped.task
        self.follow = WaypointFollower(self.task)

    def reset(self) -> None:
        self.follow.set([])

    def _pick(self, part: Part) -> list[Waypoint]:
        grasp = part.pos + np.array([0.0, 0.0, 0.005])
        above = np.array([*grasp[:2], self.task.safe_z])
        return [
            Waypoint(above, close=False, tol=0.015, detour=True),
            Waypoint(grasp, close=False, tol=0.006, speed=0.6),
            Waypoint(grasp, close=True, tol=0.02, dwell=5),
            Waypoint(above, close=True, tol=0.02, speed=0.7),
        ]

    def _place(self, point: np.ndarray) -> list[Waypoint]:
        above = np.array([*point[:2], self.task.safe_z])
        return [
            Waypoint(above, close=True, tol=0.01, speed=0.8, detour=True),
            Waypoint(point, close=True, tol=0.006, speed=0.5),
            Waypoint(point, close=False, tol=0.03, dwell=6),
            Waypoint(above, close=False, tol=0.03),
        ]

    def _plan(self) -> list[Waypoint]:
        task = self.task
        held = task.held()
        if held is not None:
            if held.spec.name in task.finished:
                return self._place(task.output_slot())
            free = sorted(task.free_machines(), key=lambda m: m.config.process_time[1])
            return self._place(task.drop_point(free[0])) if free else []
        target = task.next_pick()
        if target is not None:
            return self._pick(target)
        busy = [m for m in task.machines if m.state == "processing"]
        if busy:  # wait above the machine that finishes first
            m = min(busy, key=lambda m: m.cycle_end)
            return [Waypoint(np.array([*task.drop_point(m)[:2], task.safe_z]), close=False, tol=0.02, detour=True)]
        return []

    def __call__(self, obs: Any) -> np.ndarray:
        ee = planned_ee(self.task)
        for _ in range(2):
            action = self.follow(ee)
            if action is not None:
                return action
            self.follow.set(self._plan())
        return act_towards(ee, ee, close=self.task.held() is not None, max_step=self.task.max_step)
