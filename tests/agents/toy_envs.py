"""Small Gymnasium envs defined here, so the agents are tested on envs that are not this package's."""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointEnv(gym.Env):
    """A point on a line; actions move it (bounds [-2, 2]); reward -|x|; 30 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-3, 3)), 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x, self.t / 30], dtype=np.float32)

    def step(self, action):
        self.x = float(np.clip(self.x + 0.25 * float(np.clip(action[0], -2, 2)), -5, 5))
        self.t += 1
        return self._obs(), -abs(self.x), False, self.t >= 30, {"is_success": abs(self.x) < 0.2}


class PointGoalEnv(gym.Env):
    """A point in the plane driven to a goal; goal-dict observations; sparse reward; 20 steps."""

    def __init__(self) -> None:
        box = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos, self.goal, self.t = np.zeros(2), np.zeros(2), 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {"is_success": False}

    def _obs(self):
        p, g = self.pos.astype(np.float32), self.goal.astype(np.float32)
        return {"observation": p.copy(), "achieved_goal": p.copy(), "desired_goal": g}

    def compute_reward(self, achieved, desired, info):
        return -(np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1) > 0.15).astype(np.float32)

    def step(self, action):
        self.pos = np.clip(self.pos + 0.2 * np.clip(action, -1, 1), -1.5, 1.5)
        self.t += 1
        r = float(self.compute_reward(self.pos, self.goal, {}))
        return self._obs(), r, False, self.t >= 20, {"is_success": r == 0.0}


class FaultyEnv(PointEnv):
    """A PointEnv that misbehaves on purpose, once per flag file (deleted when it fires).

    ``kill_flag``: SIGKILL its own process (a segfault or the OOM killer, as the learner sees it);
    ``hang_flag``: stop answering; ``raise_flag``: raise in ``step``.
    """

    def __init__(self, kill_flag: str = "", hang_flag: str = "", raise_flag: str = "", after: int = 3) -> None:
        super().__init__()
        self.flags, self.after = (kill_flag, hang_flag, raise_flag), after

    def step(self, action):
        out = super().step(action)
        if self.t >= self.after:
            kill, hang, fail = (_claim(f) for f in self.flags)
            if kill:
                os.kill(os.getpid(), signal.SIGKILL)
            if hang:
                time.sleep(3600)
            if fail:
                raise RuntimeError("the env broke on purpose")
        return out


def _claim(flag: str) -> bool:
    """Remove the flag file; True for the one process that removed it."""
    if not flag:
        return False
    try:
        os.unlink(flag)
    except FileNotFoundError:
        return False
    return True


class ThreadsEnv(PointEnv):
    """Reports the thread pools of the process it runs in (``info["threads"]``: the largest)."""

    def step(self, action):
        from threadpoolctl import threadpool_info

        obs, r, term, trunc, info = super().step(action)
        pools = [p["num_threads"] for p in threadpool_info()]
        try:
            import torch

            pools.append(torch.get_num_threads())
        except ImportError:
            pass
        return obs, r, term, trunc, {**info, "threads": max(pools, default=1), "pid": os.getpid()}


class ImageEnv(PointEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)


def register() -> None:
    for env_id, cls in (
        ("ToyPoint-v0", PointEnv),
        ("ToyPointGoal-v0", PointGoalEnv),
        ("ToyImage-v0", ImageEnv),
        ("ToyFaulty-v0", FaultyEnv),
        ("ToyThreads-v0", ThreadsEnv),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=cls)
