"""SAC's RLPD settings: the batched critic ensemble, the target's random subset, the actor on the
ensemble's mean, actor updates every N critic updates, the entropy settings, and runs saved
with two separate critics."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

from agents.cli import run as cli  # noqa: E402
from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.nets import EnsembleMLP, mlp  # noqa: E402
from agents.sac import Backup, SACAgent, Updater, sac_losses  # noqa: E402
from agents.train import TrainError, load_policy, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()


def _cfg(**kw):
    return make_config("sac", "ToyPointGoal-v0", {"net_width": "32", "eval_episodes": "4", **kw})


def _batch(n=32, obs=6, act=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, obs, generator=g),
        torch.rand(n, act, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, obs, generator=g),
        (torch.rand(n, generator=g) < 0.2).float(),
    )


@pytest.mark.parametrize("layer_norm", [False, True])
def test_the_batched_ensemble_computes_what_separate_networks_compute(layer_norm):
    torch.manual_seed(0)
    nets = [mlp(7, 1, 16, 2, layer_norm=layer_norm) for _ in range(3)]
    for net in nets:  # weights unlike the initial ones, LayerNorm gains included
        for p in net.parameters():
            p.data.normal_()
    ens = EnsembleMLP(3, 7, 1, 16, 2, layer_norm=layer_norm)
    ens.load_state_dict(EnsembleMLP.stack_state([n.state_dict() for n in nets], layer_norm))
    x = torch.randn(5, 7)
    want = torch.stack([n(x) for n in nets])
    torch.testing.assert_close(ens(x), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ens(x, torch.tensor([2, 0])), want[[2, 0]], atol=1e-5, rtol=1e-4)  # a subset
    # members are initialised apart, as separate networks would be
    fresh = EnsembleMLP(3, 7, 1, 16, 2)
    assert not torch.allclose(fresh.weights[0][0], fresh.weights[0][1])
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleMLP(0, 7, 1, 16, 2)


def test_the_target_is_the_minimum_over_a_random_subset_of_the_critics():
    agent = SACAgent(_cfg(num_qs="10", num_min_qs="2"), 6, 2, -np.ones(2), np.ones(2))
    with torch.no_grad():  # critic k's value is k everywhere
        for w in agent.critic_target.weights:
            w.zero_()
        agent.critic_target.biases[-1].copy_(torch.arange(10.0).view(10, 1, 1))
    x, a = torch.zeros(4, 6), torch.zeros(4, 2)
    torch.manual_seed(0)
    mins = [float(agent.q_target(x, a, 2)[0]) for _ in range(400)]
    assert set(mins) <= set(range(9)) and len(set(mins)) >= 6  # the lower of two different critics, drawn anew
    assert abs(np.mean([m == 0 for m in mins]) - 0.2) < 0.07  # critic 0 is one of the two in 2/10 of draws
    assert float(agent.q_target(x, a, 10)[0]) == 0.0  # the whole ensemble: its minimum, no draw


def test_actor_on_the_mean_and_targets_without_entropy_follow_their_definitions():
    cfg = _cfg(num_qs="4", num_min_qs="4", actor_q="mean", backup_entropy="false")
    torch.manual_seed(1)
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    obs, act, rew, nxt, term = _batch()
    torch.manual_seed(5)
    _, critic, actor, _, cloning = sac_losses(agent, Backup.of(cfg), -1.0, obs, act, rew, nxt, term)
    assert cloning.tolist() == [0.0, 0.0]  # no cloning term, no readings
    torch.manual_seed(5)  # the same draws, by hand
    with torch.no_grad():
        x, nx = agent.norm(obs), agent.norm(nxt)
        na, _ = agent.sample(nx)
        q_next = agent.critic_target(torch.cat([nx, na], -1)).squeeze(-1).min(0).values  # no entropy term
        target = rew + cfg.gamma * (1 - term) * q_next
        q = agent.critic(torch.cat([x, act], -1)).squeeze(-1)
        want_critic = sum(torch.nn.functional.mse_loss(q[k], target) for k in range(4))
        a, logp = agent.sample(x)
        q_a = agent.critic(torch.cat([x, a], -1)).squeeze(-1).mean(0)
        want_actor = (agent.log_alpha.exp() * logp - q_a).mean()
    torch.testing.assert_close(critic, want_critic)
    torch.testing.assert_close(actor, want_actor)


@pytest.mark.parametrize("q_filter", [True, False])
def test_the_cloning_term_pulls_the_actor_to_the_demos_where_the_critics_prefer_them(q_filter):
    plain = _cfg(demos="demos.safetensors", batch_size="32", demo_ratio="0.25")
    cfg = _cfg(
        demos="demos.safetensors", batch_size="32", demo_ratio="0.25", bc_weight="2", bc_q_filter=str(q_filter).lower()
    )
    hp = Backup.of(cfg)
    assert hp.bc_rows == 8 and Backup.of(plain).bc_rows == 0  # the batch's last quarter is demos
    torch.manual_seed(1)
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    obs, act, rew, nxt, term = _batch()
    torch.manual_seed(5)
    _, _, without, q_plain, _ = sac_losses(agent, Backup.of(plain), -1.0, obs, act, rew, nxt, term)
    torch.manual_seed(5)
    _, _, actor, q_logged, cloning = sac_losses(agent, hp, -1.0, obs, act, rew, nxt, term)
    torch.testing.assert_close(q_logged, q_plain)  # the logged mean Q is the batch's, not the filter's
    with torch.no_grad():  # by hand: the mean action's squared distance from the demo's
        x = agent.norm(obs)[-8:]
        mean_a = torch.tanh(agent.actor(x)[:, :2])
        gap = (mean_a - act[-8:]).square().sum(-1)
        q_demo = agent.critic(torch.cat([x, act[-8:]], -1)).squeeze(-1).min(0).values
        q_mean = agent.critic(torch.cat([x, mean_a], -1)).squeeze(-1).min(0).values
        keep = (q_demo > q_mean).float() if q_filter else torch.ones(8)
    assert 0 < keep.sum() < 8 or not q_filter  # the filter decides row by row here
    torch.testing.assert_close(actor, without + 2 * (gap * keep).mean())
    # the term's readings, logged as bc_distance and bc_kept: every demo row's distance, the kept share
    torch.testing.assert_close(cloning, torch.stack([gap.mean(), keep.mean()]))
    if not q_filter:  # SAC's updates with a heavy cloning term bring the actor's mean action to the demos'
        heavy = _cfg(
            demos="demos.safetensors", batch_size="32", demo_ratio="0.25", bc_weight="100", bc_q_filter="false"
        )
        update = Updater(agent, heavy, -1.0, lambda: (obs, act, rew, nxt, term), torch.device("cpu"))
        for _ in range(150):
            update()
        with torch.no_grad():
            mean_a = torch.tanh(agent.actor(agent.norm(obs)[-8:])[:, :2])
        assert float((mean_a - act[-8:]).square().sum(-1).mean()) < 0.02 < float(gap.mean())


def test_cloning_without_demos_is_refused_naming_the_setting(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"bc_weight \(1\) needs demos"):
        _cfg(bc_weight="1")
    args = ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", str(tmp_path / "r"), "--set", "bc_weight=-1"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "bc_weight must be in [0, 100]" in err and "Traceback" not in err, err


def test_the_actor_and_temperature_move_once_per_group_of_critic_updates():
    cfg = _cfg(num_qs="5", actor_every="3", batch_size="32")
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    batch = _batch()
    update = Updater(agent, cfg, -1.0, lambda: batch, torch.device("cpu"))
    moved = []
    for _ in range(6):
        actor, critic, alpha = (copy.deepcopy(m.state_dict()) for m in (agent.actor, agent.critic, agent))
        assert update() == 1
        moved.append(
            (
                any(not torch.equal(actor[k], v) for k, v in agent.actor.state_dict().items()),
                any(not torch.equal(critic[k], v) for k, v in agent.critic.state_dict().items()),
                not torch.equal(alpha["log_alpha"], agent.log_alpha.detach()),
            )
        )
    assert [m[0] for m in moved] == [False, False, True] * 2  # the actor: every third update
    assert [m[2] for m in moved] == [False, False, True] * 2  # the temperature with it
    assert all(m[1] for m in moved)  # the critics: every update
    _critic_loss, actor_loss, alpha, _, _, _ = update.losses.tolist()
    assert actor_loss != 0.0 and alpha > 0  # the last actor update's, not a critic-only update's zeros


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("num_qs=0", "num_qs must be in [1, 64], got 0"),
        ("updates_per_step=65", "updates_per_step must be in (0, 64], got"),
        ("actor_every=0", "actor_every must be in [1, 64]"),
        ("target_entropy_scale=-0.5", "target_entropy_scale must be in [0, 10]"),
        ("actor_q=max", "actor_q: expected 'min' or 'mean'"),
    ],
)
def test_rlpd_settings_out_of_range_are_refused_naming_them(tmp_path, capsys, setting, expected):
    args = ["train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", str(tmp_path / "r"), "--set", setting]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_a_target_subset_larger_than_the_ensemble_is_refused():
    with pytest.raises(ConfigError, match=r"num_min_qs \(3\) must not exceed num_qs \(2\)"):
        _cfg(num_min_qs="3")


def test_conveyorpick_from_demos_defaults_to_two_updates_per_env_step_and_the_unfiltered_cloning_term():
    demos = {"demos": "pick.safetensors"}
    cfg = make_config("sac", "ConveyorPick-v1", demos)
    assert (cfg.updates_per_step, cfg.actor_every, cfg.critic_layernorm) == (2.0, 2, True)
    assert (cfg.bc_weight, cfg.bc_q_filter) == (1.0, False)
    # from scratch, and on the -v0 task, the SAC defaults stay (a cloning term needs demos)
    scratch = make_config("sac", "ConveyorPick-v1", {})
    assert (scratch.updates_per_step, scratch.actor_every, scratch.bc_weight) == (0.5, 1, 0.0)
    v0 = make_config("sac", "ConveyorPick-v0", demos)
    assert (v0.updates_per_step, v0.bc_weight, v0.bc_q_filter) == (0.5, 0.0, True)
    # the user's settings win, each alone
    mine = make_config("sac", "ConveyorPick-v1", {**demos, "updates_per_step": "0.5", "actor_every": "1"})
    assert (mine.updates_per_step, mine.actor_every, mine.bc_weight) == (0.5, 1, 1.0)
    assert make_config("sac", "ConveyorPick-v1", {**demos, "bc_weight": "0"}).bc_weight == 0.0
    filtered = make_config("sac", "ConveyorPick-v1", {**demos, "bc_q_filter": "true"})
    assert (filtered.bc_weight, filtered.bc_q_filter) == (1.0, True)


def test_the_conveyorpick_skill_from_scratch_defaults_to_its_measured_settings_and_the_user_overrides_them():
    cfg = make_config("sac", "ConveyorPickSkill-v1", {})
    assert cfg.env_kwargs == {"reward_type": "staged"}
    assert (cfg.target_entropy_scale, cfg.explore_groups, cfg.explore_prob) == (0.0, [[0, 1, 2], [3]], 0.01)
    assert (cfg.updates_per_step, cfg.total_steps, cfg.n_envs, cfg.gamma) == (1.0, 150_000, 8, 0.97)
    # the production task from scratch keeps SAC's own defaults
    task = make_config("sac", "ConveyorPick-v1", {})
    assert (task.env_kwargs, task.target_entropy_scale, task.explore_groups, task.updates_per_step) == (
        {},
        1.0,
        [],
        0.5,
    )
    # the earlier defaults, as the benchmark's rows measured from them set them
    earlier = {"env_kwargs": "{}", "target_entropy_scale": "1", "explore_groups": "[]", "updates_per_step": "0.5"}
    mine = make_config("sac", "ConveyorPickSkill-v1", {**earlier, "explore_prob": "0"})
    assert (mine.env_kwargs, mine.target_entropy_scale, mine.explore_groups, mine.explore_prob) == ({}, 1.0, [], 0.0)
    assert mine.updates_per_step == 0.5
    # the gripper alone explored: the user's explore_dims sets the task's explore_groups aside
    gripper = make_config("sac", "ConveyorPickSkill-v1", {"explore_dims": "[3]"})
    assert (gripper.explore_dims, gripper.explore_groups, gripper.explore_prob) == ([3], [], 0.01)
    with pytest.raises(ConfigError, match=r"explore_dims .* and explore_groups .*: give one, not both"):
        make_config("sac", "ConveyorPickSkill-v1", {"explore_dims": "[3]", "explore_groups": "[[0]]"})
    # exploration off: both settings at their empty values, or a clear refusal naming the pair
    off = make_config("sac", "ConveyorPickSkill-v1", {"explore_groups": "[]", "explore_prob": "0"})
    assert (off.explore_groups, off.explore_dims, off.explore_prob) == ([], [], 0.0)
    with pytest.raises(ConfigError, match=r"explore_groups \(\[\[0, 1, 2\], \[3\]\]\) and explore_prob \(0\) go"):
        make_config("sac", "ConveyorPickSkill-v1", {"explore_prob": "0"})


def test_a_run_with_rlpd_settings_trains_saves_and_serves_its_policy(tmp_path):
    cfg = _cfg(
        total_steps="256",
        learning_starts="64",
        num_qs="10",
        num_min_qs="2",
        actor_q="mean",
        actor_every="4",
        updates_per_step="4",
        target_entropy_scale="0.5",
        backup_entropy="false",
    )
    res = train(cfg, tmp_path / "r", quiet=True)
    assert res["step"] == 256
    folder = ckpt.resolve_checkpoint(tmp_path / "r")
    tensors = load_file(str(folder / ckpt.MODEL))
    assert tensors["model.critic.weights.0"].shape == (10, 8, 32)  # ten critics, stacked
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert np.isfinite(last["critic_loss"]) and last["alpha"] > 0
    policy, _ = load_policy(tmp_path / "r")
    assert policy(torch.zeros(1, 6)).shape == (1, 2)


def _as_two_critics(folder) -> None:
    """Rewrite a checkpoint's model as runs saved before the ensemble held it: ``q1``, ``q2`` and
    their targets as separate ``nn.Sequential`` networks."""
    path = folder / ckpt.MODEL
    tensors = load_file(str(path))
    out = {k: v for k, v in tensors.items() if not k.startswith(("model.critic.", "model.critic_target."))}
    for new, olds in (("critic", ("q1", "q2")), ("critic_target", ("q1_target", "q2_target"))):
        depth = sum(1 for k in tensors if k.startswith(f"model.{new}.weights."))
        for m, old in enumerate(olds):
            for j in range(depth):
                out[f"model.{old}.{2 * j}.weight"] = tensors[f"model.{new}.weights.{j}"][m].t().contiguous()
                out[f"model.{old}.{2 * j}.bias"] = tensors[f"model.{new}.biases.{j}"][m, 0].contiguous()
    save_file(out, str(path))
    doc = json.loads((folder / ckpt.SIDECAR).read_text())
    doc["files"][ckpt.MODEL] = ckpt.file_sha256(path)
    (folder / ckpt.SIDECAR).write_text(json.dumps(doc))


def test_runs_saved_with_two_separate_critics_still_load_and_say_why_they_cannot_resume(tmp_path, capsys):
    cfg = _cfg(total_steps="128", learning_starts="64", keep_best="false")
    train(cfg, tmp_path / "r", quiet=True)
    before, _ = load_policy(tmp_path / "r")
    x = torch.randn(8, 6)
    want = before(x)
    _as_two_critics(ckpt.resolve_checkpoint(tmp_path / "r"))
    after, _ = load_policy(tmp_path / "r")  # eval and export read the policy as before
    torch.testing.assert_close(after(x), want)
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    tensors = load_file(str(ckpt.resolve_checkpoint(tmp_path / "r") / ckpt.MODEL))
    ckpt.load_module_state(agent, tensors, "model.", "old run")  # the critics, stacked as an ensemble of two
    torch.testing.assert_close(agent.critic.weights[0][1], tensors["model.q2.0.weight"].t())
    with pytest.raises((ckpt.CheckpointError, TrainError), match="two separate critics"):
        train(_cfg(total_steps="256", learning_starts="64", keep_best="false"), tmp_path / "r", resume=True, quiet=True)


def test_the_averaged_actor_follows_the_actor_at_each_actor_update_and_is_the_policy():
    cfg = _cfg(actor_average="0.25", actor_every="2", batch_size="32")
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    assert all(torch.equal(a, b) for a, b in zip(agent.actor_avg.parameters(), agent.actor.parameters(), strict=True))
    batch = _batch()
    update = Updater(agent, cfg, -1.0, lambda: batch, torch.device("cpu"))
    for n in range(4):
        before = [p.detach().clone() for p in agent.actor_avg.parameters()]
        update()
        after = [*agent.actor_avg.parameters()]
        if n % 2 == 0:  # a critic-only update leaves the average as it was
            assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        else:  # a quarter of the way to the actor just updated
            for old, new, actor in zip(before, after, agent.actor.parameters(), strict=True):
                torch.testing.assert_close(new, 0.75 * old + 0.25 * actor.detach())
    assert not any(p.requires_grad for p in agent.actor_avg.parameters())
    x = torch.randn(5, 6)
    with torch.no_grad():
        want = torch.tanh(agent.actor_avg(agent.norm(x))[:, :2])
        online = torch.tanh(agent.actor(agent.norm(x))[:, :2])
        torch.testing.assert_close(agent.policy()(x), want)  # the box is [-1, 1]: the mean itself
    assert not torch.allclose(want, online)  # and not the actor's own


def test_a_run_with_an_averaged_actor_saves_and_serves_the_average(tmp_path):
    cfg = _cfg(total_steps="256", learning_starts="64", actor_average="0.1")
    res = train(cfg, tmp_path / "r", quiet=True)
    assert res["step"] == 256
    tensors = load_file(str(ckpt.resolve_checkpoint(tmp_path / "r") / ckpt.MODEL))
    avg = {k: v for k, v in tensors.items() if k.startswith("model.actor_avg.")}
    assert avg and not all(torch.equal(v, tensors[k.replace("actor_avg", "actor")]) for k, v in avg.items())
    policy, _ = load_policy(tmp_path / "r")
    agent = SACAgent(cfg, 6, 2, -np.ones(2), np.ones(2))
    agent.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(policy(x), agent.policy()(x))


@pytest.mark.parametrize("value", ["-0.1", "1", "nan"])
def test_an_actor_average_out_of_range_is_refused_naming_it(value):
    with pytest.raises(ConfigError, match="actor_average"):
        _cfg(actor_average=value)
