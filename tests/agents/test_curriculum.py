"""The reverse curriculum over demonstrations: its starts, how they move, and its statistics."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.collect import demos as demos_io  # noqa: E402
from agents.collect.curriculum import (  # noqa: E402
    CurriculumSettings,
    ReverseCurriculum,
    SharedStart,
    Track,
    curriculum_wrappers,
    tracks_from_demos,
)
from agents.collect.pool import StepBatch  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.runtime import EpisodeStats  # noqa: E402
from agents.train import train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


def _push_right(obs):
    return np.array([1.0], np.float32)


def _far_line(tmp_path, episodes=2):
    path = tmp_path / "far.safetensors"
    toy_envs.write_demos(path, "ToyFarLine-v0", _push_right, episodes=episodes, noise=0.3)
    tensors, _ = demos_io.load(path)
    return path, tensors


def _episode(env, policy):
    obs, info = env.reset()
    start, n = info["curriculum_start"], 0
    while True:
        obs, _, term, trunc, info = env.step(policy(obs))
        n += 1
        if term or trunc:
            return start, bool(info["is_success"]), n, trunc


def test_episodes_start_on_the_demonstrations_states_and_move_back_as_the_agent_succeeds(tmp_path):
    _, tensors = _far_line(tmp_path, episodes=1)
    (track,) = tracks_from_demos(tensors)
    obs_rows = tensors["obs"].numpy()
    settings = CurriculumSettings(step_back=0.25, window=2, threshold=1.0, real_starts=0.0)
    env = ReverseCurriculum(gym.make("ToyFarLine-v0"), [Track(track.seed, track.actions)], settings)
    first = track.start_at(0.75)  # a quarter from the end
    obs, info = env.reset(seed=5)
    np.testing.assert_allclose(obs, obs_rows[first], atol=1e-6)  # the demonstration's own state there
    assert info["curriculum_start"] == pytest.approx(first / track.length)

    starts = []
    for _ in range(12):
        start, success, _, _ = _episode(env, _push_right)
        assert success
        starts.append(start)
    # two successes per start, then a quarter of the demonstration further back, down to its start
    expected = [track.start_at(f) / track.length for f in (0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.0, 0.0)]
    assert starts[:8] == pytest.approx(expected)
    assert env.done and env.progress == 1.0
    # the curriculum is over: real initial states on fresh seeds, not the demonstration's
    xs = []
    for _ in range(5):
        obs, info = env.reset()
        assert info["curriculum_start"] == 0.0
        xs.append(float(obs[0]))
    assert len(set(xs)) == 5 and obs_rows[0][0] not in xs


def test_a_start_the_agent_fails_from_stays_and_its_episodes_are_cut_short(tmp_path):
    _, tensors = _far_line(tmp_path, episodes=1)
    (track,) = tracks_from_demos(tensors)
    settings = CurriculumSettings(
        step_back=0.25, window=2, threshold=1.0, real_starts=0.0, horizon_ratio=1.0, min_horizon=3
    )
    env = ReverseCurriculum(gym.make("ToyFarLine-v0"), [Track(track.seed, track.actions)], settings)
    start = track.start_at(env.fraction)
    for _ in range(4):
        _, success, steps, truncated = _episode(env, lambda obs: np.array([-1.0], np.float32))
        assert not success and truncated
        assert steps == max(3, track.length - start)  # the demonstration's remaining steps, times 1
    assert env.fraction == 0.75


def test_the_envs_of_a_run_share_one_start_and_mix_in_real_starts(tmp_path):
    _, tensors = _far_line(tmp_path, episodes=5)
    tracks = tracks_from_demos(tensors)
    settings = CurriculumSettings(step_back=0.25, window=4, threshold=0.75, real_starts=0.0)
    a, b = (wrap(gym.make("ToyFarLine-v0")) for wrap in curriculum_wrappers(tracks, 2, settings))
    assert a.shared is b.shared and a.fraction == 0.75
    a.reset(seed=1)
    b.reset(seed=2)
    for _ in range(2):  # two successes on each env make the four the start needs
        _episode(a, _push_right)
        _episode(b, _push_right)
    assert a.fraction == b.fraction == 0.5
    # an episode that began at the old start does not count towards the new one
    shared = SharedStart(settings)
    shared.record(0.5, True)
    assert shared.fraction == 0.75 and shared.progress == 0.25

    mixed = ReverseCurriculum(gym.make("ToyFarLine-v0"), tracks, CurriculumSettings(real_starts=0.5))
    mixed.reset(seed=1)
    starts = [_episode(mixed, lambda obs: np.array([0.0], np.float32))[0] for _ in range(60)]
    real = sum(s == 0.0 for s in starts) / len(starts)
    assert 0.3 < real < 0.7


def test_workers_in_other_processes_move_the_same_start(tmp_path):
    from agents.collect.vec import make_vec_env

    _, tensors = _far_line(tmp_path, episodes=3)
    settings = CurriculumSettings(step_back=0.5, window=2, threshold=1.0, real_starts=0.0)
    wrappers = curriculum_wrappers(tracks_from_demos(tensors), 2, settings)
    vec = make_vec_env("ToyFarLine-v0", 2, wrapper=wrappers, workers=2)
    try:
        vec.reset(seed=0)
        progress = []
        for _ in range(60):
            _, _, _, _, info = vec.step(np.ones((2, 1), np.float32))
            progress.append(float(np.max(info["curriculum_progress"])))
        assert progress[-1] == 1.0  # walked back to the beginning and mastered there, across processes
    finally:
        vec.close()


def test_the_replay_reaches_the_recorded_state_on_a_factory_task(tmp_path):
    path = tmp_path / "pick.safetensors"
    demos_io.record("ConveyorPick-v0", 1, path, seed=3, noise=0.1)
    tensors, _ = demos_io.load(path)
    (track,) = tracks_from_demos(tensors)
    settings = CurriculumSettings(step_back=0.5, real_starts=0.0)  # mid-episode: parts on the belt
    env = ReverseCurriculum(gym.make("ConveyorPick-v0"), [Track(track.seed, track.actions)], settings)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, tensors["obs"].numpy()[track.start_at(0.5)], atol=1e-5)
    env.close()


def _batch(info, done=True):
    return StepBatch(
        np.array([0]), None, np.array([1.0]), np.array([done]), np.array([False]), [info], {}, np.array([False])
    )


def test_training_success_counts_real_starts_only():
    stats = EpisodeStats(1)
    stats.step(_batch({"is_success": True, "curriculum_start": 0.6, "curriculum_progress": 0.4}))
    stats.step(_batch({"is_success": False, "curriculum_start": 0.0, "curriculum_progress": 0.4}))
    s = stats.summary()
    assert s["success_rate"] == 0.0 and s["curriculum_success_rate"] == 1.0
    assert s["curriculum_progress"] == 0.4 and s["curriculum_start_mean"] == pytest.approx(0.3)
    assert s["episodes"] == 2


def test_a_tiny_curriculum_run_logs_its_progress(tmp_path):
    demos, _ = _far_line(tmp_path, episodes=4)
    settings = {"net_width": "32", "eval_episodes": "5", "log_every": "200", "total_steps": "600"}
    cfg = make_config("sac", "ToyFarLine-v0", {**settings, "demos": str(demos), "curriculum": "true", "n_envs": "2"})
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result["step"] >= 600
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("curriculum_progress" in r for r in rows)


def test_a_curriculum_needs_demos_of_the_same_env(tmp_path, capsys):
    with pytest.raises(ConfigError, match="curriculum needs demos"):
        make_config("sac", "ToyFarLine-v0", {"curriculum": "true"})
    with pytest.raises(ConfigError, match="not backend=ray"):
        make_config("sac", "ToyFarLine-v0", {"curriculum": "true", "demos": "x", "backend": "ray"})
    demos, _ = _far_line(tmp_path, episodes=1)
    cfg = make_config("sac", "ToyPoint-v0", {"demos": str(demos), "curriculum": "true"})
    with pytest.raises(demos_io.DemosError, match="recorded on ToyFarLine-v0"):
        train(cfg, tmp_path / "run", quiet=True)


def test_the_cli_asks_for_demos_with_a_curriculum(tmp_path, capsys):
    from agents.cli import run as cli

    assert cli(["train", "--env", "ToyFarLine-v0", "--algo", "sac", "--curriculum", "--out", str(tmp_path / "a")]) == 2
    assert "--curriculum is for --algo sac with --demos" in capsys.readouterr().err
