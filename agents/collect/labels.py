"""The scripted expert's label for every observation, computed inside the env's own process.

DAgger asks the expert what it would do in each state the student reaches. The experts are
functions of the twin's state (they remember nothing), so the expert runs beside the twin in the
env worker and its answer travels back with the observation in ``info["expert_action"]``: no
twin state crosses a process boundary.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import envs


class ExpertLabels(gym.Wrapper):
    """Adds ``info["expert_action"]`` (env units) for the observation that ``reset`` and ``step``
    return; a step that ends the episode gets none (its observation is never acted on)."""

    def __init__(self, env: gym.Env, env_id: str) -> None:
        super().__init__(env)
        self.expert = envs.make_student_expert(env_id, env)

    def _label(self, obs: Any) -> np.ndarray:
        return np.asarray(self.expert(obs), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "expert_action": self._label(obs)}

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        if not (term or trunc):
            info = {**info, "expert_action": self._label(obs)}
        return obs, r, term, trunc, info
