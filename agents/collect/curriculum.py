"""A reverse curriculum over expert demonstrations (RFCL's, arXiv 2405.03379).

Episodes start part-way along a recorded demonstration, close to its end, where a few steps
finish the task; as the agent succeeds from a start, that demonstration's start moves back,
until it is the demonstration's own initial state. The agent so meets the task's last stage
first and every earlier one with a working continuation already learned.

A start state is reached the way the demonstration reached it: the env is reset on the
demonstration's seed and its executed actions are replayed (the envs are deterministic under
``reset(seed)``, which the tests check), so a start costs simulation time but needs no saved
state and nothing beyond the demos file. The replay happens inside ``reset``: the learner sees
the episode from its start state only.

Each env keeps its own curriculum over its own demonstrations (demonstration ``i`` goes to env
``i % n_envs``), so the curriculum needs no state shared between worker processes. Unlike
RFCL's one start per demonstration, an env moves all of its demonstrations back together: its
start is a fraction of the way along each, and moves back once the last ``window`` episodes from
it (on any of its demonstrations) succeeded at ``threshold``. Each success so counts towards
every demonstration, which matters where an episode costs seconds of simulation. A share of
episodes (``real_starts``), and every episode once the env's start has reached the
demonstrations' beginning and been mastered there, begin from the task's real initial states on
fresh seeds: what the agent is finally evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class Track:
    """One demonstration: its seed and the actions it executed."""

    seed: int
    actions: np.ndarray

    @property
    def length(self) -> int:
        return len(self.actions)

    def start_at(self, fraction: float) -> int:
        """The step a start ``fraction`` of the way along this demonstration falls on."""
        return min(self.length - 1, round(fraction * self.length))


@dataclass
class CurriculumSettings:
    step_back: float = 0.1
    """How far the start moves back once mastered, as a fraction of the demonstrations."""
    window: int = 3
    """Episodes from the current start over which its success rate is judged."""
    threshold: float = 0.9
    """Success rate over ``window`` episodes at which a start is mastered."""
    real_starts: float = 0.2
    """Fraction of episodes that begin from a real initial state while the curriculum runs."""
    horizon_ratio: float = 3.0
    """A curriculum episode is truncated after this many times the steps the demonstration took
    from its start to its end (at least ``min_horizon``); the env's own time limit also holds."""
    min_horizon: int = 50


def tracks_from_demos(tensors: dict[str, Any], success_only: bool = True) -> list[Track]:
    """The demonstrations of a demos file (``agents.collect.demos.load``), as curriculum tracks."""
    episode = np.asarray(tensors["episode"])
    seeds = np.asarray(tensors["episode_seed"])
    taken = np.asarray(tensors["taken"], dtype=np.float32)
    ok = np.asarray(tensors["episode_success"]).astype(bool)
    tracks = []
    for e, seed in enumerate(seeds):
        if success_only and not ok[e]:
            continue
        rows = np.flatnonzero(episode == e)
        if len(rows):
            tracks.append(Track(int(seed), taken[rows]))
    return tracks


def assign(tracks: Sequence[Track], n_envs: int) -> list[list[Track]]:
    """Each env's demonstrations: ``i % n_envs``; with more envs than demonstrations they repeat."""
    if not tracks:
        return [[] for _ in range(n_envs)]
    per_env: list[list[Track]] = [[] for _ in range(n_envs)]
    for i in range(max(len(tracks), n_envs)):
        per_env[i % n_envs].append(tracks[i % len(tracks)])
    return per_env


class ReverseCurriculum(gym.Wrapper):
    """Starts episodes from states along ``tracks`` (see the module docstring).

    Every step's ``info`` carries ``curriculum_start``: how far along its demonstration the
    episode began (0: a real initial state), and ``curriculum_progress``: how much of the
    demonstrations this env's start has walked back (1 once it is done).
    """

    def __init__(self, env: gym.Env, tracks: list[Track], settings: CurriculumSettings | None = None) -> None:
        super().__init__(env)
        self.tracks = tracks
        self.settings = settings or CurriculumSettings()
        self.fraction = max(0.0, 1.0 - self.settings.step_back)
        """Where along the demonstrations episodes start now (0: their initial states)."""
        self.done = not tracks
        """The start reached the demonstrations' beginning and was mastered there."""
        self.outcomes: list[bool] = []
        self._rng = np.random.default_rng(0)
        self._from_demo = False
        self._start = 0.0
        self._steps = 0
        self._limit: int | None = None

    # -- the curriculum --------------------------------------------------------------------

    @property
    def progress(self) -> float:
        """How much of the demonstrations the start has walked back: 1 when done."""
        return 1.0 if self.done else 1.0 - self.fraction

    def _record(self, success: bool) -> None:
        s = self.settings
        self.outcomes.append(success)
        if len(self.outcomes) < s.window:
            return
        if np.mean(self.outcomes[-s.window :]) >= s.threshold:
            if self.fraction <= 0.0:
                self.done = True
            else:
                self.fraction = max(0.0, self.fraction - s.step_back)
            self.outcomes.clear()

    # -- gym.Wrapper ----------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([seed, 2405])
        self._steps = 0
        if self.done or self._rng.random() < self.settings.real_starts:
            self._from_demo, self._start, self._limit = False, 0.0, None
            obs, info = self.env.reset(seed=int(self._rng.integers(2**31)), options=options)
            return obs, self._info(info)
        t = self.tracks[int(self._rng.integers(len(self.tracks)))]
        start = t.start_at(self.fraction)
        obs, info = self.env.reset(seed=t.seed, options=options)
        for k in range(start):
            obs, _, term, trunc, info = self.env.step(t.actions[k])
            if term or trunc:  # cannot happen on a faithful replay
                raise RuntimeError(
                    f"replaying the demonstration on seed {t.seed} ended its episode at step {k + 1} of "
                    f"{t.length}: the env is not deterministic under reset(seed) with these kwargs"
                )
        self._from_demo, self._start = True, start / t.length
        s = self.settings
        self._limit = max(s.min_horizon, round(s.horizon_ratio * (t.length - start)))
        return obs, self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self._limit is not None and self._steps >= self._limit:
            truncated = True
        if (terminated or truncated) and self._from_demo:
            self._record(bool(info.get("is_success", False)))
        return obs, reward, terminated, truncated, self._info(info)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "curriculum_start": self._start, "curriculum_progress": self.progress}


def curriculum_wrappers(
    tracks: Sequence[Track], n_envs: int, settings: CurriculumSettings
) -> list[Callable[[gym.Env], gym.Env]]:
    """One wrapper per env of a vector env, each with its share of the demonstrations."""
    shares = assign(tracks, n_envs)

    def wrap(share: list[Track]) -> Callable[[gym.Env], gym.Env]:
        return lambda env: ReverseCurriculum(env, share, settings)

    return [wrap(share) for share in shares]
