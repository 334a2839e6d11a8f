from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

CASES = [(e, m) for e in envs.ENV_IDS for m in envs.TASKS[e].obs_modes]
IDS = [f"{e}-{m}" for e, m in CASES]


def _flat(obs) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in sorted(obs)])
    return np.asarray(obs, dtype=np.float64).ravel()


@pytest.mark.parametrize(("env_id", "mode"), CASES, ids=IDS)
def test_check_env(env_id, mode):
    import warnings

    env = gym.make(env_id, obs_mode=mode)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # what the checker only warns about is a failure here
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def _rollout(env, seed: int, steps: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(1234).uniform(-1, 1, size=(steps, *env.action_space.shape))
    out = [_flat(obs)]
    for a in actions:
        obs, _, term, trunc, _ = env.step(a)
        out.append(_flat(obs))
        if term or trunc:
            obs, _ = env.reset()
            out.append(_flat(obs))
    return np.stack(out)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_determinism_over_200_steps(env_id):
    a_env, b_env = gym.make(env_id), gym.make(env_id)
    try:
        a = _rollout(a_env, 7, 200)
        _rollout(b_env, 99, 50)  # a different history must not leak into the next episode
        b = _rollout(b_env, 7, 200)
        np.testing.assert_array_equal(a, b)
        c = _rollout(b_env, 8, 200)
        assert not np.array_equal(a, c)
    finally:
        a_env.close()
        b_env.close()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_bad_actions(env_id):
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        n = env.action_space.shape[0]
        for bad in (np.nan, np.inf, -np.inf):
            a = np.zeros(n)
            a[0] = bad
            with pytest.raises(ValueError, match="NaN or infinite"):
                env.step(a)
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(n + 1))
        # out-of-range actions are clipped: a huge action moves as far as a full one
        env.reset(seed=0)
        big = env.step(np.full(n, 50.0))[0]
        env.reset(seed=0)
        full = env.step(np.ones(n))[0]
        np.testing.assert_array_equal(big, full)
    finally:
        env.close()


def test_unknown_env_id_names_the_closest():
    with pytest.raises(ValueError, match="did you mean ConveyorPick-v0"):
        envs.make("ConveyorPik-v0")


def test_bad_obs_mode_is_refused():
    with pytest.raises(ValueError, match="supports obs_mode"):
        gym.make("ConveyorPick-v0", obs_mode="goal")


def test_reach_compute_reward_is_vectorised():
    env = gym.make("FactoryReach-v0", obs_mode="goal", reward_type="sparse")
    try:
        obs, _ = env.reset(seed=0)
        goals = np.repeat(obs["desired_goal"][None], 4, axis=0)
        achieved = goals + np.array([[0, 0, 0], [0.01, 0, 0], [0.1, 0, 0], [0, 0.5, 0]])
        r = env.unwrapped.compute_reward(achieved, goals, {})
        np.testing.assert_array_equal(r, [0, 0, -1, -1])
    finally:
        env.close()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_render_rgb_array(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and frame.std() > 5
    finally:
        env.close()


def _expert_episode(env_id: str, seed: int) -> dict:
    env = gym.make(env_id)
    try:
        expert = envs.EXPERTS[env_id](env)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        while True:
            obs, _, term, trunc, info = env.step(expert(obs))
            if term or trunc:
                return info
    finally:
        env.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reach_expert(seed):
    assert _expert_episode("FactoryReach-v0", seed)["is_success"]


@pytest.mark.parametrize("seed", [0, 3, 62])  # 62: a part still settling in the bin once drew the expert after it
def test_conveyor_pick_expert_places_every_part(seed):
    info = _expert_episode("ConveyorPick-v0", seed)
    assert info["is_success"]
    k = info["kpis"]
    assert k["parts_placed"] == k["parts_arrived"] == 3
    assert k["picks"] >= 3 and k["drops"] == 0 and k["collisions"] == 0 and k["energy"] > 0
    assert 0 < k["cycle_time_mean"] < 20


def test_random_policy_does_not_place_parts():
    env = gym.make("ConveyorPick-v0")
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(300):
            _, _, term, trunc, info = env.step(env.action_space.sample())
            if term or trunc:
                break
        assert info["parts_placed"] == 0 and not info["is_success"]
    finally:
        env.close()
