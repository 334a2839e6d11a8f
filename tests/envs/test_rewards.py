"""ConveyorPick's staged reward and its difficulty knobs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs

ORDER = ["intercept", "grasp", "lift", "carry", "release"]


def _expert_episode(seed: int = 0, **kwargs):
    env = gym.make("ConveyorPick-v0", **kwargs)
    obs, _ = env.reset(seed=seed)
    expert = envs.make_expert("ConveyorPick-v0", env)
    expert.reset()
    steps = []
    while True:
        obs, r, term, trunc, info = env.step(expert(obs))
        steps.append((r, info))
        if term or trunc:
            break
    env.close()
    return steps


def test_stages_fire_in_order_and_progress_rises_at_each():
    steps = _expert_episode(seed=0)
    assert steps[-1][1]["is_success"]
    assert all(r <= 1.0 for r, _ in steps)
    # per part: the stages seen, in order, and the progress when each is first reached
    placed_before, seen, rises = 0, [], []
    for _, info in steps:
        if info["parts_placed"] > placed_before:  # a placement: the part's stages are complete
            assert [s for s in ORDER if s in seen] == seen, seen  # no stage out of order
            assert {"intercept", "carry", "release"} <= set(seen) and ({"grasp", "lift"} & set(seen)), seen
            assert rises == sorted(rises) and len(set(rises)) == len(rises), rises  # rising at each stage
            assert info["progress"] == pytest.approx(info["parts_placed"], abs=0.11)
            placed_before, seen, rises = info["parts_placed"], [], []
        stage = info["stage"]
        if stage in ORDER and stage not in seen:
            seen.append(stage)
            rises.append(info["progress"])
    assert placed_before == 3


def test_return_is_the_parts_placed():
    for seed in (0, 1):
        steps = _expert_episode(seed=seed)
        ret = sum(r for r, _ in steps)
        assert ret == pytest.approx(steps[-1][1]["parts_placed"], abs=1e-6)


def test_a_dropped_part_takes_its_progress_back():
    env = gym.make("ConveyorPick-v0")
    try:
        obs, _ = env.reset(seed=0)
        expert = envs.make_expert("ConveyorPick-v0", env)
        expert.reset()
        while True:
            obs, r, *_, info = env.step(expert(obs))
            if info["stage"] == "carry":
                break
        before = info["progress"]
        assert before > 0.6
        lost = 0.0
        for _ in range(20):  # let go over the belt side of the cell, away from the bin
            obs, r, *_, info = env.step(np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32))
            lost += r
        assert info["stage"] != "carry" and lost < -0.3
        assert info["progress"] == pytest.approx(before + lost)
    finally:
        env.close()


def test_sparse_reward_pays_placements_only():
    steps = _expert_episode(seed=0, reward_type="sparse")
    assert sum(r for r, _ in steps) == 3.0 and {r for r, _ in steps} == {0.0, 1.0}


def test_difficulty_knobs_change_the_cell():
    env = gym.make("ConveyorPick-v0", parts=1, belt_speed=0.05, arrival_interval=[2, 3])
    try:
        layout = env.unwrapped.twin.layout
        assert layout.feeders[0].parts_per_episode == 1
        assert layout.feeders[0].interval == (2.0, 3.0)
        assert layout.conveyors[0].speed == 0.05
    finally:
        env.close()
    steps = _expert_episode(seed=0, parts=1, belt_speed=0.05)
    assert steps[-1][1]["is_success"] and steps[-1][1]["parts_placed"] == 1
    fast = gym.make("ConveyorPick-v0", parts=5, arrival_interval=2.0)
    try:
        assert fast.unwrapped.twin.layout.feeders[0].interval == (2.0, 2.0)
        assert fast.unwrapped.twin.layout.feeders[0].parts_per_episode == 5
    finally:
        fast.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parts": 0}, "parts must be a whole number from 1 to 50, got 0"),
        ({"parts": 2.5}, "parts must be a whole number"),
        ({"belt_speed": 5.0}, "belt_speed must be a number of m/s from 0.02 to 0.3"),
        ({"belt_speed": float("nan")}, "belt_speed must be"),
        ({"arrival_interval": [5, 2]}, "arrival_interval must lie within 1-60 s"),
        ({"arrival_interval": [1, float("inf")]}, "arrival_interval must be finite"),
        ({"arrival_interval": "soon"}, "arrival_interval must be a number or a"),
        ({"evil": 1}, "has no setting 'evil'"),
    ],
)
def test_bad_knobs_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        gym.make("ConveyorPick-v0", **kwargs)


def test_tasks_without_knobs_refuse_unknown_settings():
    with pytest.raises(ValueError, match="Reach takes no setting 'parts'"):
        gym.make("FactoryReach-v0", parts=3)
