"""Our envs in other libraries' tools, and other packages' envs in ours."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs

CASES = [(e, m) for e in envs.ENV_IDS for m in envs.TASKS[e].obs_modes]


@pytest.mark.parametrize(("env_id", "mode"), CASES, ids=[f"{e}-{m}" for e, m in CASES])
def test_stable_baselines3_check_env(env_id, mode):
    from stable_baselines3.common.env_checker import check_env

    env = gym.make(env_id, obs_mode=mode)
    try:
        with __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("error")  # SB3 warns about what it takes for mistakes
            check_env(env.unwrapped, warn=True, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("mode", ["state", "rgb"])
def test_only_goal_mode_looks_like_a_goal_env(mode):
    env = gym.make("FactoryReach-v0", obs_mode=mode)
    try:
        assert not hasattr(env.unwrapped, "compute_reward")
    finally:
        env.close()


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
def test_goal_mode_reward_is_compute_reward_of_the_observed_goals(reward_type):
    env = gym.make("FactoryReach-v0", obs_mode="goal", reward_type=reward_type)
    try:
        env.reset(seed=3)
        expert = envs.make_expert("FactoryReach-v0", env)
        obs = None
        for t in range(30):
            obs, r, term, _, info = env.step(expert(obs) if t % 2 else env.action_space.sample())
            want = env.unwrapped.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
            assert r == float(want)
            if term:
                break
    finally:
        env.close()


def test_stable_baselines3_trains_on_a_factory_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import Logger

    env = gym.make("FactoryReach-v0")
    try:
        model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
        model.set_logger(Logger(None, []))  # SB3's default makes a log folder in /tmp on every run
        model.learn(total_timesteps=256)
        mean, _ = evaluate_policy(model, env, n_eval_episodes=2)
        assert np.isfinite(mean) and model.num_timesteps >= 256
    finally:
        env.close()


def test_module_env_id_imports_the_module():
    assert envs.check_env_id("panda_gym:PandaReach-v3") == "panda_gym:PandaReach-v3"
    env = envs.make("panda_gym:PandaReach-v3")
    try:
        assert set(env.observation_space.spaces) == {"observation", "achieved_goal", "desired_goal"}
    finally:
        env.close()


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("no_such_module_xyz:Foo-v0", "cannot import module 'no_such_module_xyz'"),
        ("panda_gym:PandaReech-v3", "registered no env 'PandaReech-v3'; did you mean panda_gym:PandaReach-v3"),
        (":Foo-v0", "expected MODULE:ENV_ID"),
        ("ConveyorPik-v0", "did you mean ConveyorPick-v0"),
    ],
)
def test_bad_env_ids_say_what_is_wrong(env_id, message):
    with pytest.raises(envs.UnknownEnvError, match=message.replace("(", r"\(")):
        envs.check_env_id(env_id)


def test_third_party_envs_have_no_expert():
    env = envs.make("panda_gym:PandaReach-v3")
    try:
        with pytest.raises(envs.NoExpertError, match="no scripted expert"):
            envs.make_expert("panda_gym:PandaReach-v3", env)
    finally:
        env.close()
