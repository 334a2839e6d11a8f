"""Fine-tuning: SAC whose actor starts as an imitation student (``init_policy``) and moves from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.cli import run as cli  # noqa: E402
from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.train import TrainError, load_policy, train  # noqa: E402
from tests.agents import toy_envs  # noqa: E402

toy_envs.register()

TINY = {"net_width": "32", "eval_episodes": "4", "log_every": "64", "keep_best": "false"}


def _cfg(algo, env_id="ToyFarLine-v0", **kw):
    return make_config(algo, env_id, {**TINY, **{k: str(v) for k, v in kw.items()}})


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A BC student of the expert that always pushes right on ToyFarLine-v0 (it succeeds)."""
    root = tmp_path_factory.mktemp("student")
    demos = root / "demos.safetensors"
    toy_envs.write_demos(demos, "ToyFarLine-v0", lambda obs: np.array([1.0]), episodes=10, noise=0.3)
    out = root / "bc"
    train(_cfg("bc", demos=demos, total_steps=400), out, quiet=True)
    return out


def _norm(folder):
    tensors = ckpt.load_tensors(folder, ckpt.MODEL, ckpt.read_sidecar(folder), "cpu")
    return {k: v for k, v in tensors.items() if k.startswith("model.norm.")}


def test_the_actor_starts_as_its_student_and_keeps_its_normaliser(tmp_path, student):
    # critics only (the actor is due after the run ends): the policy is the student's, to the bit
    out = tmp_path / "held"
    narrow = {"learning_starts": 0, "actor_init_std": 0.05, "init_policy": student}
    cfg = _cfg("sac", total_steps=256, actor_starts=10_000, eval_every=128, keep_best="true", **narrow)
    train(cfg, out, quiet=True)
    saved = json.loads((out / "config.json").read_text())
    assert saved["init_policy"] == str(ckpt.resolve_policy(student))  # the exact checkpoint it started from
    x = torch.randn(64, 2) * 2
    student_policy, _ = load_policy(student)
    tuned, _ = load_policy(out)
    torch.testing.assert_close(tuned(x), student_policy(x))
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "progress_episodes" in r]
    assert evals[0]["step"] == 0 and evals[0]["progress_success_rate"] == 1.0  # the student's own score first
    rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "critic_loss" in r]
    assert rows and np.isfinite(rows[-1]["critic_loss"])  # the critics learned meanwhile

    # the actor on from the start: it moves from the student, its normaliser does not
    moved = tmp_path / "moved"
    train(_cfg("sac", total_steps=256, actor_starts=0, **narrow), moved, quiet=True)
    policy, _ = load_policy(moved)
    assert (policy(x) - student_policy(x)).abs().max() > 1e-4
    theirs, ours = _norm(ckpt.resolve_policy(student)), _norm(ckpt.resolve_checkpoint(moved))
    assert theirs.keys() == ours.keys() and theirs
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value)


def test_a_student_that_cannot_start_the_actor_is_refused_naming_why(tmp_path, student, capsys):
    with pytest.raises(TrainError, match=r"init_policy .*: made for ToyFarLine-v0, this run trains on ToyPoint-v0"):
        train(_cfg("sac", "ToyPoint-v0", total_steps=64, init_policy=student), tmp_path / "a", quiet=True)
    with pytest.raises(TrainError, match=r"its net_width is 32, this run's is 64; set net_width=32"):
        train(_cfg("sac", total_steps=64, init_policy=student, net_width=64), tmp_path / "b", quiet=True)
    sac_run = tmp_path / "sac"
    train(_cfg("sac", total_steps=64, learning_starts=32), sac_run, quiet=True)
    with pytest.raises(TrainError, match=r"a sac run; the actor starts as a BC or DAgger student"):
        train(_cfg("sac", total_steps=64, init_policy=sac_run), tmp_path / "c", quiet=True)
    with pytest.raises(ConfigError, match="base_policy and init_policy do not mix"):
        _cfg("sac", init_policy=student, base_policy=student)
    args = ["train", "--env", "ToyFarLine-v0", "--algo", "sac", "--out", str(tmp_path / "d"), "--set"]
    assert cli([*args, f"init_policy={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert f"init_policy: {tmp_path / 'nowhere'}: no such run or checkpoint folder" in err and "Traceback" not in err
    assert not any((tmp_path / d / "checkpoints").exists() for d in "abcd")


@pytest.mark.parametrize("q_filter", [True, False])
def test_the_cloning_term_pulls_the_actor_back_to_the_student_on_every_state(q_filter):
    from agents.sac import Backup, SACAgent, sac_losses

    cfg = _cfg("sac", init_policy="student", batch_size=32, bc_weight=2, bc_q_filter=str(q_filter).lower())
    hp = Backup.of(cfg)
    assert hp.anchored and hp.bc_rows == 0
    assert not Backup.of(_cfg("sac", init_policy="student")).anchored  # no weight, no anchor
    torch.manual_seed(1)
    agent = SACAgent(cfg, 2, 1, -np.ones(1), np.ones(1))
    assert agent.anchor is not None and not any(p.requires_grad for p in agent.anchor.parameters())
    with torch.no_grad():  # the actor has moved from the student it started as
        for p in agent.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs, act = torch.randn(32, 2), torch.rand(32, 1) * 2 - 1
    rew, nxt, term = torch.randn(32), torch.randn(32, 2), torch.zeros(32)
    plain = Backup.of(_cfg("sac", init_policy="student", batch_size=32))
    torch.manual_seed(5)
    _, _, without, _, _ = sac_losses(agent, plain, -1.0, obs, act, rew, nxt, term)
    torch.manual_seed(5)
    _, _, actor, _, cloning = sac_losses(agent, hp, -1.0, obs, act, rew, nxt, term)
    # by hand: on all 32 states, the mean action's squared distance from the student's
    x = agent.norm(obs)
    mean_a = torch.tanh(agent.actor(x)[:, :1])
    with torch.no_grad():
        student_a = torch.tanh(agent.anchor(x)[:, :1])
        q_student = agent.critic(torch.cat([x, student_a], -1)).squeeze(-1).min(0).values
        q_mean = agent.critic(torch.cat([x, mean_a], -1)).squeeze(-1).min(0).values
        keep = (q_student > q_mean).float() if q_filter else torch.ones(32)
    assert 0 < keep.sum() < 32 or not q_filter  # the filter decides state by state here
    term = 2 * ((mean_a - student_a).square().sum(-1) * keep).mean()
    torch.testing.assert_close(actor, without + term)
    distance = (mean_a - student_a).square().sum(-1).mean()
    torch.testing.assert_close(cloning, torch.stack([distance, keep.mean()]).detach())
    # and it trains the actor: its gradient is the term's, on the kept states (the filter's
    # choice is a constant, not a wall to the gradient)
    params = list(agent.actor.parameters())
    got = torch.autograd.grad(actor - without, params)
    want = torch.autograd.grad(term, params)
    assert all(float(w.abs().max()) > 0 for w in want[-2:])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    with pytest.raises(ConfigError, match=r"bc_weight \(1\) needs demos \(--demos FILE\) or init_policy"):
        _cfg("sac", bc_weight=1)


def test_a_fine_tuned_run_resumes_and_exports_without_its_students_folder(tmp_path, student):
    import shutil

    from agents.train import export_onnx

    copy = tmp_path / "student"
    shutil.copytree(student, copy)
    out = tmp_path / "tuned"
    sets = {"learning_starts": 0, "actor_init_std": 0.05, "bc_weight": 1, "checkpoint_every": 128}
    train(_cfg("sac", total_steps=128, init_policy=copy, **sets), out, quiet=True)
    shutil.rmtree(copy)  # the student was copied into the run: its anchor too
    train(_cfg("sac", total_steps=256, init_policy=copy, **sets), out, resume=True, quiet=True)
    assert json.loads((out / "eval.json").read_text())["step"] >= 256
    # the cloning term's readings in the run's metrics, beside the losses
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "actor_loss" in r]
    assert logged and all(r["bc_distance"] >= 0 and 0 <= r["bc_kept"] <= 1 for r in logged)
    folder = ckpt.resolve_checkpoint(out)
    tensors = ckpt.load_tensors(folder, ckpt.MODEL, ckpt.read_sidecar(folder), "cpu")
    assert any(k.startswith("model.anchor.") for k in tensors)
    info = export_onnx(out, tmp_path / "tuned.onnx")
    assert info["max_abs_diff"] < 1e-4
