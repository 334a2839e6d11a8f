"""Tiny in-process training runs, checkpoints, resume, ONNX export and bad checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.cli import run as cli  # noqa: E402
from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.buffers import ReplayBuffer  # noqa: E402
from agents.common.checkpoint import resolve_checkpoint  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.runtime import evaluate  # noqa: E402
from agents.common.spaces import UnsupportedSpaceError, flatten_batch, goal_slices  # noqa: E402
from agents.train import TrainError, export_onnx, load_policy, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()

TINY = {"net_width": "32", "eval_episodes": "10", "log_every": "256"}


def _cfg(algo, env_id, **kw):
    return make_config(algo, env_id, {**TINY, **{k: str(v) for k, v in kw.items()}})


def _mean_return(policy, env_id, episodes=10):
    rows = evaluate(policy, env_id, {}, episodes, 1, torch.device("cpu"))
    return float(np.mean([r["return"] for r in rows]))


@pytest.mark.slow
def test_ppo_learns_a_toy_env_and_writes_its_run_folder(tmp_path):
    cfg = _cfg("ppo", "ToyPoint-v0", total_steps=6144, n_envs=2, n_steps=256, n_minibatches=4, lr=3e-3)
    res = train(cfg, tmp_path / "ppo", quiet=True)
    out = tmp_path / "ppo"
    for name in ("config.json", "metrics.jsonl", "eval.json", "learning_curve.png", "checkpoints/latest"):
        assert (out / name).exists(), name
    assert res["step"] == 6144 and res["eval_episodes"] == 10
    policy, _ = load_policy(out)
    zero = torch.nn.Module()
    zero.forward = lambda x: torch.zeros(len(x), 1)
    # The untrained (zero-action) policy stays where it starts: mean |x| about 1.5 over 30 steps.
    assert _mean_return(policy, "ToyPoint-v0") > _mean_return(zero, "ToyPoint-v0") + 10
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"collect_s", "update_s", "update_fraction", "policy_loss"} <= set(rows[-1])


@pytest.mark.slow
def test_sac_her_learns_a_toy_goal_env(tmp_path):
    cfg = _cfg("sac", "ToyPointGoal-v0", total_steps=3000, learning_starts=300, updates_per_step=1, batch_size=128)
    res = train(cfg, tmp_path / "sac", quiet=True)
    assert res["eval_success_rate"] >= 0.8  # random actions reach the goal in about 10% of episodes


@pytest.mark.parametrize(
    ("algo", "env_id"), [("ppo", "ToyPoint-v0"), ("sac", "ToyPointGoal-v0"), ("sac", "ToyPoint-v0")]
)
def test_tiny_runs_write_a_complete_run_folder(tmp_path, algo, env_id):
    extra = {"n_steps": 64, "n_envs": 2} if algo == "ppo" else {"learning_starts": 64}
    res = train(_cfg(algo, env_id, total_steps=256, eval_episodes=4, **extra), tmp_path / "r", quiet=True)
    assert res["step"] == 256 and res["eval_episodes"] == 4 and "eval_success_rate" in res
    for name in ("config.json", "metrics.jsonl", "eval.json", "learning_curve.png", "checkpoints/latest"):
        assert (tmp_path / "r" / name).exists(), name
    assert (tmp_path / "r" / "tb").is_dir()


def test_her_relabels_with_a_later_achieved_goal_of_the_same_episode():
    obs_space = toy_envs.PointGoalEnv().observation_space
    sl = goal_slices(obs_space)
    env = toy_envs.PointGoalEnv()
    calls = []

    def reward_fn(ag, dg):
        calls.append(1)
        return torch.as_tensor(env.compute_reward(ag.numpy(), dg.numpy(), {}))

    buf = ReplayBuffer(1000, 2, 6, 2, torch.device("cpu"), goal_slices=sl, her_ratio=0.999, reward_fn=reward_fn)
    # two envs, episodes of 5 steps; the achieved goal at step t of episode e is (100 e + t, env)
    for t in range(20):
        ep, k = divmod(t, 5)
        ag = torch.tensor([[100.0 * ep + k + 1, e] for e in range(2)])
        o = {
            "achieved_goal": ag - torch.tensor([1.0, 0.0]),
            "desired_goal": torch.full((2, 2), -9.0),
            "observation": ag,
        }
        nx = {"achieved_goal": ag, "desired_goal": torch.full((2, 2), -9.0), "observation": ag}
        f = lambda d: torch.as_tensor(flatten_batch(obs_space, {k: v.numpy() for k, v in d.items()}))  # noqa: E731
        buf.add(f(o), f(nx), torch.zeros(2, 2), torch.full((2,), -1.0), torch.zeros(2), torch.full((2,), k == 4))
    obs, _, rew, nxt, _ = buf.sample(4000)
    goal, achieved = obs[:, sl["desired_goal"]], nxt[:, sl["achieved_goal"]]
    relabelled = goal[:, 0] > -9
    assert relabelled.float().mean() > 0.99
    g, a = goal[relabelled], achieved[relabelled]
    assert torch.all(g[:, 1] == a[:, 1])  # same env
    assert torch.all(
        torch.div(g[:, 0] - 1, 100, rounding_mode="floor") == torch.div(a[:, 0] - 1, 100, rounding_mode="floor")
    )
    assert torch.all(g[:, 0] >= a[:, 0])  # a later (or the same) step of that episode
    assert torch.all(rew[relabelled][(g == a).all(1)] == 0.0)  # goal reached -> reward recomputed
    assert calls


def test_bc_clones_the_reach_expert(tmp_path):
    from agents.collect.demos import load, record

    demos = tmp_path / "reach.safetensors"
    info = record("FactoryReach-v0", 30, demos, seed=0, noise=0.1)
    tensors, meta = load(demos)
    assert meta["env_id"] == "FactoryReach-v0" and meta["episodes"] == 30
    assert tensors["obs"].shape[0] == info["steps"] == tensors["actions"].shape[0]
    cfg = make_config("bc", "FactoryReach-v0", {"demos": str(demos), "total_steps": "1500", "eval_episodes": "20"})
    res = train(cfg, tmp_path / "bc", quiet=True)
    assert res["eval_success_rate"] >= 0.9
    losses = [json.loads(x) for x in (tmp_path / "bc" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1]["val_loss"] < losses[0]["val_loss"]


def test_checkpoint_round_trip_and_resume(tmp_path):
    out = tmp_path / "run"
    cfg = _cfg("sac", "ToyPointGoal-v0", total_steps=400, learning_starts=100, checkpoint_every=200, eval_episodes=0)
    train(cfg, out, quiet=True)
    folder = resolve_checkpoint(out)
    doc = ckpt.read_sidecar(folder)
    assert doc["step"] == 400 and doc["env_id"] == "ToyPointGoal-v0" and doc["git_commit"] != ""
    assert {"model.safetensors", "replay.safetensors"} <= set(doc["files"])
    saved = ckpt.load_tensors(folder, ckpt.MODEL, doc)
    assert any(k.startswith("optim.critic.") for k in saved)

    with pytest.raises(TrainError, match="--resume"):
        train(cfg, out, quiet=True)
    longer = _cfg("sac", "ToyPointGoal-v0", total_steps=600, eval_episodes=0)
    res = train(longer, out, resume=True, quiet=True)
    assert res["step"] == 600
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 600
    # The resumed run started from the saved optimiser state, not from scratch.
    doc2 = ckpt.read_sidecar(resolve_checkpoint(out))
    step_key = "optim.critic.0.step"
    t2 = ckpt.load_tensors(resolve_checkpoint(out), ckpt.MODEL, doc2)
    assert float(t2[step_key]) > float(saved[step_key])
    with pytest.raises(TrainError, match="cannot resume"):
        train(_cfg("ppo", "ToyPointGoal-v0"), out, resume=True, quiet=True)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg = _cfg("ppo", "ToyPoint-v0", total_steps=512, n_steps=128, eval_episodes=0)
    train(cfg, tmp_path / "run", quiet=True)
    assert cli(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "p.onnx")]) == 0
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"))
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.shape[1], outp.name, outp.shape[1]) == ("obs", 2, "action", 1)
    policy, _ = load_policy(tmp_path / "run")
    x = np.random.default_rng(0).normal(0, 5, (64, 2)).astype(np.float32)
    got = sess.run(["action"], {"obs": x})[0]
    np.testing.assert_allclose(got, policy(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    assert np.all(np.abs(got) <= 2.0)  # in the env's action units
    info = export_onnx(tmp_path / "run", tmp_path / "q.onnx")
    assert info["max_abs_diff"] <= 1e-5


def test_corrupt_or_missing_checkpoints_are_refused(tmp_path, capsys):
    cfg = _cfg("ppo", "ToyPoint-v0", total_steps=256, n_steps=128, eval_episodes=0)
    train(cfg, tmp_path / "run", quiet=True)
    folder = resolve_checkpoint(tmp_path / "run")
    model = folder / ckpt.MODEL
    data = bytearray(model.read_bytes())
    data[-20] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="sha256"):
        load_policy(tmp_path / "run")
    assert cli(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()
    (folder / ckpt.SIDECAR).write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="corrupt JSON"):
        load_policy(folder)
    with pytest.raises(ckpt.CheckpointError, match="no such"):
        load_policy(tmp_path / "nowhere")


def test_bad_settings_and_spaces_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="did you mean lr"):
        make_config("ppo", "ToyPoint-v0", {"lrr": "1"})
    with pytest.raises(ConfigError, match="gamma: expected float"):
        make_config("ppo", "ToyPoint-v0", {"gamma": "high"})
    with pytest.raises(UnsupportedSpaceError, match="image observations"):
        train(_cfg("ppo", "ToyImage-v0"), tmp_path / "img", quiet=True)
    assert cli(["train", "--env", "FactoryRaech-v0", "--algo", "ppo", "--out", str(tmp_path / "x")]) == 2
    assert "FactoryReach-v0" in capsys.readouterr().err
    assert cli(["train", "--env", "FactoryReach-v0", "--algo", "bc", "--out", str(tmp_path / "y")]) == 2
    assert "twin demos" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_path_trains_and_keeps_storage_on_the_gpu(tmp_path):
    cfg = _cfg("sac", "ToyPointGoal-v0", total_steps=600, learning_starts=100, device="cuda", eval_episodes=5)
    res = train(cfg, tmp_path / "sac", quiet=True)
    assert res["device"].startswith("cuda")
    buf = ReplayBuffer(100, 1, 6, 2, torch.device("cuda"))
    assert buf.obs.is_cuda
    cfg = _cfg("ppo", "ToyPoint-v0", total_steps=1024, n_steps=256, device="cuda", eval_episodes=5, compile=True)
    res = train(cfg, tmp_path / "ppo", quiet=True)
    assert res["device"].startswith("cuda")
    policy, _ = load_policy(tmp_path / "ppo", "cuda")
    assert next(policy.parameters()).is_cuda
