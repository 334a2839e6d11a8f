"""Vector envs for training and evaluation: CPU worker processes sharing observation memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

import envs  # noqa: F401  (registers this package's env ids in worker processes too)


def env_factory(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Callable[[], gym.Env]:
    kwargs = dict(env_kwargs or {})

    def make() -> gym.Env:
        return gym.make(env_id, **kwargs)

    return make


def make_vec_env(
    env_id: str,
    n_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    autoreset: str = "same_step",
) -> gym.vector.VectorEnv:
    """``n_envs`` copies of ``env_id``: in this process for one, else in worker processes.

    Workers are forked before the learner touches CUDA and exchange observations through shared
    memory. ``autoreset="same_step"`` resets a finished sub-env within the step that ended it and
    puts its last observation in ``info["final_obs"]`` (what learners need to bootstrap on
    truncation); ``"disabled"`` leaves resets to the caller (evaluation on fixed seeds).
    """
    mode = {"same_step": gym.vector.AutoresetMode.SAME_STEP, "disabled": gym.vector.AutoresetMode.DISABLED}[autoreset]
    fns = [env_factory(env_id, env_kwargs) for _ in range(n_envs)]
    if n_envs == 1:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.AsyncVectorEnv(fns, shared_memory=True, context="fork", autoreset_mode=mode)
