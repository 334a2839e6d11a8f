"""Degenerate policies: the ways a learner can settle for less than the task, for checking that a
task's reward teaches (the expert's return must beat each of them) and for the baselines.

* ``do_nothing``: stand still (the tool open, the AGV stopped, the wafer robot's axes still).
* ``hover``: go to the first target and stay there (over the first part, before the pickup's
  dock, under the first wafer) without ever taking it.
* ``grasp_and_hold``: do what the expert does until the first part (tote, wafer) is in hand, then
  hold it still for the rest of the episode.
* ``crash``: drive into the cell at full speed (the tool down into the belt, table or block; the
  AGV straight ahead; the paddle into the cassette at the wrong height).

Each is ``DEGENERATE[name](env_id, env)``, a callable ``obs -> action`` that reads the twin's
state as the experts do (and like them remembers nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import envs
from envs.motion import act_towards, planned_ee


def _kind(env) -> str:
    task = env.unwrapped.task
    return task.drives if task.drives != "arm" else "arm"


def do_nothing(env_id: str, env) -> Callable[[Any], np.ndarray]:
    shape = env.action_space.shape

    def act(obs) -> np.ndarray:
        a = np.zeros(shape, dtype=np.float32)
        if _kind(env) == "arm" and shape[0] == 4:
            a[3] = -1.0  # the tool open
        if _kind(env) == "wafer_robot":
            a[3] = -1.0  # the vacuum off
        return a

    return act


def _first_target(env) -> np.ndarray | None:
    """Where the first target is now: a part, the peg, a blank, the pickup, the first wafer."""
    task = env.unwrapped.task
    if hasattr(task, "target_part"):
        part = task.target_part()
        return None if part is None else np.asarray(part.pos)
    if hasattr(task, "peg"):
        return np.asarray(task.peg.pos)
    if hasattr(task, "next_pick"):
        part = task.next_pick()
        return None if part is None else np.asarray(part.pos)
    return None


def hover(env_id: str, env) -> Callable[[Any], np.ndarray]:
    expert = envs.make_expert(env_id, env)
    kind = _kind(env)

    def act(obs) -> np.ndarray:
        task = env.unwrapped.task
        if kind == "arm":
            ee, target = planned_ee(task), _first_target(env)
            goal = ee if target is None else target + np.array([0.0, 0.0, 0.1])
            a = act_towards(ee, goal, False, task.max_step)
            return a if env.action_space.shape[0] == 4 else a[:3]
        if kind == "agv":  # the expert's way to the pickup, stopping 1.5 m short of its dock
            x, y, _ = task.agv.pose
            dock = task.fleet.docks[task.pickup]
            if np.hypot(x - dock[0], y - dock[1]) < 1.5 or task.carrying() is not None:
                return np.zeros(2, dtype=np.float32)
            return expert(obs)
        # the wafer robot: the expert's way in under the first wafer, never lifting it
        a = np.asarray(expert(obs), dtype=np.float32)
        if a[3] > 0:  # the expert would switch the vacuum on to lift it: stay put instead
            return np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32)
        return a

    return act


def grasp_and_hold(env_id: str, env) -> Callable[[Any], np.ndarray]:
    expert = envs.make_expert(env_id, env)
    kind = _kind(env)

    def act(obs) -> np.ndarray:
        task = env.unwrapped.task
        if kind == "arm":
            parts = [p for p in task.twin.parts if p.state == "held"]
            if parts:  # the first part in hand, lifted: hold it there
                ee = planned_ee(task)
                a = act_towards(ee, ee, True, task.max_step)
                return a if env.action_space.shape[0] == 4 else a[:3]
            return expert(obs)
        if kind == "agv":
            if task.carrying() is not None and task.carrying().state == "on_agv":
                return np.zeros(2, dtype=np.float32)
            return expert(obs)
        w = task.current()
        if w is not None and w.held:
            return np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)  # still, the vacuum holding it
        return np.asarray(expert(obs), dtype=np.float32)

    return act


def crash(env_id: str, env) -> Callable[[Any], np.ndarray]:
    kind = _kind(env)

    def act(obs) -> np.ndarray:
        task = env.unwrapped.task
        if kind == "arm":
            target = _first_target(env)
            ee = planned_ee(task)
            goal = np.array([ee[0], ee[1], 0.0]) if target is None else np.array([*target[:2], 0.0])
            a = act_towards(ee, goal, True, task.max_step)  # down through the part into what it stands on
            return a if env.action_space.shape[0] == 4 else a[:3]
        if kind == "agv":
            return np.array([1.0, 0.0], dtype=np.float32)
        # the paddle turned to the first wafer, at its height (not under it), then straight in
        w = task.current()
        if w is None or w.place is None:
            return np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32)
        h = task.handler
        st = task.fab.by_name[w.place[0]]
        rx, ry = h.config.position
        th = float(np.arctan2(st.xy[1] - ry, st.xy[0] - rx))
        q = h.q_target
        err_th = float(np.arctan2(np.sin(th - q[0]), np.cos(th - q[0])))
        err_z = st.heights[w.place[1]] + 0.0004 - q[2]
        rates = [float(np.clip(err_th * 10, -1, 1)), 0.0, float(np.clip(err_z * 50, -1, 1))]
        if abs(err_th) < 0.01 and abs(err_z) < 0.001:
            rates[1] = 1.0
        return np.array([*task.encode([r * m for r, m in zip(rates, h.spec.max_rates, strict=True)]), -1.0], np.float32)

    return act


DEGENERATE: dict[str, Callable[[str, Any], Callable[[Any], np.ndarray]]] = {
    "do_nothing": do_nothing,
    "hover": hover,
    "grasp_and_hold": grasp_and_hold,
    "crash": crash,
}


def episode_return(env_id: str, make_policy, seed: int, **env_kwargs: Any) -> tuple[float, bool]:
    """The dense return and success of one episode of ``make_policy(env_id, env)``."""
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    try:
        obs, _ = env.reset(seed=seed)
        policy = make_policy(env_id, env)
        total, info = 0.0, {}
        while True:
            obs, r, term, trunc, info = env.step(policy(obs))
            total += r
            if term or trunc:
                return total, bool(info.get("is_success"))
    finally:
        env.close()
