"""Motion helpers the scripted experts share: tool-delta actions, a detour around the robot's
base, and stateless pick and place."""

from __future__ import annotations

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


def planned_tool(task) -> bool:
    """Whether the tool will be closed (suction on) once the actions still in flight take effect:
    under control latency the last command sent decides, not the tool's state now."""
    if task.pending:
        return float(task.pending[-1][3]) > 0
    return bool(task.robot.tool_active)


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


def route_length(start, goal, base, clearance: float = 0.4, radius: float = 0.55) -> float:
    """Metres from ``start`` to ``goal`` along the route the arm can take: straight, or by way of
    ``via_around_base``'s waypoint when the straight path passes too close to the base's axis."""
    start, goal = np.asarray(start, dtype=float), np.asarray(goal, dtype=float)
    via = via_around_base(start, goal, base, clearance, radius)
    if via is goal:
        return float(np.linalg.norm(goal - start))
    return float(np.linalg.norm(via - start) + np.linalg.norm(goal - via))


# -- stateless pick and place -----------------------------------------------------------------
#
# The experts below remember nothing between calls: each works out from the twin's state where a
# pick or a place stands (what the tool grips, whether it is told to close, how long since it was
# switched, where the tool is against its target, with hysteresis bands on those distances), so
# an expert can be asked at any state, as DAgger asks it of the states a learner visits.

SETTLE = 0.25
"""Seconds the fingers close on a part before it is lifted (the grip builds up)."""
OPENING = 0.3
"""Seconds the fingers take to open clear of a part they held."""
OPENED = 0.035
"""Metres between the fingers that count as open (fully open: 0.08)."""


def tool_busy(task) -> np.ndarray | None:
    """Hold still while the tool is still opening (its fingers round a part just let go); None
    otherwise. A suction cup lets go at once."""
    robot = task.robot
    if not robot.tool.joints or planned_tool(task):
        return None
    if robot.finger_width() < OPENED or robot.tool_switched_s < OPENING:
        ee = planned_ee(task)
        return act_towards(ee, ee, False, task.max_step)
    return None


def gripped(task, part) -> bool:
    """Whether the tool grips ``part`` and is (still) told to close on it."""
    return part is not None and task.robot.gripping == part.id and planned_tool(task)


def settling(task, part) -> bool:
    """Whether the fingers have only just closed on ``part`` (not yet lifted): wait for the grip."""
    robot = task.robot
    return bool(robot.tool.joints) and part.state != "held" and robot.tool_switched_s < SETTLE


def pick_action(
    task, part, grasp: np.ndarray, safe_z: float, *, tol: float = 0.006, speed: float = 0.6, lift: float | None = None
) -> np.ndarray:
    """The action that picks ``part`` up at ``grasp`` (tool centre point), from wherever the tool
    is: up clear of the cell, over the part at ``safe_z``, down, close, wait for the grip, and
    lift to ``lift`` (``safe_z`` if None). Going down and closing keep to bands: the tool goes
    down once within 1.5 cm of over the part and carries on while within 2.5 cm."""
    ee = planned_ee(task)
    max_step = task.max_step
    lift = safe_z if lift is None else lift
    if gripped(task, part):
        if settling(task, part):
            return act_towards(ee, ee, True, max_step)
        return act_towards(ee, np.array([ee[0], ee[1], lift]), True, max_step, 0.7)
    if planned_tool(task):  # closing, or closed on nothing
        if np.linalg.norm(ee - grasp) < 0.02 and (not task.robot.tool.joints or task.robot.finger_width() > 0.004):
            return act_towards(ee, grasp, True, max_step)
        return act_towards(ee, ee, False, max_step)  # missed: let go, then try again
    busy = tool_busy(task)
    if busy is not None:
        return busy
    if np.linalg.norm(ee - grasp) < tol:
        return act_towards(ee, grasp, True, max_step)
    xy = float(np.hypot(ee[0] - grasp[0], ee[1] - grasp[1]))
    if xy < 0.015 or (xy < 0.025 and ee[2] < safe_z - 0.02):
        return act_towards(ee, grasp, False, max_step, speed)
    if ee[2] < safe_z - 0.03 and xy > 0.03:  # low beside something: straight up first
        return act_towards(ee, np.array([ee[0], ee[1], safe_z]), False, max_step)
    above = np.array([grasp[0], grasp[1], safe_z])
    return act_towards(ee, via_around_base(ee, above, task.robot.base_position), False, max_step)


def place_action(task, part, point: np.ndarray, safe_z: float, *, tol: float = 0.006) -> np.ndarray:
    """The action that sets the gripped ``part`` down with the tool at ``point``: up to ``safe_z``,
    over the point, down slowly, open. The tool goes down once within 1 cm of over the point and
    carries on while within 3 cm."""
    ee = planned_ee(task)
    max_step = task.max_step
    point = np.array(point, dtype=float)
    xy = float(np.hypot(ee[0] - point[0], ee[1] - point[1]))
    if xy < 0.01 or (xy < 0.03 and ee[2] < safe_z - 0.02):
        if np.linalg.norm(ee - point) < tol:
            return act_towards(ee, ee, False, max_step)
        return act_towards(ee, point, True, max_step, 0.5)
    if ee[2] < safe_z - 0.03 and xy > 0.05:
        return act_towards(ee, np.array([ee[0], ee[1], safe_z]), True, max_step, 0.7)
    above = np.array([point[0], point[1], safe_z])
    return act_towards(ee, via_around_base(ee, above, task.robot.base_position), True, max_step, 0.8)


def let_go(task) -> np.ndarray:
    """Open the tool where it is (closed on nothing, or on a part it should not hold)."""
    ee = planned_ee(task)
    return act_towards(ee, ee, False, task.max_step)
