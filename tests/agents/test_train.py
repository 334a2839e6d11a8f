"""Tiny in-process training runs, checkpoints, resume, ONNX export and bad checkpoints."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

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


@pytest.mark.parametrize(("algo", "setting", "expected"), [("sac", 0, "left"), ("ppo", 0, "left"), ("sac", 2, 2)])
def test_the_learner_s_cpu_threads(tmp_path, algo, setting, expected):
    """The learner takes the cores its env workers leave free (at least one), or
    ``learner_threads`` of them where set."""
    import os

    cores = len(os.sched_getaffinity(0))
    want = {"every": cores, "left": max(1, cores - 1)}.get(expected, expected)
    extra = {"n_steps": 64} if algo == "ppo" else {"learning_starts": 64}
    cfg = _cfg(algo, "ToyPoint-v0", total_steps=128, eval_episodes=0, n_envs=2, workers=1, **extra)
    cfg.learner_threads = setting
    before = torch.get_num_threads()
    try:
        train(cfg, tmp_path / "r", quiet=True)
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


def test_her_relabels_with_a_later_achieved_goal_of_the_same_episode():
    obs_space = toy_envs.PointGoalEnv().observation_space
    sl = goal_slices(obs_space)
    env = toy_envs.PointGoalEnv()
    calls = []

    def reward_fn(ag, dg):
        calls.append(1)
        return torch.as_tensor(env.compute_reward(ag.numpy(), dg.numpy(), {}))

    buf = ReplayBuffer(1000, 2, 6, 2, torch.device("cpu"), goal_slices=sl, her_ratio=0.999, reward_fn=reward_fn)
    f = lambda d: torch.as_tensor(flatten_batch(obs_space, {k: v.numpy() for k, v in d.items()}))  # noqa: E731
    # Envs advance at their own pace (asynchronous collection): env 0 adds a step every round,
    # env 1 every other round. Episodes last 5 steps; the achieved goal at step k of episode e
    # of env i is (100 e + k + 1, i).
    steps = [0, 0]
    for rnd in range(40):
        ids = np.array([0, 1]) if rnd % 2 == 0 else np.array([0])
        rows = []
        for i in ids:
            ep, k = divmod(steps[i], 5)
            rows.append(([100.0 * ep + k + 1, float(i)], k == 4))
            steps[i] += 1
        ag = torch.tensor([r[0] for r in rows])
        o = {
            "achieved_goal": ag - torch.tensor([1.0, 0.0]),
            "desired_goal": torch.full_like(ag, -9.0),
            "observation": ag,
        }
        nx = {"achieved_goal": ag, "desired_goal": torch.full_like(ag, -9.0), "observation": ag}
        m = len(ids)
        buf.add(
            ids, f(o), f(nx), torch.zeros(m, 2), torch.full((m,), -1.0), torch.zeros(m), np.array([r[1] for r in rows])
        )
    assert buf.t_host.tolist() == [40, 20] and len(buf) == 60
    obs, _, rew, nxt, *_ = buf.sample(4000)
    goal, achieved = obs[:, sl["desired_goal"]], nxt[:, sl["achieved_goal"]]
    relabelled = goal[:, 0] > -9
    assert relabelled.float().mean() > 0.99
    assert 0.25 < (achieved[:, 1] == 1).float().mean() < 0.42  # env 1 holds a third of the transitions
    g, a = goal[relabelled], achieved[relabelled]
    assert torch.all(g[:, 1] == a[:, 1])  # same env
    assert torch.all(
        torch.div(g[:, 0] - 1, 100, rounding_mode="floor") == torch.div(a[:, 0] - 1, 100, rounding_mode="floor")
    )  # same episode
    assert torch.all(g[:, 0] >= a[:, 0])  # a later (or the same) step of that episode
    assert torch.all(rew[relabelled][(g == a).all(1)] == 0.0)  # goal reached -> reward recomputed
    assert calls
    # An episode cut short (its worker died) is closed: relabelling stays inside what was stored.
    buf.add(
        np.array([1]), f(o)[:1], f(nx)[:1], torch.zeros(1, 2), torch.full((1,), -1.0), torch.zeros(1), np.array([False])
    )
    buf.end_episodes(np.array([0, 1]))
    assert int(buf.ep_end[1, 20]) == 20 and buf.ep_start_host.tolist() == [40, 21]


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
    # its training seconds count the first run's (the wall-clock saved at step 400) and its own
    assert res["train_seconds"] > doc["timers"]["wall"] > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines]
    assert steps == sorted(steps) and steps[-1] == 600
    # its clock goes on from the first run's: the curve against wall-clock never steps back
    times = [x["time"] for x in lines]
    assert times == sorted(times) and times[-1] >= doc["timers"]["wall"]
    # The resumed run started from the saved optimiser state, not from scratch.
    doc2 = ckpt.read_sidecar(resolve_checkpoint(out))
    step_key = "optim.critic.0.step"
    t2 = ckpt.load_tensors(resolve_checkpoint(out), ckpt.MODEL, doc2)
    assert float(t2[step_key]) > float(saved[step_key])
    with pytest.raises(TrainError, match="cannot resume"):
        train(_cfg("ppo", "ToyPointGoal-v0"), out, resume=True, quiet=True)


def test_a_resume_after_a_crash_continues_the_curve_and_clears_what_kills_left(tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(
        "sac",
        "ToyPointGoal-v0",
        total_steps=400,
        learning_starts=50,
        checkpoint_every=100,
        log_every=50,
        eval_episodes=0,
    )
    train(cfg, out, quiet=True)
    root = out / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000000300", "step-0000000400"]
    # as if the run had died after its step-300 checkpoint, during a prune and a checkpoint write
    (root / "latest").write_text("step-0000000300\n")
    half = root / "step-0000000500"
    half.mkdir()
    (half / ".model.safetensors.abc123").write_bytes(b"")  # a temporary file the kill left
    trash = root / ".trash-step-0000000100-999"
    trash.mkdir()
    (trash / "checkpoint.json").write_text("{}")
    longer = _cfg("sac", "ToyPointGoal-v0", total_steps=600, eval_episodes=0)
    train(longer, out, resume=True, quiet=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 600, steps  # no step twice: the curve continues
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000000500", "step-0000000600"]
    assert all((p / "checkpoint.json").is_file() for p in root.glob("step-*"))
    assert not list(root.glob("step-*/.*"))  # no stray temporary files


def test_onnx_export_matches_torch(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    cfg = _cfg("ppo", "ToyPoint-v0", total_steps=512, n_steps=128, eval_episodes=0)
    train(cfg, tmp_path / "run", quiet=True)
    capsys.readouterr()
    assert cli(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "p.onnx")]) == 0
    assert "input obs [batch, 2] -> action [batch, 1]" in capsys.readouterr().out.replace("\n", " ")
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
    with pytest.raises(ConfigError, match="gamma: expected a float"):
        make_config("ppo", "ToyPoint-v0", {"gamma": "high"})
    with pytest.raises(
        UnsupportedSpaceError, match=r"observation\[.obs.\]: images must be 32 to 256 pixels a side, got 8x8"
    ):
        train(_cfg("ppo", "ToyImage-v0"), tmp_path / "img", quiet=True)
    assert cli(["train", "--env", "FactoryRaech-v0", "--algo", "ppo", "--out", str(tmp_path / "x")]) == 2
    assert "FactoryReach-v0" in capsys.readouterr().err
    assert cli(["train", "--env", "FactoryReach-v0", "--algo", "bc", "--out", str(tmp_path / "y")]) == 2
    assert "twin demos" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_path_trains_and_keeps_storage_on_the_gpu(tmp_path, capsys):
    # SAC with HER on the device: acting and each whole update replay as CUDA graphs
    cfg = _cfg("sac", "ToyPointGoal-v0", total_steps=600, learning_starts=100, device="cuda", eval_episodes=5)
    res = train(cfg, tmp_path / "sac", quiet=True)
    assert res["device"].startswith("cuda")
    buf = ReplayBuffer(100, 1, 6, 2, torch.device("cuda"))
    assert buf.obs.is_cuda
    # PPO with graphs (the default), and eagerly with --compile (the fallback)
    for name, extra in (("ppo", {}), ("ppo-compiled", {"cuda_graph": False, "compile": True})):
        cfg = _cfg("ppo", "ToyPoint-v0", total_steps=1024, n_steps=256, device="cuda", eval_episodes=5, **extra)
        res = train(cfg, tmp_path / name, quiet=True)
        assert res["device"].startswith("cuda")
        policy, _ = load_policy(tmp_path / name, "cuda")
        assert next(policy.parameters()).is_cuda
    assert "capture failed" not in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_training_survives_a_killed_env_worker_and_says_so(tmp_path, capsys, algo):
    flag = tmp_path / "kill"
    flag.touch()  # the first env to reach its 5th step SIGKILLs its worker
    extra = {"n_steps": 64} if algo == "ppo" else {"learning_starts": 64}
    cfg = _cfg(algo, "ToyFaulty-v0", total_steps=768, n_envs=4, workers=2, eval_episodes=0, log_every=128, **extra)
    cfg.env_kwargs = {"kill_flag": str(flag), "after": 5}
    res = train(cfg, tmp_path / "run", quiet=True)
    assert res["step"] >= 768 and res["workers_restarted"] == 1 and res["episodes_dropped"] == 2
    err = capsys.readouterr().err
    assert "died (killed by SIGKILL); restarting it with fresh envs (2 episode(s) dropped" in err
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["workers_restarted"] == 1.0 and rows[-1]["episodes_dropped"] >= 1


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_writes_a_final_checkpoint_and_leaves_no_workers(tmp_path, sig, code):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "agents.cli", "train", "--env", "FactoryReach-v0", "--algo", "sac"]
    cmd += ["--steps", "200000", "--envs", "2", "--workers", "2", "--out", str(out), "--set", "log_every=100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(sig).name} at step" in err and "--resume" in err
    assert "Traceback" not in err
    doc = ckpt.read_sidecar(resolve_checkpoint(out))
    assert 200 <= doc["step"] < 200000
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_optimiser_state_from_a_cuda_graph_run_loads_on_the_cpu():
    """Capturable (CUDA-graph) optimisers save their flags; a resume keeps the resuming run's own."""
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_tensors("adam", opt)
    meta = json.loads(json.dumps(meta))  # as written in checkpoint.json
    meta["param_groups"][0].update(capturable=True, fused=None, lr=2e-4)  # what a graph run on a GPU writes
    fresh = torch.optim.Adam(net.parameters(), lr=torch.tensor(1e-3), foreach=False)
    ckpt.load_optimizer("adam", fresh, tensors, meta)
    group = fresh.param_groups[0]
    assert group["capturable"] is False and group["foreach"] is False
    assert torch.is_tensor(group["lr"]) and float(group["lr"]) == pytest.approx(2e-4)
    fresh.step()  # and it runs
    with pytest.raises(ckpt.CheckpointError, match="parameter groups"):
        ckpt.load_optimizer("adam", fresh, tensors, {**meta, "param_groups": meta["param_groups"] * 2})


def test_rl_from_demos_mixes_half_demos_into_every_batch():
    from agents.common.buffers import DemoBuffer, mixed_sample

    def online(b):  # obs, actions, rewards, next obs, terminated, discount
        return torch.zeros(b, 2), torch.zeros(b, 1), torch.zeros(b), torch.zeros(b, 2), torch.zeros(b), torch.zeros(b)

    demos = DemoBuffer(torch.ones(50, 2), torch.ones(50, 1), torch.ones(50), torch.ones(50, 2), torch.ones(50), "cpu")
    for ratio, want in ((0.5, 128), (0.25, 64)):
        obs, _, rewards, *_ = mixed_sample(online, demos, 256, ratio)()
        assert len(obs) == 256 and int(rewards.sum()) == want and int(obs[:, 0].sum()) == want
        assert rewards[-want:].eq(1).all()  # the demos come last, whole rows


@pytest.mark.slow
def test_rl_from_demos_learns_what_random_exploration_never_finds(tmp_path):
    demos = tmp_path / "far.safetensors"
    toy_envs.write_demos(demos, "ToyFarLine-v0", lambda obs: np.array([1.0]), episodes=10)
    settings = {"total_steps": 1500, "learning_starts": 100, "updates_per_step": 1, "batch_size": 128, "lr": 3e-3}
    with_demos = train(_cfg("sac", "ToyFarLine-v0", demos=demos, **settings), tmp_path / "rlpd", quiet=True)
    assert with_demos["eval_success_rate"] >= 0.9
    cfg = json.loads((tmp_path / "rlpd" / "config.json").read_text())
    assert cfg["critic_layernorm"] is True and cfg["demo_ratio"] == 0.5
    # the same run without demos: the reward is never seen
    plain = train(_cfg("sac", "ToyFarLine-v0", **settings), tmp_path / "plain", quiet=True)
    assert plain["eval_success_rate"] == 0.0


def test_rl_from_demos_refuses_demos_it_cannot_use(tmp_path, capsys):
    from agents.collect.demos import DemosError

    demos = tmp_path / "far.safetensors"
    toy_envs.write_demos(demos, "ToyFarLine-v0", lambda obs: np.array([1.0]), episodes=2)
    with pytest.raises(DemosError, match="recorded on 'ToyFarLine-v0', training is on 'ToyPoint-v0'"):
        train(_cfg("sac", "ToyPoint-v0", demos=demos, total_steps=64), tmp_path / "a", quiet=True)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(demos), "pt") as f:
        meta = f.metadata()
    tensors = {k: v for k, v in load_file(str(demos)).items() if k not in ("taken", "rewards")}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    with pytest.raises(DemosError, match="holds no executed transitions"):
        train(_cfg("sac", "ToyFarLine-v0", demos=old, total_steps=64), tmp_path / "b", quiet=True)
    assert (
        cli(["train", "--env", "ToyFarLine-v0", "--algo", "ppo", "--demos", str(demos), "--out", str(tmp_path / "c")])
        == 2
    )
    assert "--demos is for --algo bc" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_evaluations_during_training_log_the_deterministic_policy(tmp_path, algo):
    out = tmp_path / algo
    extra = {"n_steps": 64} if algo == "ppo" else {}
    cfg = _cfg(algo, "ToyPoint-v0", total_steps=640, eval_every=256, progress_episodes=3, **extra)
    result = train(cfg, out, quiet=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "progress_success_rate" in r]
    # at the first step past 256 and 512, and once more at the end
    assert len(evals) == 3 and evals[-1]["step"] == result["step"]
    assert all(r["progress_episodes"] == 3 and 0.0 <= r["progress_success_rate"] <= 1.0 for r in evals)
    assert 0 < result["progress_eval_seconds"] <= result["train_seconds"]
    assert (out / "learning_curve.png").stat().st_size > 0


def test_the_best_policy_of_the_evaluations_is_kept_and_stands_for_the_run(tmp_path):
    out = tmp_path / "run"
    cfg = _cfg("sac", "ToyPoint-v0", total_steps=768, eval_every=128, progress_episodes=3, learning_starts=64)
    result = train(cfg, out, quiet=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "progress_success_rate" in r]
    # the best: highest success, then return; a later evaluation wins a tie
    top = max(evals, key=lambda r: (r["progress_success_rate"], r["progress_return_mean"], r["step"]))
    assert result["policy_step"] == result["best"]["step"] == top["step"]
    assert result["best"]["progress_return_mean"] == top["progress_return_mean"]
    folder = ckpt.resolve_policy(out)
    assert folder.name == f"best-step-{top['step']:010d}" and ckpt.best_checkpoint(out) == folder
    assert len(list((out / "checkpoints").glob("best-step-*"))) == 1
    assert ckpt.read_sidecar(folder)["best"]["progress_success_rate"] == top["progress_success_rate"]
    assert resolve_checkpoint(out).name.startswith("step-")  # a resume goes on from the latest weights
    # the kept weights are the policy loaded for the run, for `twin eval` and `twin export` too
    policy, doc = load_policy(out)
    assert doc["step"] == top["step"]
    from agents.evaluation.runner import policy_spec

    assert policy_spec(str(out)).path == str(folder.resolve())
    info = export_onnx(out, tmp_path / "best.onnx")
    assert info["best"] and info["step"] == top["step"]
    # the final evaluation is the kept policy's: the same episodes again
    again = evaluate(policy, "ToyPoint-v0", {}, 10, 1, torch.device("cpu"))
    assert [r["return"] for r in again] == pytest.approx([r["return"] for r in result["episodes"]], abs=1e-4)
    # a damaged pointer is named, not followed
    from agents.evaluation.runner import PolicyError

    (out / "checkpoints" / "best").write_text("../../elsewhere\n")
    with pytest.raises(
        PolicyError, match=re.escape("checkpoints/best: names '../../elsewhere', which is not a complete best-policy")
    ):
        policy_spec(str(out))
    with pytest.raises(ckpt.CheckpointError, match="not a complete best-policy checkpoint"):
        load_policy(out)


def test_keep_best_off_or_no_evaluations_leaves_the_final_weights(tmp_path):
    off = train(
        _cfg("sac", "ToyPoint-v0", total_steps=384, eval_every=128, progress_episodes=2, keep_best="false"),
        tmp_path / "off",
        quiet=True,
    )
    assert off["policy_step"] == off["step"] and "best" not in off
    assert ckpt.best_checkpoint(tmp_path / "off") is None
    assert ckpt.resolve_policy(tmp_path / "off") == resolve_checkpoint(tmp_path / "off")


def test_a_run_s_best_is_ranked_by_success_then_return_and_later_wins_ties(tmp_path):
    from agents.common.runtime import Run

    scores = iter([(0.5, 1.0), (0.9, 0.0), (0.2, 9.0), (0.9, 0.0), (0.9, -1.0)])
    kept = []

    class Agent:
        def policy(self):
            return torch.nn.Linear(1, 1)

    def evaluator(net):
        success, ret = next(scores)
        return [{"success": success, "return": ret, "length": 1}]

    run = Run(tmp_path, 500, quiet=True)
    run.schedule_evals(100, evaluator, keep=lambda agent, step, score: kept.append((step, score)))
    for step in (100, 200, 300, 400, 500):
        run.maybe_evaluate(step, Agent())
    run.close()
    assert [step for step, _ in kept] == [100, 200, 400]
    assert run.best == {"progress_success_rate": 0.9, "progress_return_mean": 0.0, "step": 400}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("best", 0.0) for r in rows] == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_a_wall_clock_budget_keeps_back_the_longest_evaluation_s_length(tmp_path, monkeypatch):
    """Training stops early enough that the held-out evaluation at its end fits in the budget,
    even a little longer than the longest before it."""
    from agents.common import runtime
    from agents.common.runtime import Run

    now = [1000.0]  # the run's clock, moved by hand: no test waits on the wall clock
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: now[0])

    class Agent:
        def policy(self):
            return torch.nn.Linear(1, 1)

    lengths = iter([1.5, 0.5])

    def evaluator(net):
        now[0] += next(lengths)
        return [{"success": 1.0, "return": 0.0, "length": 1}]

    run = Run(tmp_path, 10**6, quiet=True)
    run.max_seconds = 10.0
    assert not run.out_of_time()
    run.schedule_evals(1, evaluator)
    run.maybe_evaluate(1, Agent())  # 1.5 s
    run.maybe_evaluate(2, Agent())  # 0.5 s: the reserve stays the longest
    assert run.eval_reserve == 1.5 and run.elapsed() == 2.0 and not run.out_of_time()
    now[0] += run.max_seconds - run.elapsed() - 1.5 * run.RESERVE_MARGIN - 0.01
    assert not run.out_of_time()
    now[0] += 0.02  # 1.25 x 1.5 s left: the last evaluation might not fit
    assert run.elapsed() < run.max_seconds - 1.5 and run.out_of_time()
    run.schedule_evals(0, evaluator)
    assert not run.out_of_time()  # no evaluation to come: nothing kept back
    run.close()


def test_a_resumed_run_keeps_the_best_of_the_steps_it_resumes_from(tmp_path):
    out = tmp_path / "run"
    settings = {"eval_every": 128, "progress_episodes": 2, "learning_starts": 64, "checkpoint_every": 256}
    train(_cfg("sac", "ToyPoint-v0", total_steps=256, **settings), out, quiet=True)
    first = ckpt.read_sidecar(ckpt.best_checkpoint(out))
    # a best chosen after the checkpoint (a run killed before its next one) is dropped on resume
    late = tmp_path / "late"
    import shutil

    shutil.copytree(ckpt.best_checkpoint(out), late)
    doc = json.loads((late / ckpt.SIDECAR).read_text())
    doc["step"] = 10_000
    (late / ckpt.SIDECAR).write_text(json.dumps(doc))
    shutil.rmtree(ckpt.best_checkpoint(out))
    shutil.copytree(late, out / "checkpoints" / "best-step-0000010000")
    (out / "checkpoints" / "best").write_text("best-step-0000010000\n")
    resumed = train(_cfg("sac", "ToyPoint-v0", total_steps=384, **settings), out, resume=True, quiet=True)
    assert resumed["best"]["step"] in (256, 384) and resumed["best"]["step"] != 10_000
    assert not (out / "checkpoints" / "best-step-0000010000").exists()
    # a best from before the checkpoint is kept, and the resumed evaluations must beat it
    out2 = tmp_path / "run2"
    train(_cfg("sac", "ToyPoint-v0", total_steps=256, **settings), out2, quiet=True)
    before = ckpt.read_sidecar(ckpt.best_checkpoint(out2))
    resumed2 = train(_cfg("sac", "ToyPoint-v0", total_steps=384, **settings), out2, resume=True, quiet=True)
    rows = [json.loads(line) for line in (out2 / "metrics.jsonl").read_text().splitlines()]
    after = [r for r in rows if "progress_success_rate" in r and r["step"] > 256]
    beaten = [
        r
        for r in after
        if (r["progress_success_rate"], r["progress_return_mean"])
        >= (before["best"]["progress_success_rate"], before["best"]["progress_return_mean"])
    ]
    want = beaten[-1]["step"] if beaten else before["step"]
    assert resumed2["best"]["step"] == want
    assert first["best"] and before["best"]


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_a_wall_clock_budget_ends_training_like_the_step_budget(tmp_path, algo):
    out = tmp_path / algo
    extra = {"n_steps": 64} if algo == "ppo" else {"learning_starts": 64}
    cfg = _cfg(algo, "ToyPoint-v0", total_steps=10**9, max_seconds=3, eval_every=10**8, progress_episodes=2, **extra)
    t0 = time.perf_counter()
    result = train(cfg, out, quiet=True)
    assert time.perf_counter() - t0 < 60
    assert result["ended_by"] == "max_seconds" and 3 <= result["run_seconds"] < 30
    assert 0 < result["step"] < 10**9 and result["eval_episodes"] == 10  # the final evaluation ran
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == result["step"] and "progress_success_rate" in rows[-1]  # the last evaluation
    doc = ckpt.read_sidecar(resolve_checkpoint(out))
    assert doc["step"] == result["step"] and doc["timers"]["wall"] >= 3
    # resumed, the budget counts the run's earlier life: nothing is left of it
    again = train(_cfg(algo, "ToyPoint-v0", total_steps=10**9, max_seconds=3, **extra), out, resume=True, quiet=True)
    assert again["ended_by"] == "max_seconds" and again["run_seconds"] >= doc["timers"]["wall"]
    per_iter = 64 if algo == "ppo" else 1
    assert again["step"] - result["step"] <= per_iter
