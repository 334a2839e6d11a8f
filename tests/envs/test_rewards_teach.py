"""The -v1 rewards teach the task: the scripted expert's return beats every way of settling for
less (doing nothing, hovering over the first target, grasping and holding on, crashing), and a
failure or the clock takes back what was banked (``envs.degenerate``)."""

from __future__ import annotations

import pytest

import envs
from envs.degenerate import DEGENERATE, episode_return

V1 = [e for e in envs.ENV_IDS if e.endswith("-v1")]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", V1)
def test_the_experts_return_beats_every_degenerate_policy(env_id):
    expert, ok = episode_return(env_id, envs.make_expert, 1001)
    assert ok
    returns = {name: episode_return(env_id, make, 1001)[0] for name, make in DEGENERATE.items()}
    print(f"{env_id}: expert {expert:.3f}, " + ", ".join(f"{k} {v:.3f}" for k, v in returns.items()))
    for name, value in returns.items():
        assert value < expert - 0.5 * expert, (name, value, expert)  # not close: less than half
        assert value <= 0.05, (name, value)  # nothing banked survives the end of an unfinished episode


def test_the_time_limit_takes_back_a_part_still_held():
    import gymnasium as gym
    import numpy as np

    from envs.degenerate import grasp_and_hold

    env = gym.make("ConveyorPick-v1", parts=1)
    try:
        obs, _ = env.reset(seed=3)
        policy = grasp_and_hold("ConveyorPick-v1", env)
        total, info, trunc = 0.0, {}, False
        while not trunc:
            obs, r, term, trunc, info = env.step(policy(obs))
            total += r
            assert not term
        assert info["taken_back"] > 0.2  # grasped and lifted: its stages were paid, then taken back
        assert total == pytest.approx(0.0, abs=0.02)
        assert isinstance(obs, np.ndarray)
    finally:
        env.close()
