"""Vector envs for training and evaluation: CPU worker processes sharing observation memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers this package's env ids in worker processes too)


def env_factory(
    env_id: str, env_kwargs: dict[str, Any] | None = None, wrapper: Callable[[gym.Env], gym.Env] | None = None
) -> Callable[[], gym.Env]:
    kwargs = dict(env_kwargs or {})

    def make() -> gym.Env:
        env = gym.make(env_id, **kwargs)
        return wrapper(env) if wrapper is not None else env

    return make


def make_vec_env(
    env_id: str,
    n_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    autoreset: str = "same_step",
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
) -> gym.vector.VectorEnv:
    """``n_envs`` copies of ``env_id``: in this process for one, else in worker processes.

    Workers are forked before the learner touches CUDA and exchange observations through shared
    memory. ``autoreset="same_step"`` resets a finished sub-env within the step that ended it and
    puts its last observation in ``info["final_obs"]`` (what learners need to bootstrap on
    truncation); ``"disabled"`` leaves resets to the caller (evaluation on fixed seeds).
    ``wrapper`` wraps each env inside its worker.
    """
    mode = {"same_step": gym.vector.AutoresetMode.SAME_STEP, "disabled": gym.vector.AutoresetMode.DISABLED}[autoreset]
    fns = [env_factory(env_id, env_kwargs, wrapper) for _ in range(n_envs)]
    if n_envs == 1:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.AsyncVectorEnv(fns, shared_memory=True, context="fork", autoreset_mode=mode)


class SeedQueue:
    """Runs one episode per fixed seed on a vector env whose autoreset is disabled.

    Each sub-env starts on the next seed as soon as its episode ends, so which seed gives which
    episode does not depend on the number of envs. ``current[i]`` is sub-env i's seed.
    """

    def __init__(self, vec: gym.vector.VectorEnv, seeds: list[int]) -> None:
        self.vec, self.seeds = vec, list(seeds)
        n = vec.num_envs
        self.current: list[int] = self.seeds[:n]
        self._next = n
        self.active = np.ones(n, dtype=bool)

    def reset(self) -> tuple[Any, dict[str, Any]]:
        return self.vec.reset(seed=self.current)

    def advance(self, done: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """Give each sub-env that finished (``done``, read its ``current`` seed first) the next seed.

        Sub-envs with no seed left go inactive; they are reset unseeded only to stay valid.
        """
        for i in np.flatnonzero(done):
            if self._next < len(self.seeds):
                self.current[i] = self.seeds[self._next]
                self._next += 1
            else:
                self.active[i] = False
        seeds = [self.current[i] if done[i] and self.active[i] else None for i in range(self.vec.num_envs)]
        return self.vec.reset(seed=seeds, options={"reset_mask": done})
