"""ConveyorPick: pick parts off a moving belt into a bin before they reach its end."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.core import Task
from twin.parts import TERMINAL, Part

PLACE_REWARD = 5.0
MISS_PENALTY = 2.0
_NO_PART = (0.0,) * 11  # the target-part block of the observation when no part is in play


class ConveyorPick(Task):
    """Pick every arriving part off the conveyor and place it in the bin.

    **Task description:** parts (cubes and cylinders) arrive one by one on a moving belt. The
    Panda must grasp each (parallel-jaw friction grasp, or suction in a suction layout), lift it
    off the belt and release it inside the bin before it reaches the beam-break at the belt's
    end. Actions: tool-position delta (3-D, up to 3 cm per 50 ms step) and a tool command
    (> 0 closes the gripper / switches suction on).

    **Randomizations:** the feeder's seeded part stream: arrival times, part types, position
    across the belt and yaw of each part.

    **Success conditions:** every part of the episode is placed in the bin. The episode
    terminates when every part is placed, missed (reached the end) or lost (dropped outside
    the bin); a 32 s time limit truncates it.

    Observations (``state``, 23 numbers): tool position (3) and velocity (3), finger opening
    (1); for the target part (the held part, else the one furthest down the belt): position (3),
    position relative to the tool (3), velocity (3), present (1), held (1); bin centre relative
    to the tool (3); seconds to the next arrival (1, capped at 10); fraction of the episode's
    parts still to come or in play (1). Dense reward: shaping towards the part, then towards
    the bin, +5 per placement, -2 per miss or drop. Sparse: +1 per placement.
    ``info`` carries ``is_success``, ``parts_placed``, ``parts_arrived`` every step and
    ``kpis`` (see ``twin.events.compute_kpis``) when the last part is done.
    """

    layout = "default"
    obs_modes = ("state", "rgb")
    workspace = ((-0.7, -0.7, 0.755), (0.75, 0.3, 1.25))

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        if not twin.conveyors or not twin.bins or not twin.layout.feeders:
            raise ValueError("ConveyorPick needs a layout with a conveyor, a feeder and a bin")
        self.bin = twin.bins[0]
        self.conveyor = next(iter(twin.conveyors.values()))
        self.drop_point = self.bin.center + np.array([0.0, 0.0, self.bin.height + 0.1])
        self._seen = 0
        self._scan_cache: tuple | None = None
        self._drop_list = self.drop_point.tolist()

    def reset(self, rng: np.random.Generator) -> None:
        self._seen = 0
        self._scan_cache = None

    def _scan(self) -> tuple[Part | None, float, int, int, int, int, bool]:
        """One pass over the parts per step: target part, seconds to the next arrival, and counts.

        Returns (target, to_next, total, left, placed, arrived, done), cached until the next step.
        """
        steps = self.twin.world.steps
        if self._scan_cache is not None and self._scan_cache[0] == steps:
            return self._scan_cache[1]
        t = self.twin.sim_time
        dx, dy = self.conveyor.dir_xy
        held = best = None
        best_along = -math.inf
        to_next, total, left, placed, arrived, done = 10.0, 0, 0, 0, 0, True
        for p in self.twin.parts:
            state = p.state
            if state == "parked":
                continue
            total += 1
            if state == "queued":
                to_next = min(to_next, p.arrival_time - t)
                left += 1
                done = False
                continue
            arrived += 1
            if state == "placed":
                placed += 1
            if state in TERMINAL:
                continue
            left += 1  # in play: on the belt, held or loose
            done = False
            if state == "held" and held is None:
                held = p
            x, y, _ = p.xyz
            if x * dx + y * dy > best_along:
                best, best_along = p, x * dx + y * dy
        result = (held or best, to_next, total, left, placed, arrived, done)
        self._scan_cache = (steps, result)
        return result

    def target_part(self) -> Part | None:
        """The held part, else the in-play part furthest down the belt."""
        return self._scan()[0]

    def observe(self) -> np.ndarray:
        robot = self.robot
        ex, ey, ez = robot.ee_xyz()
        part, to_next, total, left, _, _, _ = self._scan()
        if part is None:
            part_obs = _NO_PART
        else:
            px, py, pz = part.xyz
            held = 1.0 if part.state == "held" else 0.0
            part_obs = (px, py, pz, px - ex, py - ey, pz - ez, *part.vel_xyz, 1.0, held)
        dx, dy, dz = self._drop_list
        return np.array(
            (
                ex,
                ey,
                ez,
                *robot.ee_vel_xyz(),
                robot.finger_width(),
                *part_obs,
                dx - ex,
                dy - ey,
                dz - ez,
                to_next,
                left / max(total, 1),
            ),
            dtype=np.float32,
        )

    def evaluate(self) -> dict[str, Any]:
        events = self.twin.log.events
        placed_now = bad_now = 0
        if len(events) > self._seen:
            for e in events[self._seen :]:
                placed_now += e.kind == "placed"
                bad_now += e.kind in ("missed", "dropped")
            self._seen = len(events)
        part, _, n_total, _, n_placed, n_arrived, done = self._scan()
        if part is None:
            shaping = 0.0
        elif part.state == "held":
            shaping = 0.5 - math.dist(part.xyz, self._drop_list)
        else:
            shaping = -math.dist(part.xyz, self.robot.ee_xyz())
        info: dict[str, Any] = {"parts_placed": n_placed, "parts_arrived": n_arrived}
        if done:
            info["kpis"] = self.twin.kpis()
        return {
            "success": done and n_placed == n_total,
            "done": done,
            "placed_now": placed_now,
            "bad_now": bad_now,
            "shaping": shaping,
            "info": info,
        }

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["placed_now"])
        return 0.1 * ev["shaping"] + PLACE_REWARD * ev["placed_now"] - MISS_PENALTY * ev["bad_now"]

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


class ConveyorPickExpert:
    """A scripted picker: intercept the part on the belt, grasp, lift, carry to the bin, release."""

    HOVER = 0.07  # metres above the part before descending
    LIFT_Z = 0.93
    RELEASE_Z = 0.84

    def __init__(self, env) -> None:
        self.task: ConveyorPick = env.unwrapped.task
        self.reset()

    def reset(self) -> None:
        self.phase, self.timer, self.part, self.grasp_y = "wait", 0, None, 0.0

    def _act(self, ee: np.ndarray, target: np.ndarray, close: bool, speed: float = 1.0) -> np.ndarray:
        delta = np.clip((target - ee) / self.task.max_step, -speed, speed)
        return np.append(delta, 1.0 if close else -1.0).astype(np.float32)

    def _via(self, ee: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``goal``, or a waypoint around the robot's base if the straight path passes too close to it."""
        base = self.task.robot.base_position[:2]
        a, b = ee[:2] - base, goal[:2] - base
        seg = b - a
        t = np.clip(-(a @ seg) / max(seg @ seg, 1e-9), 0.0, 1.0)
        if np.linalg.norm(a + t * seg) > 0.4:
            return goal
        ang = np.arctan2(a[1], a[0]) + 0.5 * np.angle(np.exp(1j * (np.arctan2(b[1], b[0]) - np.arctan2(a[1], a[0]))))
        return np.array([*(base + 0.55 * np.array([np.cos(ang), np.sin(ang)])), goal[2]])

    def __call__(self, obs: Any) -> np.ndarray:
        task = self.task
        ee, _ = task.robot.ee_state()
        part = task.target_part()
        if self.phase in ("approach", "descend", "grasp", "lift") and (part is None or part is not self.part):
            self.phase = "wait"  # the part we were after is gone (missed, or fell)
        if self.phase == "wait":
            # only parts riding the belt: a part just released is still in play until it settles
            # in the bin, and chasing it there would drive the fingers into the cell
            reachable = (
                part is not None and part.state == "on_conveyor" and float(part.pos @ task.conveyor.direction) > -0.5
            )
            if not reachable:
                waiting = task.conveyor.center + np.array([-0.25, 0.0, 0.0])
                waiting[2] = self.LIFT_Z
                return self._act(ee, waiting, close=False)
            self.phase, self.part = "approach", part
        above_bin = np.array([*task.drop_point[:2], self.LIFT_Z])
        if self.phase == "carry":
            if np.linalg.norm((ee - above_bin)[:2]) < 0.02:
                self.phase = "lower"
            return self._act(ee, self._via(ee, above_bin), close=True, speed=0.7)
        if self.phase == "lower":
            low = np.array([*task.drop_point[:2], self.RELEASE_Z])
            if ee[2] < self.RELEASE_Z + 0.01:
                self.phase, self.timer = "release", 0
            return self._act(ee, low, close=True, speed=0.7)
        if self.phase == "release":
            self.timer += 1
            if self.timer > 6:
                self.phase = "wait"
            return self._act(ee, ee, close=False)
        # lead the moving part by the controller's lag of about two control steps; grip a little
        # above the centre so the fingertips stay clear of the belt
        grasp = part.pos + part.vel * 2 * task.twin.control_dt + np.array([0.0, 0.0, 0.006])
        if self.phase == "approach":
            hover = grasp + np.array([0.0, 0.0, self.HOVER])
            if np.linalg.norm((ee - hover)[:2]) < 0.01 and abs(ee[2] - hover[2]) < 0.03:
                self.phase, self.grasp_y = "descend", grasp[1]
            return self._act(ee, hover, close=False)
        grasp[1] = self.grasp_y  # fingers close across the belt: do not chase the part sideways
        if self.phase == "descend":
            if np.linalg.norm(ee - grasp) < 0.008:
                self.phase, self.timer = "grasp", 0
            return self._act(ee, grasp, close=False)
        if self.phase == "grasp":
            self.timer += 1
            if self.timer > 4:
                self.phase = "lift"
            return self._act(ee, grasp, close=True)
        # lift straight up
        if part.state != "held" and ee[2] > part.pos[2] + 0.05:
            self.phase = "wait"  # slipped out: try again
            return self._act(ee, ee, close=False)
        if ee[2] > self.LIFT_Z - 0.03:
            self.phase = "carry"
        return self._act(ee, np.array([ee[0], ee[1], self.LIFT_Z]), close=True)
