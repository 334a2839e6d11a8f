"""WaferTransfer: the expert takes wafers round the tool without a touch; knobs and refusals."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from tests.experts import expert_steps

ENV = "WaferTransfer-v0"


def test_the_expert_takes_a_wafer_round_without_a_touch():
    env = gym.make(ENV, wafers=1)
    try:
        steps = expert_steps(env, ENV, 0)
        info = steps[-1][1]
        rewards = np.array([r for r, _ in steps])
        assert info["is_success"] and info["wafers_done"] == 1
        k = info["kpis"]
        assert k["wafers_completed"] == 1 and k["wafer_contacts"] == 0 and k["wafer_slips"] == 0
        assert 0 < k["peak_wafer_acceleration"] < 0.3 * (9.81 + 1.0 / 0.128)  # within what the vacuum holds
        assert 0 < k["process_chamber_utilisation"] < 1 and k["wafers_per_hour"] > 0
        events = [e.kind for e in env.unwrapped.twin.log.events]
        assert events.count("wafer_moved") == 3 and events.count("wafer_done") == 1
        assert rewards.max() <= 1.0 and rewards.sum() == pytest.approx(
            1.0 - steps[0][1]["progress"] + rewards[0], abs=1e-6
        )
    finally:
        env.close()


def test_a_random_policy_moves_no_wafer_round():
    env = gym.make(ENV)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(300):
            _, r, term, trunc, info = env.step(env.action_space.sample())
            assert r <= 1.0
            if term or trunc:
                break
        assert info["wafers_done"] == 0 and not info["is_success"]
    finally:
        env.close()


def test_the_wafers_knob_and_bad_settings():
    env = gym.make(ENV, wafers=3)
    try:
        assert len(env.unwrapped.twin.fab.wafers) == 3
    finally:
        env.close()
    for kwargs, message in (
        ({"wafers": 0}, "wafers must be a whole number from 1 to 3"),
        ({"wafers": True}, "wafers must be a whole number"),
        ({"speed": 1}, "WaferTransfer has no setting 'speed'"),
        ({"robot": "iiwa"}, "drives no arm"),
        ({"layout": "logistics"}, "WaferTransfer needs a layout with \\[\\[cassettes\\]\\]"),
    ):
        with pytest.raises(ValueError, match=message):
            gym.make(ENV, **kwargs)


def test_an_episode_does_not_depend_on_the_one_before():
    def observations(env, seed):
        expert = envs.make_expert(ENV, env)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        out = [obs]
        for _ in range(500):
            obs, _, term, trunc, _ = env.step(expert(obs))
            out.append(obs)
            if term or trunc:
                break
        return np.stack(out)

    fresh, used = gym.make(ENV, wafers=1), gym.make(ENV, wafers=1)
    try:
        observations(used, 4)
        np.testing.assert_array_equal(observations(fresh, 9), observations(used, 9))
        first_twin = used.unwrapped.twin
        observations(used, 9)
        assert used.unwrapped.twin is not first_twin  # each episode in a twin of its own
    finally:
        fresh.close()
        used.close()


def test_the_expert_lifts_a_wafer_carried_in_low_before_going_in():
    """A wafer on the paddle, the paddle just in front of its destination but 9 mm low with the
    vacuum off (as a learner may leave it): the expert puts the vacuum on and lifts back over the
    ledges before going in, rather than taking it for a set-down and going on down."""
    from envs.tasks.wafer_transfer import WaferTransferExpert

    env = gym.make("WaferTransfer-v2", wafers=1)
    try:
        obs, _ = env.reset(seed=0)
        expert = envs.make_expert("WaferTransfer-v2", env)
        for _ in range(1000):
            task = env.unwrapped.task
            w, h = task.current(), task.handler
            assert w is not None
            if w.held and w.stage == 0:
                th_b, d_b, hgt = WaferTransferExpert.station(task, task.fab.next_place(w))
                q = list(h.q_target)
                if abs(np.sin(q[0] - th_b)) < 3e-3 and q[1] < h.spec.min_reach + 1e-3:
                    break
            obs, *_ = env.step(expert(obs))
        else:
            pytest.fail("the expert never carried the wafer round to its destination")
        over = hgt + WaferTransferExpert.OVER
        low = [q[0], h.spec.min_reach + 0.005, over - 0.009]
        goal, vacuum, _ = expert._move(task, w, low, vac_now=False)
        assert vacuum and goal[2] == pytest.approx(over) and goal[1] is None  # up first, not in
        # back at the height, it goes in; at the place and low, it goes on down (a set-down)
        goal, vacuum, _ = expert._move(task, w, [q[0], h.spec.min_reach + 0.005, over], vac_now=True)
        assert vacuum and goal[1] == pytest.approx(d_b - h.to_paddle(w.xyz)[0])
        goal, vacuum, _ = expert._move(task, w, [th_b, goal[1], over - 0.002], vac_now=True, prev=(0, 0, 0))
        assert not vacuum and goal[2] < over - 0.006
    finally:
        env.close()
