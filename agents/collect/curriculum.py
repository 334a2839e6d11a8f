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

Unlike RFCL's one start per demonstration, the run has one start, a fraction of the way along
every demonstration, shared by all its envs (``SharedStart``: a few numbers in shared memory that
forked worker processes inherit, and that survive a worker's replacement). It moves back once
the last ``window`` episodes from it, on any env and demonstration, succeeded at ``threshold``.
Each success so counts towards every demonstration and every env, which matters where an episode
costs seconds of simulation and the envs are many. A share of episodes (``real_starts``), and
every episode once the start has reached the demonstrations' beginning and been mastered there,
begin from the task's real initial states on fresh seeds: what the agent is finally evaluated on.
"""

from __future__ import annotations

import multiprocessing as mp
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
    window: int = 8
    """Episodes from the current start over which its success rate is judged."""
    threshold: float = 0.75
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


def window_mastered(a, at: int, window: int, threshold: float, success: bool) -> bool:
    """Add an outcome to a rolling window kept in shared array ``a`` (``a[at]``: outcomes seen,
    the ``window`` outcomes after it); True, with the count restarted, once the window is full and
    its success rate reaches ``threshold``. The caller holds the array's lock."""
    n = int(a[at])
    a[at + 1 + n % window] = float(success)
    a[at] = n + 1
    if n + 1 < window or sum(a[at + 1 : at + 1 + window]) / window < threshold:
        return False
    a[at] = 0
    return True


class SharedStart:
    """Where episodes start, shared by every env of a run: the start's fraction of the way along
    the demonstrations, whether the curriculum is done, and the outcomes of the episodes from the
    current start (shared memory under a lock; worker processes forked after it inherit it)."""

    def __init__(self, settings: CurriculumSettings) -> None:
        self.settings = settings
        self._a = mp.RawArray("d", 3 + settings.window)  # fraction, done, outcomes seen, outcomes
        self._a[0] = max(0.0, 1.0 - settings.step_back)
        self._lock = mp.Lock()

    @property
    def fraction(self) -> float:
        return float(self._a[0])

    @property
    def done(self) -> bool:
        return self._a[1] > 0

    @property
    def progress(self) -> float:
        """How much of the demonstrations the start has walked back: 1 when done."""
        return 1.0 if self.done else 1.0 - self.fraction

    def record(self, fraction: float, success: bool) -> None:
        """The outcome of an episode that started at ``fraction`` (ignored if the start has moved)."""
        s, a = self.settings, self._a
        with self._lock:
            if a[1] > 0 or fraction != a[0] or not window_mastered(a, 2, s.window, s.threshold, success):
                return
            if a[0] <= 0.0:
                a[1] = 1.0
            else:
                a[0] = max(0.0, a[0] - s.step_back)


class ReverseCurriculum(gym.Wrapper):
    """Starts episodes from states along ``tracks`` (see the module docstring).

    Every step's ``info`` carries ``curriculum_start``: how far along its demonstration the
    episode began (0: a real initial state), and ``curriculum_progress``: how much of the
    demonstrations the run's start has walked back (1 once it is done).
    """

    def __init__(
        self,
        env: gym.Env,
        tracks: list[Track],
        settings: CurriculumSettings | None = None,
        shared: SharedStart | None = None,
    ) -> None:
        super().__init__(env)
        if not tracks:
            raise ValueError("a reverse curriculum needs at least one demonstration")
        self.tracks = tracks
        self.settings = settings or (shared.settings if shared is not None else CurriculumSettings())
        self.shared = shared or SharedStart(self.settings)
        self._rng = np.random.default_rng(0)
        self._from_demo = False
        self._fraction = 0.0
        self._start = 0.0
        self._steps = 0
        self._limit: int | None = None

    @property
    def fraction(self) -> float:
        """Where along the demonstrations episodes start now (0: their initial states)."""
        return self.shared.fraction

    @property
    def done(self) -> bool:
        """The start reached the demonstrations' beginning and was mastered there."""
        return self.shared.done

    @property
    def progress(self) -> float:
        return self.shared.progress

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
        self._fraction = self.shared.fraction
        start = t.start_at(self._fraction)
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
            self.shared.record(self._fraction, bool(info.get("is_success", False)))
        return obs, reward, terminated, truncated, self._info(info)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "curriculum_start": self._start, "curriculum_progress": self.progress}


def curriculum_wrappers(
    tracks: Sequence[Track], n_envs: int, settings: CurriculumSettings
) -> list[Callable[[gym.Env], gym.Env]]:
    """One wrapper per env of a vector env, all on every demonstration and one shared start.

    Call it before the worker processes start (they inherit the shared start by forking).
    """
    shared = SharedStart(settings)
    tracks = list(tracks)
    return [lambda env: ReverseCurriculum(env, tracks, settings, shared) for _ in range(n_envs)]
