"""Every scripted expert is a function of the twin's state: asked afresh at each step (a new
expert object every step, as DAgger asks it of states a learner reached), it acts as the one
that ran the whole episode, and asking it changes nothing it holds."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

import envs

# short settings where a task has them (every version), so each episode stays a few seconds of wall-clock
SHORT = {
    "ConveyorPick": {"parts": 1},
    "BinSort": {"parts": 2},
    "AGVDeliver": {"deliveries": 1},
    "WaferTransfer": {"wafers": 1},
}


def _episode(env_id: str, fresh: bool, seed: int = 1001) -> tuple[bool, np.ndarray]:
    env = gym.make(env_id, **SHORT.get(env_id.rsplit("-", 1)[0], {}))
    try:
        obs, _ = env.reset(seed=seed)
        kept = envs.make_expert(env_id, env)
        actions = []
        while True:
            expert = envs.make_expert(env_id, env) if fresh else kept
            before = copy.copy(vars(expert))
            a = np.asarray(expert(obs), dtype=np.float32)
            assert vars(expert).keys() == before.keys()
            for key, value in vars(expert).items():  # caches of the layout aside, nothing changes
                if not key.endswith("_for"):
                    assert value is before[key], f"{env_id}: the expert changed {key!r} while acting"
            actions.append(a)
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                return bool(info["is_success"]), np.stack(actions)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_the_expert_asked_afresh_at_every_step_acts_as_the_one_kept(env_id):
    kept_success, kept = _episode(env_id, fresh=False)
    fresh_success, fresh = _episode(env_id, fresh=True)
    assert kept_success and fresh_success
    np.testing.assert_array_equal(fresh, kept)


@pytest.mark.parametrize("env_id", ["MachineTend-v1", "PegInsert-v1"])
def test_magnified_offsets_are_their_raw_offsets_through_tanh(env_id):
    import math
    import re

    env = gym.make(env_id)
    try:
        obs, _ = env.reset(seed=5)
        expert = envs.make_expert(env_id, env)
        for _ in range(60):  # into the approach, where the offsets are small
            obs, *_ = env.step(expert(obs))
        feats = env.unwrapped.task.observation_features()
        value = {f[0]: float(obs[i]) for i, f in enumerate(feats)}
        checked = 0
        for name, unit, low, high in feats:
            m = re.fullmatch(r"(.+)_near_([xyz])", name)
            if m is None:
                continue
            assert (low, high) == (-1.0, 1.0) and -1.0 <= value[name] <= 1.0
            scale = float(re.fullmatch(r"tanh\(m / (.+)\)", unit).group(1))
            raw = next((r for r in (f"{m[1]}_{m[2]}", f"{m[1]}_minus_tool_{m[2]}") if r in value), None)
            if raw is not None:
                assert value[name] == pytest.approx(math.tanh(value[raw] / scale), abs=1e-5), name
                checked += 1
        assert checked >= 6
    finally:
        env.close()
