"""Factory Twin's SAC against Stable-Baselines3's on the same env, same machine, same run.

For each seed: ``twin train --env ENV --algo sac`` as a user runs it (its per-task defaults, its
final evaluation on the 100 fixed seeds included in the command's wall-clock), then SB3's SAC for
the same number of env steps, evaluated deterministically on the same 100 seeds. On a goal env
(dict observations) SB3 gets ``HerReplayBuffer`` (future strategy, 4 sampled goals); on any other
its ``MlpPolicy``. SB3 keeps its own defaults otherwise (2 x 256 networks, one update per env
step).

Both are also evaluated while they train, every ``--eval-every`` env steps, on the same 20
held-out seeds (the twin's progress seeds; the deterministic policy), and the seconds of training
to the first evaluation at ``--target`` success, those evaluations left out, give the ratio of
time to the same success (SB3's over ours: above 1, ours gets there sooner). A run that never
reaches it is said so, and the ratio is taken over the seeds where both did.

One ``name value unit`` line per figure; medians over seeds. ``--json FILE`` writes every run's
numbers and curve.

``--sb3-run DIR`` trains SB3's SAC alone, for the first of ``--seeds``, into ``DIR`` as ``twin
train`` writes a run (``config.json``, ``metrics.jsonl`` with the held-out evaluations,
``eval.json`` with the final one on the 100 fixed seeds): how ``bench/learning.py``'s SB3 cells
run, so that SB3's row lands in the baselines table beside ours from the same bench run.

Usage: python bench/bench_vs_sb3.py [--env panda_gym:PandaReach-v3] [--steps N] [--seeds 0 1 2]
       [--target 0.8] [--eval-every N] [--set KEY=VALUE ...] [--json FILE] [--sb3-run DIR [--show-config]]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agents.common.config import ConfigError, make_config
from agents.common.runtime import EVAL_SEED_BASE, PROGRESS_SEED_BASE  # the fixed and the held-out seeds

PROGRESS_EPISODES = 20
"""Held-out episodes per evaluation during training (``progress_episodes``' default)."""


def line(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:.4g} {unit}", flush=True)


def first_at(curve: list[tuple[int, float, float]], target: float) -> tuple[int | None, float | None]:
    """(env steps, seconds of training) at the first evaluation whose success reaches ``target``."""
    return next(((step, secs) for step, secs, s in curve if s >= target), (None, None))


def twin_run(env_id: str, steps: int | None, seed: int, eval_every: int, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "agents.cli", "train", "--env", env_id, "--algo", "sac", "--seed", str(seed)]
        cmd += ["--device", "cpu", "--out", str(run)] + (["--steps", str(steps)] if steps else [])
        cmd += ["--set", f"eval_every={eval_every}", "--set", f"progress_episodes={PROGRESS_EPISODES}"]
        for s in sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        doc = json.loads((run / "eval.json").read_text())
        curve = []
        for text in (run / "metrics.jsonl").read_text().splitlines():
            row = json.loads(text)
            if row.get("progress_success_rate") is not None and row.get("time") is not None:
                secs = float(row["time"]) - float(row.get("eval_s", 0.0))  # the evaluations left out
                curve.append((int(row["step"]), secs, float(row["progress_success_rate"])))
    return {
        "command_s": wall,
        "train_s": doc["train_seconds"] - doc.get("progress_eval_seconds", 0.0),
        "steps": doc["step"],
        "success": doc["eval_success_rate"],
        "curve": curve,
    }


def rollouts(model, env, seed_base: int, episodes: int) -> list[dict]:
    """The deterministic policy's episodes on seeds ``seed_base + k``: one row each, as the twin's
    evaluation writes them (seed, return, length, success, parts placed where the task counts)."""
    rows = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed_base + k)
        ret, length = 0.0, 0
        while True:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, term, trunc, info = env.step(action)
            ret, length = ret + float(reward), length + 1
            if term or trunc:
                row = {"seed": seed_base + k, "return": ret, "length": length}
                row["success"] = bool(info.get("is_success", False))
                row |= {key: int(info[key]) for key in ("parts_placed", "parts_arrived") if key in info}
                rows.append(row)
                break
    return rows


def sb3_config(env_id: str, env_kwargs: dict, steps: int, seed: int, episodes: int, eval_every: int) -> dict:
    """What an SB3 run is (its ``config.json``): the settings it was given and SB3's own defaults."""
    import stable_baselines3

    return {
        "algo": "sb3-sac",
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "total_steps": steps,
        "seed": seed,
        "eval_every": eval_every,
        "progress_episodes": PROGRESS_EPISODES,
        "eval_episodes": episodes,
        "stable_baselines3": stable_baselines3.__version__,
        "hyperparameters": "SB3's defaults (MlpPolicy, or MultiInputPolicy with HerReplayBuffer on a goal env)",
    }


def sb3_run(
    env_id: str, env_kwargs: dict, steps: int, seed: int, episodes: int, eval_every: int, out: Path | None = None
) -> dict:
    """SB3's SAC for ``steps`` env steps, its deterministic policy on the held-out seeds every
    ``eval_every`` and on ``episodes`` of the fixed seeds at the end. With ``out``, the run is
    written there as ``twin train`` writes one (``metrics.jsonl``, ``eval.json``)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC, HerReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback

    import envs
    from agents.common.runtime import summarize_eval

    envs.check_env_id(env_id)  # imports the module of a module:EnvId
    torch.manual_seed(seed)
    env = gym.make(env_id, **env_kwargs)  # the env the twin's run trains on
    goal = isinstance(env.observation_space, gym.spaces.Dict)
    her = {"replay_buffer_class": HerReplayBuffer, "replay_buffer_kwargs": {"n_sampled_goal": 4}} if goal else {}
    model = SAC("MultiInputPolicy" if goal else "MlpPolicy", env, seed=seed, device="cpu", verbose=0, **her)
    probe = gym.make(env_id, **env_kwargs)
    curve: list[tuple[int, float, float]] = []
    metrics = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        metrics = (out / "metrics.jsonl").open("w")

    class HeldOut(BaseCallback):
        """The deterministic policy on the held-out seeds every ``eval_every`` env steps, its
        seconds kept out of the training time."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.perf_counter()
            self.eval_s = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0 or self.num_timesteps == steps:
                t = time.perf_counter()
                trained = t - self.t0 - self.eval_s
                held = summarize_eval(rollouts(self.model, probe, PROGRESS_SEED_BASE, PROGRESS_EPISODES))
                self.eval_s += time.perf_counter() - t
                curve.append((self.num_timesteps, trained, held["eval_success_rate"]))
                if metrics is not None:  # as the twin's runs log their held-out evaluations
                    row = {
                        "step": self.num_timesteps,
                        "time": round(time.perf_counter() - self.t0, 3),
                        "progress_episodes": held["eval_episodes"],
                        "progress_return_mean": held["eval_return_mean"],
                        "progress_success_rate": held["eval_success_rate"],
                        "eval_s": self.eval_s,
                    }
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
            return True

    held_out = HeldOut()
    t0 = time.perf_counter()
    try:
        model.learn(total_timesteps=steps, callback=held_out)
    finally:
        if metrics is not None:
            metrics.close()
    run_s = time.perf_counter() - t0
    train_s = run_s - held_out.eval_s
    t1 = time.perf_counter()
    rows = rollouts(model, env, EVAL_SEED_BASE, episodes)
    env.close()
    probe.close()
    summary = summarize_eval(rows)
    if out is not None:
        doc = {
            "env_id": env_id,
            "algo": "sb3-sac",
            "step": int(model.num_timesteps),
            "device": "cpu",
            "train_seconds": round(run_s, 2),  # as the twin's: its held-out evaluations included
            "progress_eval_seconds": round(held_out.eval_s, 2),
            "eval_seconds": round(time.perf_counter() - t1, 2),
            **summary,
            "episodes": rows,
        }
        (out / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {"train_s": train_s, "success": summary["eval_success_rate"], "curve": curve}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="panda_gym:PandaReach-v3")
    ap.add_argument("--steps", type=int, default=None, help="env steps (default: twin train's default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=100, help="SB3's final evaluation episodes")
    ap.add_argument("--target", type=float, default=0.8, help="the success both are timed to")
    ap.add_argument(
        "--eval-every", type=int, default=0, help="env steps between held-out evaluations (default: a tenth of the run)"
    )
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a twin train setting, KEY=VALUE")
    ap.add_argument("--json", help="write every run's numbers and curves here")
    ap.add_argument("--sb3-run", metavar="DIR", help="train SB3's SAC alone (the first seed) into DIR, as a run")
    ap.add_argument("--show-config", action="store_true", help="with --sb3-run: print its config.json, train nothing")
    args = ap.parse_args()
    if args.show_config and not args.sb3_run:
        ap.error("--show-config goes with --sb3-run")
    if not 0.0 < args.target <= 1.0:
        ap.error(f"--target {args.target}: a success fraction in (0, 1] was expected")
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps {args.steps}: at least 1 env step was expected")
    tag = args.env.replace(":", ".")
    twin, sb3 = [], []
    bad = [kv for kv in args.sets if "=" not in kv]
    if bad:
        ap.error(f"--set {bad[0]}: KEY=VALUE was expected")
    overrides = dict(kv.split("=", 1) for kv in args.sets)
    try:  # the twin's run's settings: its env kwargs, and its env steps unless --steps
        cfg = make_config("sac", args.env, overrides)
    except ConfigError as exc:
        ap.error(f"--set: {exc}")
    steps = args.steps or cfg.total_steps
    every = args.eval_every or max(1, steps // 10)
    if args.sb3_run:  # one SB3 run as the learning bench's cells make them
        run = Path(args.sb3_run)
        episodes = cfg.eval_episodes if "eval_episodes" in overrides else args.episodes  # as a cell sets it
        config = sb3_config(args.env, cfg.env_kwargs, steps, args.seeds[0], episodes, every)
        if args.show_config:
            print(json.dumps(config, indent=2))
            return 0
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        s = sb3_run(args.env, cfg.env_kwargs, steps, args.seeds[0], episodes, every, out=run)
        line(f"{tag}.sb3_success", s["success"], "fraction")
        line(f"{tag}.sb3_train_seconds", s["train_s"], "s")
        return 0
    for seed in args.seeds:
        t = twin_run(args.env, args.steps, seed, every, args.sets)
        s = sb3_run(args.env, cfg.env_kwargs, t["steps"], seed, args.episodes, every)
        for r in (t, s):
            r["steps_to_target"], r["seconds_to_target"] = first_at(r["curve"], args.target)
        twin.append(t)
        sb3.append(s)
        print(f"# seed {seed}: twin {t}, sb3 {s}", file=sys.stderr, flush=True)
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    line(f"{tag}.env_steps", twin[0]["steps"], "steps")
    line(f"{tag}.seeds", len(args.seeds), "runs")
    line(f"{tag}.twin_train_seconds", med(twin, "train_s"), "s")
    line(f"{tag}.twin_command_seconds", med(twin, "command_s"), "s")
    line(f"{tag}.twin_success", med(twin, "success"), "fraction")
    line(f"{tag}.twin_success_min", min(r["success"] for r in twin), "fraction")
    line(f"{tag}.sb3_train_seconds", med(sb3, "train_s"), "s")
    line(f"{tag}.sb3_success", med(sb3, "success"), "fraction")
    line(
        f"{tag}.sb3_train_vs_twin_train",
        statistics.median(s["train_s"] / t["train_s"] for t, s in zip(twin, sb3, strict=True)),
        "x",
    )
    for name, rows in (("twin", twin), ("sb3", sb3)):
        reached = [r for r in rows if r["seconds_to_target"] is not None]
        line(f"{tag}.{name}_reached_target", len(reached), f"of {len(rows)} runs")
        if reached:
            line(f"{tag}.{name}_seconds_to_target", med(reached, "seconds_to_target"), "s")
            line(f"{tag}.{name}_steps_to_target", med(reached, "steps_to_target"), "steps")
    both = [(t, s) for t, s in zip(twin, sb3, strict=True) if t["seconds_to_target"] and s["seconds_to_target"]]
    if both:
        ratio = statistics.median(s["seconds_to_target"] / t["seconds_to_target"] for t, s in both)
        line(f"{tag}.sb3_vs_twin_seconds_to_target", ratio, "x")
    else:
        print(f"# no seed where both reached {args.target:g}: no ratio of time to it", file=sys.stderr)
    if args.json:
        doc = {"env_id": args.env, "target": args.target, "seeds": args.seeds, "twin": twin, "sb3": sb3}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
