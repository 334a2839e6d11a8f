"""The envs with faults and randomisation: still valid Gymnasium and SB3 envs, deterministic under a
seed, with control latency and fault indicators doing what they say, and the experts coping."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from twin.layout import FAULT_FAMILIES, CellLayout, LayoutError, load_layout

VARIANTS = {"faults": {"faults": "all"}, "randomized": {"randomize": True}}
CASES = [(e, v) for e in envs.ENV_IDS for v in VARIANTS]


@pytest.mark.parametrize(("env_id", "variant"), CASES, ids=[f"{e}-{v}" for e, v in CASES])
def test_varied_envs_pass_both_checkers_and_repeat_under_a_seed(env_id, variant):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    a, b = gym.make(env_id, **VARIANTS[variant]), gym.make(env_id, **VARIANTS[variant])
    try:
        check_env(a.unwrapped, skip_render_check=True)
        sb3_check_env(a.unwrapped, warn=False)
        rng = np.random.default_rng(5)
        actions = rng.uniform(-1, 1, size=(120, *a.action_space.shape))
        runs = []
        for env, seed in ((a, 11), (b, 4), (b, 11)):  # b's earlier episode must not leak into the next
            obs, _ = env.reset(seed=seed)
            trace = [np.asarray(obs, dtype=np.float64)]
            for act in actions:
                obs, _, term, trunc, _ = env.step(act)
                trace.append(np.asarray(obs, dtype=np.float64))
                if term or trunc:
                    break
            runs.append((np.stack(trace), env.unwrapped.twin.log.to_dicts()))
        np.testing.assert_array_equal(runs[0][0], runs[2][0])
        assert runs[0][1] == runs[2][1]
    finally:
        a.close()
        b.close()


def test_unknown_families_are_refused_by_the_env():
    with pytest.raises(LayoutError, match=r"unknown fault families \['gremlins'\]"):
        gym.make("ConveyorPick-v0", faults=["gremlins"])
    with pytest.raises(LayoutError, match="machine_breakdown: this cell has nothing it acts on"):
        gym.make("ConveyorPick-v0", faults=["machine_breakdown"])


def test_indicators_extend_the_observation_with_one_flag_per_family():
    data = load_layout("default").model_dump()
    data["faults"] = {"indicators": True, "conveyor_jam": {"rate": 60.0, "duration": [2.0, 2.0]}}
    env = gym.make("ConveyorPick-v0", layout=CellLayout.model_validate(data))
    plain = gym.make("ConveyorPick-v0")
    try:
        n = plain.observation_space.shape[0]
        assert env.observation_space.shape == (n + len(FAULT_FAMILIES),)
        obs, _ = env.reset(seed=0)
        jam = FAULT_FAMILIES.index("conveyor_jam")
        seen = set()
        for _ in range(120):
            obs, *_ = env.step(np.zeros(4))
            flags = obs[n:]
            assert set(np.flatnonzero(flags)) <= {jam}
            seen.add(bool(flags[jam]) == (not env.unwrapped.twin.conveyors["conveyor-0"].running))
        assert seen == {True}  # the flag is on exactly while the belt is jammed
    finally:
        env.close()
        plain.close()


def test_latency_holds_an_action_back_by_its_steps():
    data = load_layout("workbench").model_dump()
    data["randomization"] = {"latency": [2, 2]}
    env = gym.make("FactoryReach-v0", layout=CellLayout.model_validate(data))
    try:
        env.reset(seed=0)
        ee = [np.array(env.unwrapped.task.robot.ee_xyz())]
        for a in ([1.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]):
            env.step(np.array(a, dtype=np.float32))
            ee.append(np.array(env.unwrapped.task.robot.ee_xyz()))
        moved = [np.linalg.norm(q - p) for p, q in itertools.pairwise(ee)]
        assert max(moved[:2]) < 1e-3 < moved[2]  # nothing for two steps, then the move
    finally:
        env.close()


@pytest.mark.parametrize("variant", ["faults", "randomized"])
@pytest.mark.parametrize("env_id", ["ConveyorPick-v0", "MachineTend-v0", "AGVDeliver-v0"])
def test_experts_cope_with_faults_and_variation(env_id, variant):
    env = gym.make(env_id, **VARIANTS[variant])
    expert = envs.make_expert(env_id, env)
    try:
        wins, faults = 0, 0
        for seed in (1000, 1001):
            obs, _ = env.reset(seed=seed)
            expert.reset()
            done = False
            while not done:
                obs, _, term, trunc, info = env.step(expert(obs))
                done = term or trunc
            wins += info["is_success"]
            faults += sum(e.kind == "fault_start" for e in env.unwrapped.twin.log.events)
        assert wins == 2
        assert variant != "faults" or faults > 0
    finally:
        env.close()
