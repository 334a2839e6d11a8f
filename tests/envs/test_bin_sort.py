"""BinSort: the expert sorts by the true defect, only a part in its right bin counts, the sensor
reading is in the state (or not, with sensor=False)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from tests.experts import expert_steps


def _expert_episode(seed: int, **kwargs):
    env = gym.make("BinSort-v0", **kwargs)
    try:
        steps = expert_steps(env, "BinSort-v0", seed)
        return [r for r, _ in steps], steps[-1][1]
    finally:
        env.close()


@pytest.mark.parametrize("seed", [1, 3])  # seed 1: three of four parts defective
def test_expert_sorts_every_part_into_its_bin(seed):
    rewards, info = _expert_episode(seed)
    assert info["is_success"] and info["parts_placed"] == 4
    k = info["kpis"]
    assert k["defects_escaped"] == 0 and k["false_rejects"] == 0 and k["defects_arrived"] >= 1
    assert k["collisions"] == 0  # small (undersized) parts too are gripped clear of the belt
    assert k["good_shipped"] + k["defects_caught"] == 4
    assert k["first_pass_yield"] == pytest.approx(k["good_shipped"] / 4)
    assert sum(rewards) == pytest.approx(4.0, abs=0.05) and max(rewards) <= 1.0


def test_sparse_reward_pays_right_bins_only():
    rewards, _ = _expert_episode(1, reward_type="sparse")
    assert sorted(set(rewards)) == [0.0, 1.0] and sum(rewards) == 4


def _first_defective_on_the_belt(env):
    for seed in range(20):
        env.reset(seed=seed)
        task = env.unwrapped.task
        queued = sorted((p for p in task.twin.parts if p.state == "queued"), key=lambda p: p.arrival_time)
        if queued[0].defect is not None:
            break
    for _ in range(200):
        env.step(np.zeros(4, dtype=np.float32))
        if queued[0].state == "on_conveyor" and queued[0].reading is not None:
            return queued[0]
    raise AssertionError("no defective part reached the inspection line")


def test_a_defective_part_in_the_good_bin_is_not_sorted():
    env = gym.make("BinSort-v0", reward_type="sparse")
    try:
        part = _first_defective_on_the_belt(env)
        task = env.unwrapped.task
        c = task.bin.center
        task.twin.world.p.resetBasePositionAndOrientation(part.id, [c[0], c[1], c[2] + 0.05], [0, 0, 0, 1])
        part.state = "loose"
        total = 0.0
        for _ in range(20):
            _, r, _, _, info = env.step(np.zeros(4, dtype=np.float32))
            total += r
        assert part.state == "placed" and part.location == task.bin.name
        assert total == 0 and info["parts_placed"] == 0
        assert env.unwrapped.kpis()["defects_escaped"] == 1
    finally:
        env.close()


@pytest.mark.parametrize("sensor", [True, False])
def test_the_reading_is_in_the_state_only_with_the_sensor(sensor):
    env = gym.make("BinSort-v0", sensor=sensor)
    try:
        part = _first_defective_on_the_belt(env)
        obs = env.unwrapped._obs()
        assert obs.shape == (28,)
        reading = obs[23:25].tolist()
        if sensor:
            assert reading == [1.0, float(part.reading == "reject")]
        else:
            assert reading == [0.0, 0.0]
    finally:
        env.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sensor": "yes"}, "sensor must be true or false"), ({"evil": 1}, "BinSort has no setting 'evil'.*sensor")],
)
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("BinSort-v0", **kwargs)


def test_the_rgb_observation_carries_the_wrist_view():
    env = gym.make("BinSort-v0", obs_mode="rgb", sensor=False)
    try:
        assert env.observation_space["wrist"].shape == (84, 84, 3)
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs["wrist"], env.unwrapped.twin.cameras["wrist"].rgb())
    finally:
        env.close()


def test_the_wrist_camera_shows_each_defect_on_a_gripped_part():
    """With no sensor, the images must be enough: the wrist view of a gripped part shows its stain
    (dark pixels), its colour and its size (its share of the image)."""
    env = gym.make("BinSort-v0", sensor=False)  # stepped in state mode; the wrist camera rendered when needed
    try:
        u = env.unwrapped
        cam = u.twin.cameras["wrist"]
        seen = {}  # (part type, defect) -> (pixels of the part, mean colour, share of dark pixels)
        for seed in range(12):
            obs, _ = env.reset(seed=seed)
            expert = envs.make_expert("BinSort-v0", env)
            expert.reset()
            done = False
            while not done and len(seen) < 7:
                obs, _, term, trunc, _ = env.step(expert(obs))
                done = term or trunc
                part = u.task.target_part()
                if part is None or part.state != "held" or part.xyz[2] < 0.85:
                    continue
                key = (part.spec.name.split("-")[0], part.defect or "good")
                if key in seen:
                    continue
                shot = cam.capture()
                mask = shot.segmentation == part.id
                pixels = shot.rgb[mask].astype(float) / 255
                seen[key] = (int(mask.sum()), pixels.mean(0), float((pixels.max(1) < 0.15).mean()))
            if len(seen) == 7:
                break
    finally:
        env.close()
    assert len(seen) == 7, sorted(seen)  # both part types good, and each defect on one of them
    for (kind, defect), (area, colour, dark) in seen.items():
        good_area, good_colour, _ = seen[(kind, "good")]
        assert area > 150  # the gripped part fills a good share of the 84x84 view
        if defect == "stain":
            assert dark > 0.2
        else:
            assert dark < 0.02
        if defect == "undersize":
            assert area < 0.75 * good_area
        if defect == "discolour":
            assert np.abs(colour - good_colour).max() > 0.25
