"""SAC's held exploration on chosen action dimensions (temporally-extended epsilon-greedy): the
excursions, the actions the replay stores, and the settings refused."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from agents.cli import run as cli  # noqa: E402
from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.sac import HeldExploration  # noqa: E402
from agents.train import train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


def _cfg(**kw):
    return make_config("sac", "ToyPointGoal-v0", {"net_width": "32", "eval_episodes": "4", **kw})


def test_excursions_hold_one_value_on_the_chosen_dimensions_and_leave_the_rest():
    ex = HeldExploration(4, [1], prob=0.05, hold=10, seed=3)
    ids = np.arange(4)
    taken, runs = [], []
    for _ in range(4000):
        u = np.full((4, 3), 0.5, dtype=np.float32)
        ex.apply(ids, u)
        assert (u[:, [0, 2]] == 0.5).all()  # the other dimensions stay the policy's
        taken.append(u[:, 1].copy())
    taken = np.array(taken)
    for e in range(4):
        explored = taken[:, e] != 0.5
        # one value held through each excursion: it changes only where an excursion starts or ends
        changes = np.flatnonzero(np.diff(taken[:, e]) != 0)
        runs += np.diff(np.concatenate([[-1], changes, [len(taken) - 1]]))[
            [explored[i] for i in np.concatenate([[0], changes + 1])]
        ].tolist()
        assert 0.05 < explored.mean() < 0.35  # about prob * mean length / (1 + prob * mean length): 0.22
        assert np.abs(taken[explored, e]).max() <= 1.0
    assert min(runs) >= 1 and max(runs) <= 20  # back-to-back excursions can join, never more than two
    assert 4.0 < np.median(runs) < 8.0


def test_excursions_follow_the_seed_and_only_the_envs_stepped():
    a, b = HeldExploration(3, [0], 0.3, 5, seed=1), HeldExploration(3, [0], 0.3, 5, seed=1)
    for _ in range(50):
        ua, ub = np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32)
        a.apply(np.array([0, 2]), ua)
        b.apply(np.array([0, 2]), ub)
        assert (ua == ub).all()
    assert a.left[1] == 0  # env 1 was never stepped, so it never explored


def test_groups_explored_apart_draw_their_own_excursions():
    # ConveyorPick's [[0, 1, 2], [3]]: the motion commands move together, the gripper on its own
    a = HeldExploration(64, [0, 1, 2], 0.05, 10, seed=5, stream=0)
    b = HeldExploration(64, [3], 0.05, 10, seed=5, stream=1)
    one = HeldExploration(64, [0, 1, 2], 0.05, 10, seed=5)  # explore_dims' one group: the same draws
    ids = np.arange(64)
    motion, grip = [], []
    for _ in range(500):
        u, same = np.full((64, 4), 0.5, np.float32), np.full((64, 4), 0.5, np.float32)
        a.apply(ids, u)
        b.apply(ids, u)
        one.apply(ids, same)
        assert (u[:, :3] == same[:, :3]).all()
        assert ((u[:, :3] == 0.5).all(1) | (u[:, :3] != 0.5).all(1)).all()  # a group's dimensions move together
        motion.append((u[:, :3] != 0.5).all(1))
        grip.append(u[:, 3] != 0.5)
    motion, grip = np.array(motion), np.array(grip)
    assert 0.1 < motion.mean() < 0.35 and 0.1 < grip.mean() < 0.35
    assert (motion & ~grip).mean() > 0.05 and (grip & ~motion).mean() > 0.05  # each explores without the other
    assert abs((motion & grip).mean() - motion.mean() * grip.mean()) < 0.02  # drawn apart: independent


@pytest.mark.parametrize(("name", "value"), [("explore_dims", "[0]"), ("explore_groups", "[[0]]")])
def test_a_run_stores_the_explored_actions_it_took(tmp_path, name, value):
    # every env explores dimension 0 from its first learned step, one value for the whole run
    cfg = _cfg(total_steps="256", learning_starts="64", explore_prob="1", explore_hold="1000", **{name: value})
    res = train(cfg, tmp_path / "r", quiet=True)
    assert res["step"] == 256
    replay = load_file(str(ckpt.resolve_checkpoint(tmp_path / "r") / ckpt.REPLAY))
    actions = replay["replay.actions"]  # envs x transitions x action dimensions
    learned = actions[:, 64 // actions.shape[0] + 2 :]
    assert (learned[:, :, 0] == learned[:, :1, 0]).all()  # held
    assert (learned[:, :, 1] != learned[:, :1, 1]).any()  # the policy's own dimension moves


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"explore_dims": "[1]"}, r"explore_dims \(\[1\]\) and explore_prob \(0\) go together"),
        ({"explore_prob": "0.1"}, r"explore_dims \(\[\]\) and explore_prob \(0.1\) go together"),
        ({"explore_dims": "[1, 1]", "explore_prob": "0.1"}, "names a dimension more than once"),
        ({"explore_dims": "3", "explore_prob": "0.1"}, "explore_dims: expected a JSON list, got"),
        ({"explore_dims": "[2, -1]", "explore_prob": "0.1"}, r"explore_dims\[1\]: must be greater than or equal to 0"),
        ({"explore_dims": "[0]", "explore_prob": "1.5"}, "explore_prob must be in"),
        ({"explore_dims": "[0]", "explore_prob": "0.1", "explore_hold": "0"}, "explore_hold must be in"),
        ({"explore_groups": "[[0], [1]]"}, r"explore_groups \(\[\[0\], \[1\]\]\) and explore_prob \(0\) go together"),
        (
            {"explore_dims": "[0]", "explore_groups": "[[1]]", "explore_prob": "0.1"},
            r"explore_dims \(\[0\]\) and explore_groups \(\[\[1\]\]\): give one, not both",
        ),
        ({"explore_groups": "[[0, 1], [1]]", "explore_prob": "0.1"}, "names a dimension more than once"),
        ({"explore_groups": "[[0], []]", "explore_prob": "0.1"}, "has an empty group"),
        (
            {"explore_groups": "[0, 1]", "explore_prob": "0.1"},
            r"explore_groups\[0\]: expected a JSON list, got 0; explore_groups\[1\]: expected a JSON list, got 1",
        ),
        ({"explore_groups": "[[0, -1]]", "explore_prob": "0.1"}, r"explore_groups\[0\]\[1\]: must be greater"),
    ],
)
def test_bad_exploration_settings_are_refused_naming_them(settings, expected):
    with pytest.raises(ConfigError, match=expected):
        _cfg(**settings)


@pytest.mark.parametrize(
    ("setting", "shown"), [("explore_dims=[7]", "[7]"), ("explore_groups=[[0], [7]]", "[[0], [7]]")]
)
def test_a_dimension_the_action_lacks_is_refused_naming_the_env(tmp_path, capsys, setting, shown):
    args = ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--steps", "64", "--out", str(tmp_path / "r")]
    args += ["--set", setting, "--set", "explore_prob=0.1"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    name = setting.split("=")[0]
    assert f"{name} ({shown}): FactoryReach-v0's action has" in err and "Traceback" not in err, err
