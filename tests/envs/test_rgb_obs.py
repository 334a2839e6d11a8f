"""The ``rgb`` observation: the cameras' images and the robot's own readings, nothing a robot could not sense."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401


def test_images_and_proprioception_only():
    env = gym.make("BinSort-v1", obs_mode="rgb")
    try:
        space = env.observation_space
        assert set(space.spaces) == {"top", "wrist", "proprio"}  # no "state": no defect flag, no part poses
        assert space["top"].shape == space["wrist"].shape == (84, 84, 3) and space["top"].dtype == np.uint8
        obs, _ = env.reset(seed=0)
        assert space.contains(obs)
        robot = env.unwrapped.task.robot
        q, _, _ = robot.joint_state()
        np.testing.assert_allclose(obs["proprio"][:7], q, atol=1e-6)  # joints, then the tool centre point
        np.testing.assert_allclose(obs["proprio"][7:10], robot.ee_xyz(), atol=1e-6)
        assert obs["proprio"][-1] == float(robot.tool_active)
    finally:
        env.close()


def test_cameras_and_image_size_are_chosen_and_checked():
    env = gym.make("BinSort-v1", obs_mode="rgb", cameras=["wrist"], image_size=48)
    try:
        assert set(env.observation_space.spaces) == {"wrist", "proprio"}
        obs, _ = env.reset(seed=1)
        assert obs["wrist"].shape == (48, 48, 3)
        # the policy's size renders the same view as the camera's own size, smaller
        assert obs["wrist"].mean() == pytest.approx(env.unwrapped.twin.cameras["wrist"].rgb().mean(), abs=12)
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"no camera named 'side'.*has \["):
        gym.make("ConveyorPick-v1", obs_mode="rgb", cameras=["top", "side"])
    with pytest.raises(ValueError, match=r"image_size must be 32 to 256 pixels, got 300"):
        gym.make("ConveyorPick-v1", obs_mode="rgb", image_size=300)
    with pytest.raises(ValueError, match=r"image_size must be a whole number"):
        gym.make("ConveyorPick-v1", obs_mode="rgb", image_size=64.5)
    with pytest.raises(ValueError, match=r"cameras= is a setting of obs_mode='rgb'"):
        gym.make("ConveyorPick-v1", cameras=["top"])
    with pytest.raises(ValueError, match=r"image_size= is a setting of obs_mode='rgb', not of obs_mode='state'"):
        gym.make("ConveyorPick-v1", image_size=64)
    with pytest.raises(ValueError, match=r"names a camera twice"):
        gym.make("ConveyorPick-v1", obs_mode="rgb", cameras=["top", "top"])
    with pytest.raises(ValueError, match=r"robot_meshes must be one of"):
        gym.make("ConveyorPick-v1", obs_mode="rgb", robot_meshes="cartoon")


def test_collision_meshes_change_the_look_not_the_physics():
    """The fast look (the arm's collision meshes for the cameras) steps exactly as the detailed one."""
    trajectories, looks = [], []
    for meshes in ("visual", "collision"):
        env = gym.make("ConveyorPick-v1", robot_meshes=meshes)
        try:
            obs, _ = env.reset(seed=3)
            rng = np.random.default_rng(0)
            seen = [obs]
            for _ in range(40):
                obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                seen.append(obs)
            trajectories.append(np.stack(seen))
            twin = env.unwrapped.twin
            shapes = twin.world.p.getVisualShapeData(twin.robots[0].id)
            looks.append({s[4].decode().split("/meshes/")[-1] for s in shapes if s[4]})
        finally:
            env.close()
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
    assert "visual/link1.obj" in looks[0] and "collision/link1.obj" in looks[1]
    assert not any(m.startswith("visual/") for m in looks[1])


def test_a_frozen_camera_repeats_its_last_frame_at_the_policy_size():
    env = gym.make("ConveyorPick-v1", obs_mode="rgb", image_size=32)
    try:
        env.reset(seed=0)
        cam = env.unwrapped.twin.cameras["scene"]
        good = env.unwrapped._images()["scene"]
        cam.fault = ("frozen", 0.0, np.random.default_rng(0))
        for _ in range(10):
            obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
        np.testing.assert_array_equal(obs["scene"], good)
        cam.fault = ("dropped", 0.0, np.random.default_rng(0))
        obs, *_ = env.step(np.zeros(4, np.float32))
        assert obs["scene"].shape == (32, 32, 3) and not obs["scene"].any()
    finally:
        env.close()


def test_stacked_frames_show_motion_oldest_first():
    env = gym.make("ConveyorPick-v1", obs_mode="rgb", image_size=32, frames=3)
    try:
        assert env.observation_space["scene"].shape == (32, 32, 9)
        obs, _ = env.reset(seed=0)
        first = obs["scene"]
        np.testing.assert_array_equal(first[..., 0:3], first[..., 6:9])  # the first frame stands for the earlier
        seen = [first[..., 6:9]]
        for _ in range(3):
            obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
            seen.append(obs["scene"][..., 6:9])
        np.testing.assert_array_equal(obs["scene"][..., 0:3], seen[-3])
        np.testing.assert_array_equal(obs["scene"][..., 3:6], seen[-2])
        assert not np.array_equal(seen[0], seen[-1])  # the arm moved
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs["scene"], first)  # a reset forgets the last episode's frames
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"frames must be a whole number from 1 to 8, got 9"):
        gym.make("ConveyorPick-v1", obs_mode="rgb", frames=9)
    with pytest.raises(ValueError, match=r"frames= is a setting of obs_mode='rgb'"):
        gym.make("ConveyorPick-v1", frames=2)
