"""A helper for the task tests: run a task's scripted expert through one episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import envs


def expert_steps(env: gym.Env, env_id: str, seed: int) -> list[tuple[float, dict[str, Any]]]:
    """One episode of ``env_id``'s expert on ``env`` from ``reset(seed)``: (reward, info) per step."""
    obs, _ = env.reset(seed=seed)
    expert = envs.make_expert(env_id, env)
    expert.reset()
    steps = []
    while True:
        obs, r, term, trunc, info = env.step(expert(obs))
        steps.append((r, info))
        if term or trunc:
            return steps
