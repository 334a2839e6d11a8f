"""AGVDeliver: the expert delivers every tote safely; knobs, rewards and refusals."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tests.experts import expert_steps

ENV = "AGVDeliver-v0"


@pytest.fixture(scope="module")
def env():
    e = gym.make(ENV)
    yield e
    e.close()


@pytest.mark.parametrize("seed", [0, 5])
def test_the_expert_delivers_every_tote_safely(env, seed):
    steps = expert_steps(env, ENV, seed)
    rewards = np.array([r for r, _ in steps])
    info = steps[-1][1]
    assert info["is_success"] and info["deliveries"] == 2
    k = info["kpis"]
    assert k["deliveries"] == 2 and k["misdeliveries"] == 0 and k["totes_dropped"] == 0
    assert k["agv_collisions"] == 0 and k["safety_field_time"] == 0 and k["min_person_distance"] >= 0.5
    assert 0 < k["docking_error_mean"] < 20  # millimetres
    assert k["travel_distance"] > 10 and k["agv_energy"] > 0 and k["deliveries_per_hour"] > 0
    assert rewards.max() <= 1.0
    # the staged reward telescopes: an episode earns the progress it made
    first = env.unwrapped.task  # progress at the start is the approach term alone
    assert rewards.sum() == pytest.approx(1.0 - steps[0][1]["progress"] + rewards[0], abs=1e-6)
    assert first.n_totes == 2


def test_sparse_reward_pays_only_success():
    e = gym.make(ENV, reward_type="sparse", deliveries=1)
    try:
        steps = expert_steps(e, ENV, 3)
        rewards = [r for r, _ in steps]
        assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and steps[-1][1]["is_success"]
    finally:
        e.close()


def test_a_random_policy_delivers_nothing(env):
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        assert r <= 1.0
        if term or trunc:
            break
    assert info["deliveries"] == 0 and not info["is_success"]


def test_knobs_set_totes_people_and_fleet():
    e = gym.make(ENV, deliveries=3, people=1, fleet=4)
    try:
        fleet = e.unwrapped.twin.fleet
        assert len(fleet.totes) == 3 and len(fleet.people) == 1 and len(fleet.agvs) == 4
        e.reset(seed=1)
        start = [a.pose for a in fleet.agvs[1:]]
        for _ in range(30):
            e.step(np.zeros(2))
        assert all(
            np.hypot(a.pose[0] - s[0], a.pose[1] - s[1]) > 0.5 for a, s in zip(fleet.agvs[1:], start, strict=True)
        )
        assert np.hypot(*fleet.agvs[0].pose[:2]) == pytest.approx(
            np.hypot(-5.27, -1.0), abs=0.01
        )  # the task's AGV stood
    finally:
        e.close()
    default = gym.make(ENV)
    try:
        assert len(default.unwrapped.twin.fleet.agvs) == 1
    finally:
        default.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deliveries": 0}, "deliveries must be a whole number from 1 to 5"),
        ({"fleet": 9}, "fleet must be a whole number from 1 to 8"),
        ({"people": 2.5}, "people must be a whole number from 0 to 2"),
        ({"speed": 1}, "AGVDeliver has no setting 'speed'"),
        ({"robot": "panda"}, "drives no arm \\(it drives the agv\\)"),
        ({"layout": "default"}, "AGVDeliver needs a layout with \\[\\[agvs\\]\\]"),
    ],
    ids=["deliveries", "fleet", "people", "unknown", "robot", "no-agvs"],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(ENV, **kwargs)


def test_an_arm_task_on_a_floor_without_arms_is_refused():
    with pytest.raises(ValueError, match="ConveyorPick needs a layout with a robot arm"):
        gym.make("ConveyorPick-v0", layout="logistics")


def test_an_episode_does_not_depend_on_the_one_before():
    """A delivered tote stays on its drop-off and every contact left over is dropped at reset, so
    the same seed and actions give the same episode after any history."""

    def observations(env, seed):
        import envs

        expert = envs.make_expert(ENV, env)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        out = [obs]
        while True:
            obs, _, term, trunc, _ = env.step(expert(obs))
            out.append(obs)
            if term or trunc:
                return np.stack(out)

    fresh, used = gym.make(ENV, deliveries=1), gym.make(ENV, deliveries=1)
    try:
        observations(used, 4)  # a whole episode, tote delivered, first
        np.testing.assert_array_equal(observations(fresh, 9), observations(used, 9))
    finally:
        fresh.close()
        used.close()


def _v2_expert_at(env, along: float, across: float, herr: float = 0.0, speed: float = 0.0):
    """The -v2 expert's speed and turn rate with the AGV put (in the expert's view) at ``along``,
    ``across`` the pickup dock's line, heading ``herr`` off it."""
    from envs.tasks.agv_deliver import AGVDeliverExpert

    env.reset(seed=0)
    task = env.unwrapped.task
    expert = AGVDeliverExpert(env)
    dx, dy, dth = expert.choose_dock(task, task.target())
    c, s = np.cos(dth), np.sin(dth)
    task.agv.pose = (dx + along * c - across * s, dy + along * s + across * c, dth - herr)
    task.agv.vel = (speed, 0.0)
    pose = task.agv.pose
    assert expert.choose_dock(task, task.target()) == (dx, dy, dth)
    v, w = task.decode(expert(None))
    assert task.agv.pose == pose
    return v, w


def test_the_v2_expert_backs_out_of_a_dock_line_it_strayed_off_beside_the_station():
    env = gym.make("AGVDeliver-v2", people=0)
    try:
        # beside the station, 5 cm off the line (the dock leaves 3 cm): straight back out
        v, w = _v2_expert_at(env, along=-0.5, across=0.05, speed=0.2)
        assert v < 0 and abs(w) < 0.05
        v, w = _v2_expert_at(env, along=-0.5, across=-0.05, speed=0.2)
        assert v < 0
        # on the line there: on in
        v, _ = _v2_expert_at(env, along=-0.5, across=0.01, speed=0.2)
        assert v > 0
        # at the pre-dock point, aligned but 4 cm off the line: it does not start in along the line
        v, w = _v2_expert_at(env, along=-0.8, across=0.04)
        assert v == 0 and abs(w) > 0.5  # it turns towards the point first
        # on the point and aligned: in
        v, w = _v2_expert_at(env, along=-0.8, across=0.005)
        assert v > 0
        # just under way but turned 4.6 degrees (its front corner 4 cm off the line): not on in
        v, w = _v2_expert_at(env, along=-0.767, across=0.004, herr=0.08, speed=0.1)
        assert v <= 0
    finally:
        env.close()


def test_the_v2_expert_docks_within_a_centimetre():
    env = gym.make("AGVDeliver-v2", people=0)
    try:
        steps = expert_steps(env, "AGVDeliver-v2", 0)
        k = steps[-1][1]["kpis"]
        assert steps[-1][1]["is_success"] and k["agv_collisions"] == 0
        assert 0 < k["docking_error_mean"] < 10  # millimetres (-v1's expert: 10-13)
    finally:
        env.close()
