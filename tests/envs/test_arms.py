"""Tasks are robot-agnostic: each runs with either arm where the reach allows.

``envs.ARMS`` says which arm runs which task on its bundled layout (every task both arms, but
FactoryReach, whose near targets the iiwa cannot fold to); the env refuses the others, and the
expert, which only commands tool positions, succeeds with each arm it runs with.

The ten-episode check leaves out a task's earlier versions that share its newest version's
expert, layout and physics (they differ in what they observe and reward, so the expert's
episodes are the same actions, step for step: ``test_an_earlier_version_left_out_acts_as_its_newest``
holds them to that); ``test_every_task_runs_with_the_iiwa`` still runs every version's expert once.
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


def _newest(env_id: str) -> str:
    return next(i for i in envs.LATEST_IDS if i.rsplit("-", 1)[0] == env_id.rsplit("-", 1)[0])


def _acts_as_its_newest(env_id: str) -> bool:
    """An earlier version whose expert is its newest version's (PegInsert-v0's is its own)."""
    return env_id != _newest(env_id) and envs.EXPERTS[env_id] is envs.EXPERTS[_newest(env_id)]


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
@pytest.mark.parametrize(
    ("env_id", "robot"), [(e, r) for e in envs.ENV_IDS if not _acts_as_its_newest(e) for r in ARMS[e]]
)
def test_experts_succeed_with_each_arm_they_run_with(env_id, robot):
    assert all(_expert_successes(env_id, robot, range(1000, 1010)))


def _expert_actions(env_id: str, robot: str, seed: int, steps: int) -> np.ndarray:
    env = gym.make(env_id, robot=robot)
    try:
        obs, _ = env.reset(seed=seed)
        expert = envs.make_expert(env_id, env)
        expert.reset()
        actions = []
        for _ in range(steps):
            actions.append(np.array(expert(obs)))
            obs, _, term, trunc, _ = env.step(actions[-1])
            if term or trunc:
                break
        return np.stack(actions)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [e for e in envs.ENV_IDS if _acts_as_its_newest(e) and ARMS[e]])
def test_an_earlier_version_left_out_acts_as_its_newest(env_id):
    # the expert's first 150 steps with each arm, the same actions on both versions: were this
    # to fail, the earlier version goes back into the ten-episode check
    for robot in ARMS[env_id]:
        np.testing.assert_array_equal(
            _expert_actions(env_id, robot, 1003, 150), _expert_actions(_newest(env_id), robot, 1003, 150)
        )


def test_an_arm_that_is_not_there_is_refused():
    with pytest.raises(LayoutError, match=r"(?s)robot='ur5'.*robots\[0\]\.model: Input should be 'panda' or 'iiwa'"):
        gym.make("ConveyorPick-v0", robot="ur5")
    with pytest.raises(ValueError, match="robot must be a model name"):
        gym.make("ConveyorPick-v0", robot=3)
