"""Residual RL: SAC learning a correction to a frozen base policy (an imitation student)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.cli import run as cli  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.train import TrainError, export_onnx, load_policy, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()

TINY = {"net_width": "32", "eval_episodes": "4", "log_every": "64", "keep_best": "false"}


def _cfg(algo, env_id="ToyPoint-v0", **kw):
    return make_config(algo, env_id, {**TINY, **{k: str(v) for k, v in kw.items()}})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny PPO policy on ToyPoint-v0, standing in for an imitation student."""
    out = tmp_path_factory.mktemp("base") / "ppo"
    train(_cfg("ppo", total_steps=256, n_steps=64, n_envs=2), out, quiet=True)
    return out


def test_the_residual_agent_starts_as_its_base_and_its_run_stands_alone(tmp_path, base):
    out = tmp_path / "residual"
    cfg = _cfg("sac", total_steps=128, learning_starts=10_000, base_policy=base, residual_scale=0.3)
    train(cfg, out, quiet=True)  # no update yet: the correction's mean is zero
    saved = json.loads((out / "config.json").read_text())
    assert saved["base_config"]["algo"] == "ppo" and saved["base_policy"].startswith(str(base))
    x = torch.randn(16, 2) * 2
    base_policy, _ = load_policy(base)
    residual, _ = load_policy(out)
    torch.testing.assert_close(residual(x), base_policy(x))
    # the run's checkpoints hold the base: it evaluates and exports with the base's folder gone
    copy = tmp_path / "base-copy"
    shutil.copytree(base, copy)
    shutil.rmtree(base)
    try:
        again, _ = load_policy(out)
        torch.testing.assert_close(again(x), residual(x))
        info = export_onnx(out, tmp_path / "residual.onnx")
        assert info["max_abs_diff"] < 1e-4
    finally:
        shutil.copytree(copy, base)


def test_the_correction_is_learned_within_its_scale_around_the_base(tmp_path, base):
    out = tmp_path / "residual"
    train(_cfg("sac", total_steps=512, learning_starts=64, base_policy=base, residual_scale=0.25), out, quiet=True)
    base_policy, _ = load_policy(base)
    residual, _ = load_policy(out)
    x = torch.randn(256, 2) * 2
    diff = (residual(x) - base_policy(x)).abs()
    assert diff.max() > 1e-3  # it learned something
    assert diff.max() <= 0.25 * 2.0 + 1e-5  # never more than the scale (ToyPoint's half-range is 2)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(rows[-1]["critic_loss"])


def test_a_narrow_start_and_critic_burn_in_keep_the_base_acting_and_in_the_run(tmp_path, base):
    from agents.common import checkpoint as ckpt
    from agents.sac import SACAgent, Updater

    cfg = _cfg("sac", total_steps=256, learning_starts=0, base_policy=base, actor_init_std=0.05, actor_starts=192)
    cfg.base_config = json.loads((base / "config.json").read_text())
    agent = SACAgent(cfg, 2, 2, -2 * np.ones(2), 2 * np.ones(2))
    torch.manual_seed(0)
    mean, log_std = agent.actor(torch.randn(512, 2) * 3).split(2, -1)
    spread = (-5.0 + 3.5 * (torch.tanh(log_std) + 1)).exp()  # the actor's log-std range, -5 to 2
    torch.testing.assert_close(spread, torch.full_like(spread, 0.05))  # in every state, before the tanh
    assert mean.abs().max() == 0  # the correction starts at zero
    batch = (torch.randn(64, 2), torch.rand(64, 2) * 2 - 1, torch.randn(64), torch.randn(64, 2), torch.zeros(64))
    update = Updater(agent, cfg, -2.0, lambda: batch, torch.device("cpu"))
    actor0 = [p.detach().clone() for p in agent.actor.parameters()]
    critic0 = [p.detach().clone() for p in agent.critic.parameters()]
    update.actor_on = False  # burning in: critic updates only
    for _ in range(3):
        update()
    assert all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(critic0, agent.critic.parameters(), strict=True))
    update.actor_on = True
    update()
    assert not all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters(), strict=True))

    # a run: its base is evaluated at step 0 and kept unless a later evaluation beats it
    out = tmp_path / "residual"
    narrow = {"learning_starts": 0, "actor_init_std": 0.05, "actor_starts": 192}
    train(_cfg("sac", total_steps=256, base_policy=base, eval_every=128, keep_best="true", **narrow), out, quiet=True)
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "progress_episodes" in r]
    assert [r["step"] for r in evals][:1] == [0] and len(evals) >= 3
    kept = ckpt.read_sidecar(ckpt.best_checkpoint(out))
    assert kept["best"]["progress_success_rate"] == max(r["progress_success_rate"] for r in evals)
    with pytest.raises(ConfigError, match=r"actor_init_std \(0.005\) must be 0 \(the network's own\) or above"):
        _cfg("sac", actor_init_std=0.005)


def test_a_base_for_another_env_or_layout_is_refused_naming_the_mismatch(tmp_path, base, monkeypatch, capsys):
    with pytest.raises(TrainError, match=r"made for ToyPoint-v0, this run trains on ToyPointGoal-v0"):
        train(_cfg("sac", "ToyPointGoal-v0", total_steps=64, base_policy=base), tmp_path / "a", quiet=True)
    from agents.collect import demos as demos_io

    layouts = iter([["x (m)", "y (m)"], ["y (m)", "x (m)"]])
    monkeypatch.setattr(demos_io, "observation_features", lambda *a, **k: next(layouts))
    with pytest.raises(TrainError, match=r"another observation layout: number 0 is 'x \(m\)' for it, 'y \(m\)'"):
        train(_cfg("sac", total_steps=64, base_policy=base), tmp_path / "b", quiet=True)
    monkeypatch.undo()
    args = ["train", "--env", "ToyPoint-v0", "--algo", "sac", "--out", str(tmp_path / "c"), "--set"]
    assert cli([*args, f"base_policy={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    assert cli([*args, "residual_scale=-0.1", "--set", f"base_policy={base}"]) == 2
    assert "residual_scale must be in (0, 2]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="base_policy and demos do not mix"):
        _cfg("sac", base_policy=base, demos="d.safetensors")
    with pytest.raises(ConfigError, match="base_config is copied in"):
        make_config("sac", "ToyPoint-v0", {"base_config": '{"algo": "ppo"}'})
    assert not any((tmp_path / d).exists() and (tmp_path / d / "checkpoints").exists() for d in "abc")


def test_the_exploration_noise_bench_scores_a_policy_under_a_residual_runs_first_corrections(tmp_path, base):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "bench/exploration_noise.py", "--env", "FactoryReach-v0", "--episodes", "3"]
    run = lambda *a: subprocess.run([*cmd, *a], capture_output=True, text=True, timeout=300, cwd=root)  # noqa: E731
    proc = run("--policy", "expert", "--scales", "0", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in proc.stdout.splitlines()}
    clean = "noise.FactoryReach-v0.expert.nominal.dims_0-1-2.scale_0"
    assert figures[f"{clean}.success"] == 1.0 and figures[f"{clean}.ended_early"] == 0.0
    assert "noise.FactoryReach-v0.expert.nominal.dims_0-1-2.scale_2.success" in figures
    doc = json.loads((tmp_path / "noise.json").read_text())
    assert [r["scale"] for r in doc["rows"]] == [0.0, 2.0] and doc["rows"][0]["successes"] == 3 and doc["commit"]
    # refused, naming what is wrong, before any episode runs
    for args, says in (
        (("--policy", "expert", "--dims", "7"), "--dims [7]: FactoryReach-v0's action has dimensions 0 to 2"),
        (("--policy", "expert", "--scales", "-0.1"), "--scales [-0.1]"),
        (("--policy", str(tmp_path / "nope")), "no such run or checkpoint folder"),
        (("--policy", str(base)), "made for ToyPoint-v0, not FactoryReach-v0"),
    ):
        bad = run(*args, "--out", str(tmp_path / "bad"))
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
        assert not bad.stdout
