"""FactoryReach: bring the tool to a point above the work table."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.core import Task
from envs.motion import planned_ee

SUCCESS_DISTANCE = 0.03  # metres


class Reach(Task):
    """Move the tool centre point to a target above the work table.

    **Task description:** a Panda stands beside a work table. A target point (a green marker)
    is drawn above the table; the robot must bring its tool centre point within 3 cm of it.
    Actions are tool-position deltas (3-D, up to 3 cm per 50 ms control step).

    **Randomizations:** the target is uniform in a 0.4 x 0.6 x 0.3 m box above the table.

    **Success conditions:** the tool centre point is within 3 cm of the target. The episode
    terminates on success.

    Observations (``state``): tool position (3), tool velocity (3), target (3), target - tool (3).
    ``goal`` mode: observation = tool position and velocity, achieved_goal = tool position,
    desired_goal = target. Dense reward: -distance; sparse: -1 until within 3 cm, then 0.
    """

    layout = "workbench"
    obs_modes = ("state", "goal", "rgb")
    uses_tool = False
    workspace = ((0.2, -0.45, 0.76), (0.9, 0.45, 1.35))
    target_low = np.array([0.35, -0.3, 0.8])
    target_high = np.array([0.75, 0.3, 1.1])

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        w = twin.world
        vis = w.p.createVisualShape(w.p.GEOM_SPHERE, radius=SUCCESS_DISTANCE / 1.5, rgbaColor=[0.1, 0.9, 0.2, 0.6])
        marker = w.p.createMultiBody(0, -1, vis, [0, 0, -1])
        w._register("reach-target", marker)
        self.marker = marker
        self.target = np.zeros(3)

    def reach_region(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.target_low.tolist()), tuple(self.target_high.tolist())

    def reset(self, rng: np.random.Generator) -> None:
        self.target = rng.uniform(self.target_low, self.target_high)
        self.twin.world.p.resetBasePositionAndOrientation(self.marker, self.target.tolist(), [0, 0, 0, 1])

    def observe(self) -> np.ndarray:
        ee, vel = self.robot.ee_state()
        return np.concatenate([ee, vel, self.target, self.target - ee])

    def achieved_goal(self) -> np.ndarray:
        return self.robot.ee_state()[0]

    def desired_goal(self) -> np.ndarray:
        return self.target.copy()

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1)
        if self.reward_type == "sparse":
            return -(d > SUCCESS_DISTANCE).astype(np.float32)
        return (-d).astype(np.float32)

    def goal_reward_spec(self) -> dict[str, Any]:
        return {"type": "goal_distance", "threshold": SUCCESS_DISTANCE, "reward_type": self.reward_type}

    def evaluate(self) -> dict[str, Any]:
        ee, _ = self.robot.ee_state()
        d = float(np.linalg.norm(ee - self.target))
        return {"success": d < SUCCESS_DISTANCE, "distance": d, "info": {"distance": d}}

    def reward(self, ev: dict[str, Any]) -> float:
        d = ev["distance"]
        return -float(d > SUCCESS_DISTANCE) if self.reward_type == "sparse" else -d


class ReachExpert:
    """Heads straight for the target at full speed, slowing in the last few centimetres."""

    def __init__(self, env) -> None:
        self.task: Reach = env.unwrapped.task

    def reset(self) -> None:
        pass

    def __call__(self, obs: Any) -> np.ndarray:
        ee = planned_ee(self.task)
        delta = (self.task.target - ee) / self.task.max_step
        return np.clip(delta, -1.0, 1.0).astype(np.float32)
