"""MachineTend: load raw parts from an input tray into machines and unload the finished parts."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs.core import Feature, Task, near, near_features, tool_features, tool_state
from envs.motion import (
    act_towards,
    gripped,
    let_go,
    pick_action,
    place_action,
    planned_ee,
    planned_tool,
    tool_busy,
    via_around_base,
)
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

    **Difficulty knob** (env kwarg): ``blanks``, the blanks in the input tray at reset (1 to its
    slots; all of them by default).

    Observations (``state``, 18 + 8 per machine numbers): tool position (3) and velocity (3),
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
    knob_names = ("blanks",)
    curriculum_stages = ({"blanks": 1}, {"blanks": 2})
    """One blank (``MachineTendSkill-v1``'s setting), two blanks; then the task as made."""
    shares: ClassVar[dict[str, float]] = {
        "approach": APPROACH,
        "raw_held": RAW_HELD,
        "raw_carry": RAW_CARRY,
        "loaded": LOADED,
        "finished": FINISHED,
        "done_held": DONE_HELD,
        "done_carry": DONE_CARRY,
        "released": RELEASED,
    }
    """Each stage's share of a part's progress (a delivered part is 1; see the reward table)."""

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

    @classmethod
    def adapt_layout(cls, layout, blanks: int | None = None, **unknown: Any):
        """The layout with the number of blanks in the (first) input tray set."""
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no setting {', '.join(map(repr, unknown))} (its settings: {', '.join(cls.knob_names)})"
            )
        if blanks is None:
            return layout
        k, tray = next(((k, t) for k, t in enumerate(layout.trays) if t.fill), (None, None))
        if tray is None:
            raise ValueError(f"{cls.__name__}'s blanks knob needs a layout with a filled input tray")
        slots = tray.grid[0] * tray.grid[1]
        if isinstance(blanks, bool) or not isinstance(blanks, int | np.integer) or not 1 <= blanks <= slots:
            raise ValueError(f"{cls.__name__}: blanks must be a whole number from 1 to {slots}, got {blanks!r}")
        trays = list(layout.trays)
        trays[k] = tray.model_copy(update={"count": int(blanks)})
        return layout.model_copy(update={"trays": trays})

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
        """The blank that has waited longest in the input tray (first come, first served when a
        line refills the tray; at reset they all arrive at once and go in the tray's order)."""
        return min((p for p in self.parts if p.state == "stored"), key=lambda p: p.arrival_time, default=None)

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
            return self.shares["finished"] if finished else self.shares["loaded"]
        if part.state == "held" and finished:
            w = self.shares
            return w["done_held"] + w["done_carry"] * (
                1.0 - math.tanh(5.0 * np.linalg.norm(part.pos - self.output_slot()))
            )
        if part.state == "held":
            free = self.free_machines() or self.machines
            d = min(np.linalg.norm(part.pos - self.drop_point(m)) for m in free)
            return self.shares["raw_held"] + self.shares["raw_carry"] * (1.0 - math.tanh(5.0 * d))
        if part.state == "loose":
            if finished and self.output.above(part.xyz):
                return self.shares["released"]
            if not finished and any(m.holds(part.xyz) for m in self.machines):
                return self.shares["loaded"]
        return 0.0

    takes_back_on_failure: ClassVar[bool] = False
    """Whether a failure that ends the episode takes back the progress of unfinished work."""

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
            progress += self.shares["approach"] * (1.0 - math.tanh(5.0 * np.linalg.norm(target.pos - ee)))
        gained = 0.0 if self._progress is None else progress - self._progress
        self._progress = progress
        delivered = sum(map(self.delivered, self.parts))
        spoilt = any(
            p.state in ("lost", "missed") or (p.state == "placed" and not self.delivered(p)) for p in self.parts
        )
        success = delivered == len(self.parts)
        if spoilt and not success and self.takes_back_on_failure:
            gained -= progress - delivered  # a lost part ends the episode: its unfinished work is worth nothing
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


class MachineTendV1(MachineTend):
    """MachineTend, version 1: the tool's state in the observation, rewards that teach, time to
    finish at a student's pace.

    **Task description, randomizations and success conditions:** as ``MachineTend-v0``, with a
    90 s time limit (the expert needs about 40 s; ``-v0``'s 60 s left a slightly slower copy of
    it no time to finish).

    **Observation** (``state``, 49 numbers on the bundled cell): ``-v0``'s (tool position and
    velocity, finger opening, held part present and finished, next blank relative to the tool
    and present, per machine its drop point relative to the tool, state one-hot and cycle time
    left / 10 s, the output slot relative to the tool, blanks left and parts delivered as
    shares), then the tool's state: told to close (0/1), seconds since switched (capped at 1),
    gripping a part (0/1), then the last centimetres magnified: tanh(offset / 2 cm) per axis from
    the tool to the next blank, to each machine's part (its drop point when empty) and to the
    output slot (``envs.core.near``). Every number's name, unit and range:
    ``observation_features()``.

    **Dense reward:** each step earns the change in progress (the sum over parts of each one's
    stage), with these stages:

    ===========================  ====================================================
    stage                        a part's progress
    ===========================  ====================================================
    approach (nothing held)      0.02 * (1 - tanh(5 * tool distance)) for the next pick
    raw part held                0.05 + 0.05 * (1 - tanh(5 * distance to a free fixture))
    on a fixture                 0.15
    machined                     0.25
    machined part held           0.3 + 0.1 * (1 - tanh(5 * distance to the output slot))
    released over the output     0.5
    delivered                    1: the largest step of a part (+0.5)
    lost (ends the episode)      every part's unfinished progress taken back
    time limit                   every part's unfinished progress taken back
    ===========================  ====================================================

    Waiting out a cycle neither pays nor costs. **Sparse reward:** +1 per part delivered.
    """

    shares: ClassVar[dict[str, float]] = {
        "approach": 0.02,
        "raw_held": 0.05,
        "raw_carry": 0.05,
        "loaded": 0.15,
        "finished": 0.25,
        "done_held": 0.3,
        "done_carry": 0.1,
        "released": 0.5,
    }
    settles_at_time_limit = True
    takes_back_on_failure = True

    def observe(self) -> np.ndarray:
        ee = np.array(self.robot.ee_xyz())
        blank = self.next_blank()
        fine = near(blank.pos - ee) if blank is not None else [0.0, 0.0, 0.0]
        for m in self.machines:  # the part in the fixture where there is one, else the drop point
            fine += near((m.part.pos if m.part is not None else self.drop_point(m)) - ee)
        fine += near(self.output_slot() - ee)
        tail = np.asarray([*tool_state(self.robot), *fine], dtype=np.float32)
        return np.concatenate([super().observe(), tail])

    def observation_features(self) -> list[Feature]:
        pos, vel = (-10.0, 10.0), (-5.0, 5.0)
        out: list[Feature] = [(f"tool_{a}", "m", *pos) for a in "xyz"]
        out += [(f"tool_v{a}", "m/s", *vel) for a in "xyz"]
        out += [("finger_opening", "m", 0.0, 0.1), ("holding", "0/1", 0.0, 1.0), ("holding_finished", "0/1", 0.0, 1.0)]
        out += [(f"blank_minus_tool_{a}", "m", *pos) for a in "xyz"] + [("blank_present", "0/1", 0.0, 1.0)]
        for k in range(len(self.machines)):
            out += [(f"machine{k}_drop_minus_tool_{a}", "m", *pos) for a in "xyz"]
            out += [(f"machine{k}_{s}", "0/1", 0.0, 1.0) for s in _STATES]
            out += [(f"machine{k}_cycle_left", "s / 10", 0.0, 1.0)]
        out += [(f"output_slot_minus_tool_{a}", "m", *pos) for a in "xyz"]
        out += [("blanks_left", "share", 0.0, 1.0), ("delivered", "share", 0.0, 1.0)]
        out += tool_features() + near_features("blank")
        for k in range(len(self.machines)):
            out += near_features(f"machine{k}_part_or_drop")
        return out + near_features("output_slot")

    def unsettled(self) -> float:
        if self.reward_type != "dense" or self._progress is None:
            return 0.0
        return max(0.0, self._progress - sum(map(self.delivered, self.parts)))


class MachineTendExpert:
    """A scripted tender: unload a finished part first, else load a blank into the fastest free
    machine, else wait above the machine that finishes next. It keeps no state between calls
    (see ``envs.motion``'s stateless pick and place)."""

    def __init__(self, env) -> None:
        self.task: MachineTend = env.unwrapped.task

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state between calls."""

    def __call__(self, obs: Any) -> np.ndarray:
        task = self.task
        ee = planned_ee(task)
        grip = next((p for p in task.parts if gripped(task, p)), None)
        if grip is not None:
            if grip.state != "held":  # still on its tray or fixture: finish the pick (settle, lift)
                return pick_action(task, grip, grip.pos + np.array([0.0, 0.0, 0.005]), task.safe_z)
            if grip.spec.name in task.finished:
                return place_action(task, grip, task.output_slot(), task.safe_z)
            free = sorted(task.free_machines(), key=lambda m: m.config.process_time[1])
            # A broken-down machine's empty fixture takes the blank too: it starts when the machine
            # is back, and the arm is free meanwhile to unload the other.
            free = free or [m for m in task.machines if m.state == "down" and m.part is None]
            if free:
                return place_action(task, grip, task.drop_point(free[0]), task.safe_z)
            return act_towards(ee, ee, True, task.max_step)  # nowhere to put it yet: hold on
        target = task.next_pick()
        if target is not None:
            return pick_action(task, target, target.pos + np.array([0.0, 0.0, 0.005]), task.safe_z)
        if planned_tool(task):
            return let_go(task)
        busy = tool_busy(task)
        if busy is not None:
            return busy
        running = [m for m in task.machines if m.state == "processing"]
        if running:  # wait above the machine that finishes first
            m = min(running, key=lambda m: m.cycle_end)
            wait = np.array([*task.drop_point(m)[:2], task.safe_z])
            if ee[2] < task.safe_z - 0.03 and np.hypot(*(ee - wait)[:2]) > 0.03:
                wait = np.array([ee[0], ee[1], task.safe_z])  # straight up first
            return act_towards(ee, via_around_base(ee, wait, task.robot.base_position), False, task.max_step)
        return act_towards(ee, ee, False, task.max_step)
