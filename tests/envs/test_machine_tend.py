"""MachineTend: the expert tends both machines, the staged reward pays deliveries, KPIs add up."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tests.experts import expert_steps


def _expert_episode(seed: int, **kwargs):
    env = gym.make("MachineTend-v0", **kwargs)
    try:
        return expert_steps(env, "MachineTend-v0", seed), env.unwrapped.twin.log
    finally:
        env.close()


@pytest.fixture(scope="module")
def episode():
    return _expert_episode(seed=0)


def test_expert_machines_every_blank_and_delivers_it(episode):
    steps, log = episode
    info = steps[-1][1]
    assert info["is_success"] and info["parts_delivered"] == 4
    k = info["kpis"]
    # both machines worked (the fast one more often) and every cycle ended in a good part
    assert k["machine-0_produced"] + k["machine-1_produced"] == 4
    assert k["machine-0_produced"] > k["machine-1_produced"] >= 1
    for m in ("machine-0", "machine-1"):
        assert 0 < k[f"{m}_oee"] <= k[f"{m}_availability"] <= 1 and k[f"{m}_quality"] == 1
        assert k[f"{m}_idle_time"] > 0
    assert k["parts_placed"] == 4 and k["drops"] == 0 and k["collisions"] == 0
    assert 0 < k["parts_in_process_mean"] <= 2 and k["throughput"] > 200
    # each part: picked from the tray, loaded, produced, picked off the fixture, placed in the output tray
    for n in range(4):
        kinds = [e.kind for e in log.events if e.part == f"part-blank-{n}" and e.kind != "machine_state"]
        assert kinds == ["arrived", "grasp", "picked", "produced", "grasp", "picked", "placed"], kinds


def test_return_is_the_parts_delivered_and_waiting_pays_nothing(episode):
    steps, _ = episode
    rewards = np.array([r for r, _ in steps])
    assert rewards.sum() == pytest.approx(4.0, abs=0.06)  # less the approach term at reset
    assert rewards.max() <= 1.0
    progress = [info["progress"] for _, info in steps]
    # on the way to the first delivery the progress passes each stage's share in turn: a raw part
    # held, loaded, machined, released over the output tray
    first = next(i for i, (_, info) in enumerate(steps) if info["parts_delivered"] == 1)
    crossed = [next(i for i, p in enumerate(progress) if p >= share) for share in (0.1, 0.3, 0.5, 0.85, 1.0)]
    assert crossed == sorted(crossed) and crossed[-1] <= first


def test_sparse_reward_pays_deliveries_only():
    steps, _ = _expert_episode(seed=1, reward_type="sparse")
    rewards = [r for r, _ in steps]
    assert sorted(set(rewards)) == [0.0, 1.0] and sum(rewards) == 4


def test_a_raw_part_in_the_output_tray_ends_the_episode_as_a_failure():
    env = gym.make("MachineTend-v0")
    try:
        env.reset(seed=0)
        task = env.unwrapped.task
        part, slot = task.parts[0], task.output.slots[0]
        env.unwrapped.twin.world.p.resetBasePositionAndOrientation(
            part.id, [slot[0], slot[1], slot[2] + 0.03], [0, 0, 0, 1]
        )
        part.state, part.location = "loose", ""
        for _ in range(30):
            _, _, term, _, info = env.step(np.zeros(4, dtype=np.float32))
            if term:
                break
        assert term and not info["is_success"] and part.state == "placed"
    finally:
        env.close()
