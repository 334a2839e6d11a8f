"""Motion helpers the scripted experts share: tool-delta actions, a detour around the robot's
base, and a follower of pick-and-place waypoints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def planned_ee(task) -> np.ndarray:
    """Where the tool is headed once the actions still in flight take effect (a Smith predictor).

    Under control latency (``[randomization] latency``) the env holds back the last few actions;
    an expert that planned from where the tool is now would overshoot and oscillate. It knows
    what it sent, so it plans from where those actions will have taken the tool.
    """
    ee = np.array(task.robot.ee_xyz())
    for a in task.pending:
        ee += np.asarray(a[:3]) * task.max_step
    return ee


def act_towards(ee, target, close: bool, max_step: float, speed: float = 1.0) -> np.ndarray:
    """The action moving the tool from ``ee`` towards ``target`` (at most ``speed`` of a full step)."""
    delta = np.clip((np.asarray(target) - np.asarray(ee)) / max_step, -speed, speed)
    return np.append(delta, 1.0 if close else -1.0).astype(np.float32)


def via_around_base(ee, goal, base, clearance: float = 0.4, radius: float = 0.55) -> np.ndarray:
    """``goal``, or a waypoint around the robot's base when the straight path passes within
    ``clearance`` metres of the base's axis (the arm cannot fold through itself)."""
    ee, goal, base = np.asarray(ee, dtype=float), np.asarray(goal, dtype=float), np.asarray(base, dtype=float)[:2]
    a, b = ee[:2] - base, goal[:2] - base
    seg = b - a
    t = np.clip(-(a @ seg) / max(seg @ seg, 1e-9), 0.0, 1.0)
    if np.linalg.norm(a + t * seg) > clearance:
        return goal
    ang = np.arctan2(a[1], a[0]) + 0.5 * np.angle(np.exp(1j * (np.arctan2(b[1], b[0]) - np.arctan2(a[1], a[0]))))
    return np.array([*(base + radius * np.array([np.cos(ang), np.sin(ang)])), goal[2]])


@dataclass
class Waypoint:
    xyz: np.ndarray
    """Tool centre point target, world frame, metres."""
    close: bool
    """Tool command on the way there."""
    tol: float = 0.01
    """Metres from the target that count as reached."""
    dwell: int = 0
    """Control steps to stay once reached (for the tool to close or open)."""
    speed: float = 1.0
    """Fraction of a full step the tool may move per control step."""
    detour: bool = False
    """Go around the robot's base when the straight path passes too close to it."""


class WaypointFollower:
    """Drives the tool through a list of waypoints; gives up on one that takes too long."""

    def __init__(self, task, timeout: int = 80) -> None:
        self.task, self.timeout = task, timeout
        self.points: list[Waypoint] = []
        self._steps = self._dwelt = 0

    def set(self, points: list[Waypoint]) -> None:
        self.points, self._steps, self._dwelt = list(points), 0, 0

    @property
    def done(self) -> bool:
        return not self.points

    def __call__(self, ee: np.ndarray) -> np.ndarray | None:
        """The next action, or None once the plan is done (or a waypoint timed out: plan again)."""
        while self.points:
            wp = self.points[0]
            self._steps += 1
            reached = np.linalg.norm(ee - wp.xyz) < wp.tol
            if reached and self._dwelt >= wp.dwell:
                self.points.pop(0)
                self._steps = self._dwelt = 0
                continue
            if self._steps > self.timeout + wp.dwell:
                self.points.clear()
                return None
            if reached:
                self._dwelt += 1
            goal = via_around_base(ee, wp.xyz, self.task.robot.base_position) if wp.detour else wp.xyz
            return act_towards(ee, goal, wp.close, self.task.max_step, wp.speed)
        return None
