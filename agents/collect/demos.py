"""Expert demonstrations: recording with the scripted experts and the on-disk format.

A demos file is one safetensors file (no pickle) holding

* ``obs`` float32 ``[N, D]``: observations flattened with ``gymnasium.spaces.flatten``;
* ``actions`` float32 ``[N, A]``: the expert's action for each observation, in env units;
* ``episode`` int64 ``[N]``: the episode each step belongs to (0 .. E-1);
* ``episode_seed`` int64 ``[E]``, ``episode_return`` float32 ``[E]``, ``episode_success`` uint8 ``[E]``;
* the transitions as executed, for reinforcement learning from demonstrations: ``taken``
  float32 ``[N, A]`` (the action the env executed: the expert's plus the noise), ``rewards``
  float32 ``[N]``, ``next_obs`` float32 ``[N, D]`` (the final observation where an episode
  ended) and ``terminated`` uint8 ``[N]``;

and string metadata: ``format`` (``factory-twin-demos/1``), ``env_id``, ``env_kwargs``,
``obs_space`` and ``action_space`` (JSON), ``episodes``, ``noise`` and ``expert_success_rate``.

With ``noise > 0`` the env executes the expert's action plus Gaussian noise while the file
records the expert's clean action, so the demonstrations also cover how to recover from small
deviations (the DART scheme), which makes cloned policies less brittle.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import envs
from agents.collect.vec import SeedQueue, make_vec_env
from agents.common.spaces import describe, flatten_batch

FORMAT = "factory-twin-demos/1"
TRANSITIONS = ("taken", "rewards", "next_obs", "terminated")
"""The tensors RL from demonstrations needs (files recorded before they existed lack them)."""


class DemosError(ValueError):
    """A demos file that is missing, corrupt or of another format."""


class ExpertDriven(gym.Wrapper):
    """Runs the env's scripted expert inside the env's own process.

    ``step`` ignores the action it is given: it executes the expert's action (plus noise) and
    returns the expert's clean action for the new observation in ``info["expert_action"]``.
    """

    def __init__(self, env: gym.Env, env_id: str, noise: float = 0.0) -> None:
        super().__init__(env)
        self.expert = envs.make_expert(env_id, env)
        self.noise = noise
        self._next: np.ndarray | None = None
        self._rng = np.random.default_rng(0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._rng = np.random.default_rng(None if seed is None else [seed, 7])
        self.expert.reset()
        self._next = np.asarray(self.expert(obs), dtype=np.float32)
        return obs, {**info, "expert_action": self._next}

    def step(self, action):
        a = self._next
        if self.noise > 0:
            space = self.action_space
            a = np.clip(a + self._rng.normal(0.0, self.noise, a.shape), space.low, space.high).astype(np.float32)
        obs, r, term, trunc, info = self.env.step(a)
        self._next = np.asarray(self.expert(obs), dtype=np.float32)
        return obs, r, term, trunc, {**info, "expert_action": self._next, "taken_action": np.asarray(a, np.float32)}


def record(
    env_id: str,
    episodes: int,
    out: str | Path,
    seed: int = 0,
    n_envs: int = 1,
    noise: float = 0.0,
    env_kwargs: dict[str, Any] | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record ``episodes`` expert episodes on seeds ``seed, seed+1, ...`` into ``out`` (atomically)."""
    envs.check_env_id(env_id)
    if not envs.is_factory_env(env_id):
        raise envs.NoExpertError(f"{env_id} has no scripted expert to record demonstrations from")
    env_kwargs = dict(env_kwargs or {})

    n_envs = max(1, min(n_envs, episodes))
    vec = make_vec_env(
        env_id, n_envs, env_kwargs, autoreset="disabled", wrapper=lambda e: ExpertDriven(e, env_id, noise)
    )
    space = vec.single_observation_space
    try:
        queue = SeedQueue(vec, [seed + k for k in range(episodes)])
        obs, info = queue.reset()
        labels = np.asarray(info["expert_action"], dtype=np.float32)
        steps: list[list[tuple]] = [[] for _ in range(n_envs)]
        ret = np.zeros(n_envs)
        finished: list[dict[str, Any]] = []
        while queue.active.any():
            flat = flatten_batch(space, obs)
            obs, r, term, trunc, info = vec.step(labels)
            nxt = flatten_batch(space, obs)  # autoreset is off: the final observation where one ended
            taken = np.asarray(info["taken_action"], dtype=np.float32)
            for i in np.flatnonzero(queue.active):
                steps[i].append((flat[i], labels[i], taken[i], r[i], nxt[i], term[i]))
            ret += r
            labels = np.asarray(info["expert_action"], dtype=np.float32)
            done = (term | trunc) & queue.active
            if not done.any():
                continue
            for i in np.flatnonzero(done):
                ep = {
                    "seed": queue.current[i],
                    "return": float(ret[i]),
                    "success": bool(info["is_success"][i]) if "is_success" in info else False,
                    "steps": steps[i],
                }
                finished.append(ep)
                if on_episode:
                    on_episode(ep)
                steps[i], ret[i] = [], 0.0
            obs, info = queue.advance(done)
            fresh = np.asarray(info["expert_action"], dtype=np.float32)
            labels = np.where(done[:, None], fresh, labels)
        act_space = vec.single_action_space
    finally:
        vec.close()
    finished.sort(key=lambda e: e["seed"])
    rows = [s for ep in finished for s in ep["steps"]]
    obs_arr, act_arr, taken_arr, rew_arr, next_arr, term_arr = (np.stack(col) for col in zip(*rows, strict=True))
    episode = np.concatenate([np.full(len(ep["steps"]), k, dtype=np.int64) for k, ep in enumerate(finished)])
    success_rate = float(np.mean([ep["success"] for ep in finished]))
    features = observation_features(env_id, env_kwargs)
    meta = {
        "format": FORMAT,
        "env_id": env_id,
        "env_kwargs": json.dumps(env_kwargs),
        "obs_space": json.dumps(describe(space)),
        "action_space": json.dumps(
            {**describe(act_space), "low": act_space.low.tolist(), "high": act_space.high.tolist()}
        ),
        "episodes": str(len(finished)),
        "noise": str(noise),
        "expert_success_rate": str(success_rate),
    }
    if features is not None:
        meta["obs_features"] = json.dumps(features)
    tensors = {
        "obs": torch.from_numpy(obs_arr.astype(np.float32)),
        "actions": torch.from_numpy(act_arr.astype(np.float32)),
        "taken": torch.from_numpy(taken_arr.astype(np.float32)),
        "rewards": torch.from_numpy(rew_arr.astype(np.float32)),
        "next_obs": torch.from_numpy(next_arr.astype(np.float32)),
        "terminated": torch.from_numpy(term_arr.astype(np.uint8)),
        "episode": torch.from_numpy(episode),
        "episode_seed": torch.tensor([ep["seed"] for ep in finished], dtype=torch.int64),
        "episode_return": torch.tensor([ep["return"] for ep in finished], dtype=torch.float32),
        "episode_success": torch.tensor([ep["success"] for ep in finished], dtype=torch.uint8),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"episodes": len(finished), "steps": len(obs_arr), "expert_success_rate": success_rate, "out": str(out)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def observation_features(env_id: str, env_kwargs: dict[str, Any] | None = None) -> list[str] | None:
    """The names of an env's state-observation numbers, in order, where its task declares them."""
    if not envs.is_factory_env(env_id):
        return None
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        feats = env.unwrapped.state_features
        return None if feats is None else [f[0] for f in feats]
    finally:
        env.close()


def check_demos(meta: dict, path: str, env_id: str, obs_space, act_space, env_kwargs=None) -> None:
    """The demos must come from the env being trained on, with the same spaces and the same
    observation layout (the same numbers in the same order, where the task names them)."""
    if meta["env_id"] != env_id:
        raise DemosError(f"{path}: recorded on {meta['env_id']!r}, training is on {env_id!r}")
    recorded = meta.get("obs_features")
    if recorded is not None:
        now = observation_features(env_id, env_kwargs)
        if now is not None and now != recorded:
            k, a, b = first_difference(recorded, now)
            raise DemosError(
                f"{path}: recorded with another observation layout: number {k} is {a!r} in the demos, {b!r} in the "
                f"env (env kwargs {meta.get('env_kwargs')} then, {env_kwargs or {}} now)"
            )
    if meta["obs_space"] != describe(obs_space):
        raise DemosError(f"{path}: observation space {meta['obs_space']} differs from the env's {describe(obs_space)}")
    want = {**describe(act_space), "low": act_space.low.tolist(), "high": act_space.high.tolist()}
    if meta["action_space"] != want:
        raise DemosError(f"{path}: action space {meta['action_space']} differs from the env's {want}")


def first_difference(was: list[str], now: list[str]) -> tuple[int, str, str]:
    """Where two observation layouts part: the index and each side's feature there ("(none)" past
    its end)."""
    k = next((i for i, (a, b) in enumerate(zip(was, now, strict=False)) if a != b), min(len(was), len(now)))
    return k, was[k] if k < len(was) else "(none)", now[k] if k < len(now) else "(none)"


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and parsed metadata of a demos file; DemosError says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DemosError(f"{path}: no such demos file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DemosError(f"{path}: not a safetensors demos file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise DemosError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("obs", "actions", "episode"):
        if key not in tensors:
            raise DemosError(f"{path}: tensor {key!r} is missing")
    n = len(tensors["obs"])
    for key in ("actions", "episode", *TRANSITIONS):
        if key in tensors and len(tensors[key]) != n:
            raise DemosError(f"{path}: {key} has {len(tensors[key])} rows where obs has {n}")
    try:
        parsed = {
            **meta,
            "env_kwargs": json.loads(meta.get("env_kwargs", "{}")),
            "obs_space": json.loads(meta["obs_space"]),
            "action_space": json.loads(meta["action_space"]),
            "episodes": int(meta["episodes"]),
            "obs_features": json.loads(meta["obs_features"]) if "obs_features" in meta else None,
        }
    except (KeyError, ValueError) as exc:
        raise DemosError(f"{path}: bad metadata ({exc})") from None
    return tensors, parsed
