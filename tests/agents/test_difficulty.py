"""The difficulty curriculum: easier knob settings first, the task as made last."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import envs  # noqa: E402
from agents.collect.difficulty import (  # noqa: E402
    DifficultyCurriculum,
    DifficultySettings,
    SharedStage,
    difficulty_wrappers,
)
from agents.collect.pool import StepBatch  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.runtime import EpisodeStats  # noqa: E402
from agents.train import TrainError, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


def _layout(env: gym.Env) -> tuple[int, float]:
    layout = env.unwrapped.twin.layout
    return layout.feeders[0].parts_per_episode, layout.conveyors[0].speed


def test_the_stage_moves_on_after_a_window_of_successes_and_stops_at_the_task():
    shared = SharedStage(2, DifficultySettings(window=4, threshold=0.5))
    for ok in (True, False, False):
        shared.record(0, ok)
    assert shared.stage == 0  # 3 of a 4-episode window
    shared.record(0, False)
    assert shared.stage == 0  # 1 of 4 < 0.5
    shared.record(0, True)  # the window slides: F F F T ... then T
    shared.record(0, True)
    assert shared.stage == 1 and shared.progress == 0.5
    shared.record(0, True)  # an episode of a stage the run has left: ignored
    for _ in range(4):
        shared.record(1, True)
    assert shared.stage == 2 and shared.progress == 1.0
    for _ in range(8):
        shared.record(2, False)  # the task itself: the run stays there
    assert shared.stage == 2


def test_envs_are_made_again_at_each_stage_and_end_on_the_run_s_own_kwargs():
    stages = envs.TASKS["ConveyorPick-v0"].curriculum_stages
    assert stages[0] == {"parts": 1, "belt_speed": 0.05}
    (wrap,) = difficulty_wrappers("ConveyorPick-v0", {"arrival_interval": 3.0}, stages, 1, DifficultySettings(1, 1.0))
    env = wrap(gym.make("ConveyorPick-v0", arrival_interval=3.0))
    shared = env.shared
    seen = []
    for stage in range(len(stages) + 1):
        obs, info = env.reset(seed=stage)
        assert env.observation_space.contains(obs) and info["difficulty_stage"] == stage
        seen.append(_layout(env))
        assert env.unwrapped.twin.layout.feeders[0].interval == (3.0, 3.0)  # the run's kwargs stay
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["difficulty_stages"] == len(stages)
        shared.record(stage, True)  # a window of 1 at 1.0: the next reset is the next stage
    assert seen == [(1, 0.05), (1, 0.1), (2, 0.1), (3, 0.1)]
    env.close()


def test_a_stage_that_changes_the_spaces_is_refused():
    shared = SharedStage(1, DifficultySettings())
    env = DifficultyCurriculum(
        gym.make("ToyPoint-v0"), lambda **kw: gym.make("ToyPointGoal-v0"), {}, [{"anything": 1}], shared
    )
    with pytest.raises(ValueError, match=r"difficulty stage 0 .* changes the observation or action space"):
        env.reset(seed=0)


def test_training_success_counts_the_task_as_made_only():
    stats = EpisodeStats(2)

    def batch(stage: int, success: bool) -> StepBatch:
        info = {"is_success": success, "difficulty_stage": stage, "difficulty_stages": 2}
        return StepBatch(
            env_ids=np.array([0]),
            obs=np.zeros((1, 1)),
            rewards=np.array([1.0]),
            terminated=np.array([True]),
            truncated=np.array([False]),
            infos=[info],
            finals={},
            dropped=np.array([False]),
        )

    for stage, ok in ((0, True), (0, True), (1, True), (2, False)):
        stats.step(batch(stage, ok))
    out = stats.summary()
    assert out["eased_success_rate"] == 1.0 and out["success_rate"] == 0.0
    assert out["difficulty_progress"] == 1.0 and out["episodes"] == 4


def test_a_run_with_the_difficulty_curriculum_trains_at_the_first_stage_and_evaluates_the_task(tmp_path):
    settings = {"net_width": "32", "n_envs": "2", "n_steps": "64", "n_minibatches": "2", "eval_episodes": "2"}
    cfg = make_config("ppo", "ConveyorPick-v0", {**settings, "total_steps": "1536", "difficulty_curriculum": "true"})
    result = train(cfg, tmp_path / "run", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "difficulty_progress" in r]
    assert logged and all(r["difficulty_progress"] == 0.0 for r in logged)  # random arms place no part
    assert "success_rate" not in logged[-1]  # no episode of the task itself yet
    # the final evaluation plays the task as made: three parts
    assert result["eval_episodes"] == 2 and all(r["parts_arrived"] <= 3 for r in result["episodes"])


def test_bad_difficulty_curriculum_settings_are_refused():
    with pytest.raises(TrainError, match=r"ToyPoint-v0 lists no easier settings.*ConveyorPick-v0"):
        train(make_config("ppo", "ToyPoint-v0", {"difficulty_curriculum": "true"}), "/nonexistent/x", quiet=True)
    with pytest.raises(ConfigError, match="difficulty_curriculum is for PPO and SAC"):
        make_config("bc", "ConveyorPick-v0", {"difficulty_curriculum": "true"})
    with pytest.raises(ConfigError, match="not backend=ray"):
        make_config("sac", "ConveyorPick-v0", {"difficulty_curriculum": "true", "backend": "ray"})
    with pytest.raises(ConfigError, match="do not mix"):
        make_config("sac", "ConveyorPick-v0", {"difficulty_curriculum": "true", "curriculum": "true", "demos": "d"})
    with pytest.raises(ConfigError, match="difficulty_threshold must be in"):
        make_config("sac", "ConveyorPick-v0", {"difficulty_threshold": "0"})
