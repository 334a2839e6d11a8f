"""The ``-v2`` observations: each magnified number is its raw partner through ``tanh``, and what
the AGV's safety stack reports about people is consistent with where they are."""

from __future__ import annotations

import math
import re

import gymnasium as gym
import pytest

import envs
from envs.tasks.agv_deliver import closest_approach

# magnified feature -> its raw partner
PAIRS = {
    "AGVDeliver-v2": {
        "line_near_along": "line_along",
        "line_near_across": "line_across",
        "last_dock_near_along": "last_dock_along",
    },
    "WaferTransfer-v2": {
        **{
            f"{w}_near_{a}": f"{w}_{b}"
            for w in ("source", "destination")
            for a, b in (
                ("turn", "turn"),
                ("extension", "extension"),
                ("under", "height_under"),
                ("over", "height_over"),
            )
        },
        "retract_near": "retract",
    },
}


def _values(env_id: str, steps: int, seed: int = 3) -> tuple[list[dict[str, float]], dict[str, str]]:
    """The observation, by feature name, at every step of the expert's first ``steps``, and each
    feature's unit."""
    env = gym.make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        feats = env.unwrapped.task.observation_features()
        assert len(feats) == env.observation_space.shape[0]
        expert = envs.make_expert(env_id, env)
        out = []
        for _ in range(steps):
            obs, *_ = env.step(expert(obs))
            out.append({f[0]: float(obs[i]) for i, f in enumerate(feats)})
            assert all(f[2] <= obs[i] <= f[3] for i, f in enumerate(feats)), env_id
        return out, {f[0]: f[1] for f in feats}
    finally:
        env.close()


@pytest.mark.parametrize("env_id", sorted(PAIRS))
def test_magnified_numbers_are_their_raw_partners_through_tanh(env_id):
    values, units = _values(env_id, 400)
    small = 0
    for v in values:
        for near, raw in PAIRS[env_id].items():
            scale = float(re.fullmatch(r"tanh\((?:m|rad) / (.+)\)", units[near]).group(1))
            assert v[near] == pytest.approx(math.tanh(v[raw] / scale), abs=1e-4), (near, v[raw])
            small += abs(v[near]) < 0.9
    assert small > 50  # the approach into the last millimetres was seen, not only saturated values


def test_the_agv_sees_each_persons_closest_approach():
    assert closest_approach(3.0, 0.0, -1.0, 0.0) == pytest.approx((0.0, 3.0))  # walking straight at it
    assert closest_approach(3.0, 1.0, 1.0, 0.0) == pytest.approx((math.hypot(3, 1), 0.0))  # walking away
    assert closest_approach(10.0, 0.0, -1.0, 0.0) == pytest.approx((6.0, 4.0))  # beyond the horizon
    for v in _values("AGVDeliver-v2", 300)[0]:
        for k in range(2):
            now = math.hypot(v[f"person{k}_ahead"], v[f"person{k}_left"])
            assert v[f"person{k}_closest"] <= now + 1e-4
            assert 0.0 <= v[f"person{k}_closest_in"] <= 4.0


def test_the_agv_v2_action_is_a_signed_square_of_speed_and_turn():
    env = gym.make("AGVDeliver-v2")
    try:
        task = env.unwrapped.task
        cfg = task.agv.config
        assert task.decode([1.0, -1.0]) == pytest.approx((cfg.max_speed, -cfg.max_turn_rate))
        assert task.decode([0.5, 0.5]) == pytest.approx((0.25 * cfg.max_speed, 0.25 * cfg.max_turn_rate))
        for v, w in ((0.06, -0.1), (-0.5, 0.02), (0.0, 1.5)):
            assert task.decode(task.encode(v, w)) == pytest.approx((v, w))
        assert abs(task.encode(0.0, 0.1)[1]) > 3 * 0.1 / cfg.max_turn_rate  # a fine turn is a sizeable action
    finally:
        env.close()
