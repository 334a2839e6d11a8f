"""`twin smoke`: every env, every observation mode, a few seeded steps, headless."""

from __future__ import annotations

import numpy as np

import envs


def smoke_one(env_id: str, obs_mode: str, steps: int = 10, seed: int = 0) -> None:
    """Make, reset, step and render one env; raises on any failure."""
    env = envs.make(env_id, obs_mode=obs_mode, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        if not env.observation_space.contains(obs):
            raise AssertionError(f"reset observation is outside the observation space ({obs_mode})")
        env.action_space.seed(seed)
        for _ in range(steps):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            if not env.observation_space.contains(obs):
                raise AssertionError(f"step observation is outside the observation space ({obs_mode})")
            if not np.isfinite(r) or "is_success" not in info:
                raise AssertionError("reward is not finite or info lacks is_success")
            if term or trunc:
                env.reset()
        frame = env.render()
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
            raise AssertionError("render() did not return an RGB frame")
    finally:
        env.close()


def cases() -> list[tuple[str, str]]:
    return [(env_id, mode) for env_id in envs.ENV_IDS for mode in envs.TASKS[env_id].obs_modes]
