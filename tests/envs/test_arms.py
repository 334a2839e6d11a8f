"""Tasks are robot-agnostic: each runs with either arm where the reach allows.

``envs.ARMS`` says which arm runs which task on its bundled layout (every task both arms, but
FactoryReach, whose near targets the iiwa cannot fold to); the env refuses the others, and the
expert, which only commands tool positions, succeeds with each arm it runs with.

A task's earlier versions share its layout, physics and expert (they differ in what they observe
and reward: the expert's episodes are the same actions, step for step), so the ten-episode check
runs on each task's newest version, and ``test_every_task_runs_with_the_iiwa`` runs every version's
expert once.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from tests.experts import expert_steps
from twin.layout import LayoutError

ARMS = envs.ARMS


def _expert_successes(env_id: str, robot: str, seeds) -> list[bool]:
    env = gym.make(env_id, robot=robot)
    try:
        return [bool(expert_steps(env, env_id, seed)[-1][1]["is_success"]) for seed in seeds]
    finally:
        env.close()


def test_the_arms_table_is_what_the_envs_accept():
    for env_id in envs.ENV_IDS:
        for robot in ("panda", "iiwa"):
            try:
                gym.make(env_id, robot=robot).close()
            except ValueError as exc:
                assert robot not in ARMS[env_id], f"{env_id} refuses the {robot}: {exc}"
            else:
                assert robot in ARMS[env_id], f"{env_id} takes the {robot}, which envs.ARMS leaves out"


def test_a_task_the_arm_cannot_reach_is_refused_with_the_reason():
    with pytest.raises(
        ValueError, match=r"iiwa-0 \(KUKA LBR iiwa 14 R820\) reaches only 91% of the task's target region"
    ):
        gym.make("FactoryReach-v0", robot="iiwa")


@pytest.mark.parametrize("env_id", [e for e in envs.ENV_IDS if "iiwa" in envs.ARMS[e]])
def test_every_task_runs_with_the_iiwa(env_id):
    env = gym.make(env_id, robot="iiwa")
    try:
        assert env.unwrapped.twin.robots[0].name == "iiwa-0"
        check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=7)
        again, _ = env.reset(seed=7)
        np.testing.assert_array_equal(obs, again)
    finally:
        env.close()
    assert _expert_successes(env_id, "iiwa", [1000]) == [True]


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "robot"), [(e, r) for e in envs.LATEST_IDS for r in ARMS[e]])
def test_experts_succeed_with_each_arm_they_run_with(env_id, robot):
    assert all(_expert_successes(env_id, robot, range(1000, 1010)))


def test_an_arm_that_is_not_there_is_refused():
    with pytest.raises(LayoutError, match=r"(?s)robot='ur5'.*robots\[0\]\.model: Input should be 'panda' or 'iiwa'"):
        gym.make("ConveyorPick-v0", robot="ur5")
    with pytest.raises(ValueError, match="robot must be a model name"):
        gym.make("ConveyorPick-v0", robot=3)
