"""Vector envs for training, evaluation and demos: pools of CPU worker processes (or Ray actors)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # registers this package's env ids
from agents.collect.pool import EnvPool, InlinePool
from agents.collect.processes import ProcessPool


def env_factory(
    env_id: str, env_kwargs: dict[str, Any] | None = None, wrapper: Callable[[gym.Env], gym.Env] | None = None
) -> Callable[[], gym.Env]:
    """A callable that makes one env; it carries the env's registration, so workers need none."""
    kwargs = dict(env_kwargs or {})
    spec = gym.spec(envs.check_env_id(env_id).rpartition(":")[2])  # module:EnvId imports the module

    def make() -> gym.Env:
        env = gym.make(spec, **kwargs)
        return wrapper(env) if wrapper is not None else env

    return make


def make_vec_env(
    env_id: str,
    n_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    autoreset: str = "same_step",
    wrapper: Callable[[gym.Env], gym.Env] | Sequence[Callable[[gym.Env], gym.Env]] | None = None,
    workers: int | None = None,
    backend: str = "local",
    double_buffer: bool = True,
    notify: Callable[[str], None] | None = None,
    seed: int | None = None,
    pin: bool = True,
) -> EnvPool:
    """``n_envs`` copies of ``env_id`` in a pool of workers, each owning several envs.

    Args:
        autoreset: ``"same_step"`` resets a finished env within the step that ended it and puts
            its last observation in ``final_obs`` (what learners need to bootstrap on
            truncation); ``"disabled"`` leaves resets to the caller (evaluation on fixed seeds).
        wrapper: Wraps each env inside its worker; a sequence gives each env its own.
        workers: Worker processes (Ray actors with ``backend="ray"``); None: one per core, at
            most one per env; 0: every env in this process.
        backend: ``"local"`` (worker processes) or ``"ray"`` (Ray actors, on the cluster at
            ``RAY_ADDRESS`` or a local one bound to 127.0.0.1).
        double_buffer: Split each worker's envs into two halves it steps alternately, so it
            steps one while the learner acts on the other.
        notify: Gets a line of text when a worker dies and is replaced (default: stderr).
        seed: Seeds the fresh envs of replaced workers.
        pin: Bind each local worker process to a core (see ``ProcessPool``).
    """
    if wrapper is None or callable(wrapper):
        wrappers = [wrapper] * n_envs
    else:
        wrappers = list(wrapper)
        if len(wrappers) != n_envs:
            raise ValueError(f"{len(wrappers)} wrappers for {n_envs} envs")
    fns = [env_factory(env_id, env_kwargs, w) for w in wrappers]
    common = {"autoreset": autoreset, "notify": notify, "seed": seed}
    if backend == "ray":
        from agents.collect.ray_pool import RayPool

        return RayPool(fns, workers=workers, double_buffer=double_buffer, **common)
    if backend != "local":
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if workers == 0:
        return InlinePool(fns, **common)
    return ProcessPool(fns, workers=workers, double_buffer=double_buffer, pin=pin, **common)


class SeedQueue:
    """Runs one episode per fixed seed on a vector env whose autoreset is disabled.

    Each sub-env starts on the next seed as soon as its episode ends, so which seed gives which
    episode does not depend on the number of envs. ``current[i]`` is sub-env i's seed. An
    episode lost with a worker that died is run again on the same seed (``retries`` times).
    """

    def __init__(self, vec: gym.vector.VectorEnv, seeds: list[int], retries: int = 2) -> None:
        self.vec, self.seeds = vec, list(seeds)
        n = vec.num_envs
        self.current: list[int] = self.seeds[:n]
        self._next = n
        self.active = np.zeros(n, dtype=bool)
        self.active[: len(self.current)] = True
        self.current += [self.seeds[-1]] * (n - len(self.current))  # extra envs run a seed only to stay valid
        self.retries = retries
        self._tries: dict[int, int] = {}

    def reset(self) -> tuple[Any, dict[str, Any]]:
        return self.vec.reset(seed=self.current)

    def advance(self, done: np.ndarray, dropped: np.ndarray | None = None) -> tuple[Any, dict[str, Any]]:
        """Give each sub-env that finished (``done``, read its ``current`` seed first) the next seed.

        Sub-envs in ``dropped`` (their worker died) run their seed again. Sub-envs with no seed
        left go inactive; they are reset unseeded only to stay valid.
        """
        for i in np.flatnonzero(done):
            if dropped is not None and dropped[i] and self.active[i]:
                seed = self.current[i]
                self._tries[seed] = self._tries.get(seed, 0) + 1
                if self._tries[seed] > self.retries:
                    raise RuntimeError(f"the episode on seed {seed} was lost {self._tries[seed]} times (worker died)")
                continue
            if self._next < len(self.seeds):
                self.current[i] = self.seeds[self._next]
                self._next += 1
            else:
                self.active[i] = False
        seeds = [self.current[i] if done[i] and self.active[i] else None for i in range(self.vec.num_envs)]
        return self.vec.reset(seed=seeds, options={"reset_mask": np.asarray(done, dtype=bool)})
