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


class FarLineEnv(gym.Env):
    """A point on a line that earns 1 (and ends the episode) only on reaching x >= 3 within 30
    steps of at most 0.25: random actions never get there, an expert pushing right always does."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-0.5, 0.5)), 0
        return self._obs(), {"is_success": False}

    def _obs(self):
        return np.array([self.x, self.t / 30], dtype=np.float32)

    def step(self, action):
        self.x += 0.25 * float(np.clip(action[0], -1, 1))
        self.t += 1
        done = self.x >= 3.0
        return self._obs(), float(done), done, self.t >= 30 and not done, {"is_success": done}


def write_demos(path, env_id: str, expert, episodes: int, noise: float = 0.3, seed: int = 0) -> None:
    """A demos file (``twin demos``'s format) of ``expert`` (obs -> action) on any env."""
    import json

    import torch
    from safetensors.torch import save_file

    from agents.collect.demos import FORMAT
    from agents.common.spaces import describe

    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    rows, ep_ids, seeds, rets, wins = [], [], [], [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        ret = 0.0
        while True:
            label = np.asarray(expert(obs), np.float32)
            taken = np.clip(label + rng.normal(0, noise, label.shape), -1, 1).astype(np.float32)
            nxt, r, term, trunc, info = env.step(taken)
            rows.append((obs, label, taken, r, nxt, term))
            ep_ids.append(k)
            ret += r
            obs = nxt
            if term or trunc:
                break
        seeds.append(seed + k)
        rets.append(ret)
        wins.append(bool(info.get("is_success")))
    o, a, t, r, n, d = (np.stack(c) for c in zip(*rows, strict=True))
    space = env.action_space
    meta = {
        "format": FORMAT,
        "env_id": env_id,
        "env_kwargs": "{}",
        "obs_space": json.dumps(describe(env.observation_space)),
        "action_space": json.dumps({**describe(space), "low": space.low.tolist(), "high": space.high.tolist()}),
        "episodes": str(episodes),
        "noise": str(noise),
        "expert_success_rate": str(float(np.mean(wins))),
    }
    f32 = lambda x: torch.from_numpy(np.asarray(x, np.float32))  # noqa: E731
    tensors = {
        "obs": f32(o),
        "actions": f32(a),
        "taken": f32(t),
        "rewards": f32(r),
        "next_obs": f32(n),
        "terminated": torch.from_numpy(d.astype(np.uint8)),
        "episode": torch.tensor(ep_ids, dtype=torch.int64),
        "episode_seed": torch.tensor(seeds, dtype=torch.int64),
        "episode_return": f32(rets),
        "episode_success": torch.tensor(wins, dtype=torch.uint8),
    }
    save_file(tensors, str(path), metadata=meta)
    env.close()


def register() -> None:
    for env_id, cls in (
        ("ToyFarLine-v0", FarLineEnv),
        ("ToyPoint-v0", PointEnv),
        ("ToyPointGoal-v0", PointGoalEnv),
        ("ToyImage-v0", ImageEnv),
        ("ToyFaulty-v0", FaultyEnv),
        ("ToyThreads-v0", ThreadsEnv),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=cls)
