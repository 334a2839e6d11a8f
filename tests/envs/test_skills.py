"""The skill configurations: each arm task cut down to one part and a short episode."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs


@pytest.mark.parametrize("skill", envs.SKILL_IDS)
def test_each_skill_is_a_checked_deterministic_env_whose_expert_succeeds_well_within_its_limit(skill):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    base, knobs, steps, _ = envs.SKILLS[skill]
    env = gym.make(skill)
    try:
        assert env.spec.max_episode_steps == steps <= 320
        assert env.observation_space == gym.make(base).observation_space  # a policy moves between them
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
        lengths = []
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            first = obs.copy()
            expert = envs.EXPERTS[skill](env)
            for t in range(steps):  # noqa: B007 (t: the episode's length, after it)
                obs, _, term, trunc, info = env.step(expert(obs))
                if term or trunc:
                    break
            assert info["is_success"] and term and not trunc, (skill, seed, t)
            lengths.append(t + 1)
            again, _ = env.reset(seed=seed)
            np.testing.assert_array_equal(again, first)  # deterministic under reset(seed=...)
        assert max(lengths) <= 0.8 * steps, lengths  # room for a learner slower than the expert
        layout = env.unwrapped.twin.layout  # the skill is the task at its knobs: one part
        if "parts" in knobs:
            assert layout.feeders[0].parts_per_episode == 1
        if "blanks" in knobs:
            assert next(t for t in layout.trays if t.fill).count == 1
    finally:
        env.close()


def test_one_blank_is_the_whole_machine_tending_episode_and_bad_counts_are_refused():
    env = gym.make("MachineTendSkill-v1")
    try:
        env.reset(seed=0)
        assert len(env.unwrapped.task.parts) == 1
    finally:
        env.close()
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match=r"blanks must be a whole number from 1 to 4"):
            gym.make("MachineTend-v1", blanks=bad)
    with pytest.raises(ValueError, match=r"no setting 'parts'"):
        gym.make("MachineTend-v1", parts=1)


def test_skills_stay_out_of_the_suites_task_list_but_have_experts_and_arms():
    assert not set(envs.SKILL_IDS) & set(envs.ENV_IDS)
    assert not set(envs.SKILL_IDS) & set(envs.LATEST_IDS)
    for skill, (base, *_rest) in envs.SKILLS.items():
        assert envs.EXPERTS[skill] is envs.EXPERTS[base] and envs.ARMS[skill] == envs.ARMS[base]


@pytest.mark.parametrize("skill", ["ConveyorPickSkill-v1", "BinSortSkill-v1"])
def test_the_staged_reward_pays_the_progress_each_step_and_a_placed_part_until_the_time_limit(skill):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(skill, reward_type="staged")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
        obs, _ = env.reset(seed=0)
        expert = envs.EXPERTS[skill](env)
        rewards, carrying, placed_at = [], [], None
        for t in range(env.spec.max_episode_steps):
            obs, reward, term, trunc, info = env.step(expert(obs))
            rewards.append(reward)
            if info["stage"] == "carry":
                carrying.append(reward)
            assert not term  # never terminated: a placed part keeps paying
            if placed_at is None and info["is_success"]:
                placed_at = t
            if trunc:
                break
        assert trunc and t + 1 == env.spec.max_episode_steps and info["is_success"]
        assert placed_at is not None and placed_at < 0.8 * len(rewards)
        assert all(0.0 <= r <= 1.0 for r in rewards)
        assert rewards[placed_at:] == [1.0] * (len(rewards) - placed_at)  # the placed part, on every step
        before = rewards[:placed_at]
        assert before[0] == 0.0 and max(before) < 1.0  # no part yet at the start
        assert any(0.0 < r < 0.1 for r in before)  # near the part (the intercept stage), then up the stages
        assert max(before) == pytest.approx(0.8)  # it paid the release stage on the way into the bin
        # carrying the part the metre to the bin climbs all the way, and pays more than lifting it
        assert carrying[0] >= 0.4 and carrying[-1] - carrying[0] >= 0.2 and max(carrying) < 0.7
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"PegInsertV1: reward_type must be one of 'dense', 'sparse', got 'staged'"):
        gym.make("PegInsert-v1", reward_type="staged")


def test_the_staged_carry_is_measured_around_the_arms_base():
    """A learner that carries a part straight at the bin folds the arm against its own base and
    stops there; the staged reward's carry distance goes around the base, as the expert does."""
    from envs.motion import route_length

    base, drop = (0.0, 0.0, 0.75), (0.5, -0.12, 0.83)
    clear = (0.2, -0.45, 1.0)  # the straight path from here passes 45 cm from the base's axis
    assert route_length(clear, drop, base) == pytest.approx(math.dist(clear, drop))
    folded = (0.1, -0.37, 1.25)  # where SAC stalled: straight on would pass 25 cm from the axis
    assert route_length(folded, drop, base) > math.dist(folded, drop) + 0.1
    assert route_length(folded, drop, base) > route_length(clear, drop, base)  # moving out pays
