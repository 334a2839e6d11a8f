"""A curriculum over a task's difficulty knobs: easy settings first, the real task last.

A task lists its easier settings in ``Task.curriculum_stages`` (env kwargs such as ConveyorPick's
``parts`` and ``belt_speed``), easiest first. Training starts every env on the first stage and
moves all of them on once the last ``window`` episodes at the current stage (on any env)
succeeded at ``threshold``; after the last listed stage come the run's own env kwargs, the task
it is evaluated on, where it stays. The stage is shared by the run's envs through a few numbers
in shared memory that forked worker processes inherit (``SharedStage``), as the reverse
curriculum's start is.

Knobs shape the twin when it is built (how many parts the feeder makes, the belt's speed), so an
env moving to a new stage is made again with the stage's kwargs at its next reset; a stage's
observation and action spaces must equal the task's.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from agents.collect.curriculum import window_mastered


@dataclass
class DifficultySettings:
    window: int = 16
    """Episodes at the current stage over which its success rate is judged."""
    threshold: float = 0.5
    """Success rate over ``window`` episodes at which the run moves to the next stage."""


class SharedStage:
    """The run's stage (0 .. ``stages``; ``stages``: the real task) and the outcomes of the episodes
    at it, in shared memory under a lock (worker processes forked after it inherit it)."""

    def __init__(self, stages: int, settings: DifficultySettings) -> None:
        self.stages, self.settings = stages, settings
        self._a = mp.RawArray("d", 2 + settings.window)  # stage, outcomes seen, outcomes
        self._lock = mp.Lock()

    @property
    def stage(self) -> int:
        return int(self._a[0])

    @property
    def progress(self) -> float:
        """The share of the eased stages passed: 1 at the real task."""
        return self.stage / self.stages if self.stages else 1.0

    def record(self, stage: int, success: bool) -> None:
        """The outcome of an episode played at ``stage`` (ignored if the run has moved on)."""
        s, a = self.settings, self._a
        with self._lock:
            if stage != int(a[0]) or stage >= self.stages:
                return
            if window_mastered(a, 1, s.window, s.threshold, success):
                a[0] = stage + 1


class DifficultyCurriculum(gym.Wrapper):
    """Plays the env at the run's shared stage: made by ``make(**kwargs)`` with ``stages[k]`` over
    ``env_kwargs`` while ``k < len(stages)``, then ``env_kwargs`` alone, the env handed in (see the
    module docstring).

    Every step's ``info`` carries ``difficulty_stage`` (the stage of its episode) and
    ``difficulty_stages`` (how many eased stages come before the real task).
    """

    def __init__(
        self,
        env: gym.Env,
        make: Callable[..., gym.Env],
        env_kwargs: dict[str, Any],
        stages: Sequence[dict[str, Any]],
        shared: SharedStage,
    ) -> None:
        super().__init__(env)
        self.env_kwargs, self.stages = dict(env_kwargs), [dict(s) for s in stages]
        self.shared, self._make = shared, make
        self._built = len(self.stages)  # the env handed in is the real task
        self._stage = self._built

    def kwargs_for(self, stage: int) -> dict[str, Any]:
        return {**self.env_kwargs, **self.stages[stage]} if stage < len(self.stages) else dict(self.env_kwargs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        stage = self.shared.stage
        if stage != self._built:
            env = self._make(**self.kwargs_for(stage))
            if env.observation_space != self.observation_space or env.action_space != self.action_space:
                env.close()
                name = self.spec.id if self.spec else "the env"
                raise ValueError(
                    f"{name}: difficulty stage {stage} ({self.stages[stage]}) changes the observation or action "
                    "space; a curriculum stage may change the task's difficulty only"
                )
            self.env.close()
            self.env, self._built = env, stage
        self._stage = stage
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self.shared.record(self._stage, bool(info.get("is_success", False)))
        return obs, reward, terminated, truncated, self._info(info)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "difficulty_stage": self._stage, "difficulty_stages": len(self.stages)}


def difficulty_wrappers(
    env_id: str,
    env_kwargs: dict[str, Any],
    stages: Sequence[dict[str, Any]],
    n_envs: int,
    settings: DifficultySettings,
) -> list[Callable[[gym.Env], gym.Env]]:
    """One wrapper per env of a vector env, all on one shared stage.

    Call it before the worker processes start (they inherit the shared stage by forking).
    """
    import envs

    spec = gym.spec(envs.check_env_id(env_id).rpartition(":")[2])
    shared = SharedStage(len(stages), settings)
    make = functools.partial(gym.make, spec)
    return [lambda env: DifficultyCurriculum(env, make, env_kwargs, stages, shared) for _ in range(n_envs)]
